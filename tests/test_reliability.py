"""Nothing lost, nothing outside its folder: names from files stay inside, a run owns its folder (lock, swap),
output places are probed before the work, and error messages quote user text only up to a cap."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path

import pytest

from fastddpm.pipeline import Pipeline

from fastddpm import atomic, folders
from fastddpm.configs import SampleSettings
from fastddpm.errors import UsageError
from fastddpm.sampling import job as sample_job


def _job(model: Path, out: Path) -> sample_job.SampleJob:
    return sample_job.SampleJob(
        labels=[["red sphere"], ["cyan cube"]],
        out=out,
        model_dir=model,
        settings=SampleSettings("ddim", 2, batch_size=2),
        device="cpu",
    )


@pytest.mark.parametrize("name", ["../victim.txt", "/tmp/absolute-victim", "sub/../../victim.txt", 7, ""])
def test_a_record_naming_a_file_outside_its_folder_is_refused_and_nothing_is_deleted(tmp_path, name):
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (out / "sample.json").write_text(json.dumps({"files": [name, "0.png"]}))
    with pytest.raises(UsageError, match="not a file inside|outside"):
        sample_job.claim_folder(out)
    assert victim.read_text() == "keep me"


def test_a_second_run_on_a_locked_folder_is_refused_in_one_line(tmp_path):
    out = tmp_path / "out"
    with folders.folder_lock(out):
        with pytest.raises(UsageError, match="in use by another") as refused:
            with folders.folder_lock(out):
                pass
    assert "\n" not in str(refused.value)
    with folders.folder_lock(out):  # released: a later run may own it
        pass


def test_a_failed_run_leaves_the_earlier_run_intact_and_its_leftovers_are_removed(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "0.png").write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with folders.staged_folder(out) as stage:
            (stage / "0.png").write_bytes(b"new")
            raise RuntimeError("interrupted")
    assert (out / "0.png").read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    leftover = tmp_path / f".out{folders.PARTIAL_TAG}killed"
    leftover.mkdir()  # what a SIGKILLed run leaves
    with folders.staged_folder(out) as stage:
        (stage / "0.png").write_bytes(b"new")
    assert (out / "0.png").read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_sample_replaces_its_earlier_run_by_a_swap(tmp_path, tiny_model):
    out = tmp_path / "out"
    pipe = Pipeline.from_pretrained(tiny_model, device="cpu")
    first = sample_job.run_sample(_job(tiny_model, out), pipe)
    assert sorted(first["files"]) == ["0.png", "1.png", "grid.png"]
    second = sample_job.run_sample(_job(tiny_model, out), pipe)
    assert second["replaced"] == 3
    assert sorted(p.name for p in out.iterdir()) == ["0.png", "1.png", "grid.png", "sample.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "out"]


def test_an_unwritable_out_is_refused_before_any_work():
    with pytest.raises(UsageError, match="cannot be written") as refused:
        atomic.check_output_folder("/proc/fastddpm-out")
    assert "\n" not in str(refused.value)


def test_a_full_disk_is_refused_before_any_work_naming_the_path(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "TemporaryFile", full)
    with pytest.raises(UsageError, match="disk is full") as refused:
        atomic.check_output_folder(tmp_path / "out")
    assert str(tmp_path / "out") in str(refused.value)


def test_a_write_that_fails_on_a_full_disk_is_one_line_and_leaves_no_temp_file(tmp_path):
    with pytest.raises(UsageError, match="disk is full"):
        with atomic.atomic_path(tmp_path / "model.safetensors") as tmp:
            tmp.write_bytes(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("text", ["x" * 100_000, "red " * 50_000])
def test_quoted_user_text_is_capped(text):
    shown = folders.quote(text)
    assert len(shown) <= folders.QUOTE_LIMIT and shown.endswith("…")


def test_a_foreign_file_name_quoted_in_a_refusal_is_capped(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / ("a" * 200)).write_text("")
    with pytest.raises(UsageError) as refused:
        sample_job.claim_folder(out)
    assert len(str(refused.value)) < 300
