"""Nothing lost, nothing outside its folder: names from files stay inside, a run owns its folder (lock, swap),
output places are probed before the work, and error messages quote user text only up to a cap."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path

import pytest

from typer.testing import CliRunner

from conftest import COURSE
from fastddpm import atomic, folders
from fastddpm.cli import app
from fastddpm.pipeline import Pipeline
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


def test_weights_and_text_written_atomically_get_the_usual_permissions(tmp_path):
    import torch

    atomic.save_safetensors(tmp_path / "model.safetensors", {"w": torch.zeros(2)})
    atomic.write_text(tmp_path / "config.json", "{}")
    expected = 0o666 & ~folders.UMASK
    for name in ("model.safetensors", "config.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == expected, name


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


def _owning_command(command: str, out: Path, tiny_data: Path, tiny_model: Path) -> list:
    return {
        "render": ["data", "render", "--scenes", "1", "--out", out],
        "evaluator": ["evaluator", "train", "--data", tiny_data, "--out", out, "--epochs", "1"],
        "bench": ["bench", "--model", tiny_model, "--labels-file", COURSE / "test.json", "--out", out],
        "train": ["train", "--data", tiny_data, "--out", out, "--epochs", "1", "--device", "cpu"],
        "distill": ["distill", "--model", tiny_model, "--data", tiny_data, "--out", out, "--device", "cpu"],
    }[command]


@pytest.mark.parametrize("command", ["render", "evaluator", "bench", "train", "distill"])
@pytest.mark.parametrize("earlier", [False, True])
def test_a_command_into_a_folder_another_run_owns_is_refused_in_one_line(
    tmp_path, tiny_data, tiny_model, command, earlier
):
    out = tmp_path / "out"
    if earlier:  # a folder holding an earlier run's file, which must stay as it is
        out.mkdir()
        (out / "metrics.jsonl").write_text("earlier\n")
    args = [str(a) for a in _owning_command(command, out, tiny_data, tiny_model)]
    with folders.folder_lock(out):  # what the other, running command holds
        result = CliRunner().invoke(app, args)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(set(lines)) == 1 and "is in use by another running fastddpm command" in lines[0], result.output
    if earlier:
        assert [p.name for p in out.iterdir()] == ["metrics.jsonl"]
        assert (out / "metrics.jsonl").read_text() == "earlier\n"
    else:
        assert not out.exists()


@pytest.mark.slow
def test_two_renders_into_one_folder_at_once_the_second_is_refused(tmp_path):
    import subprocess
    import sys
    import time

    out = tmp_path / "data"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    command = [sys.executable, "-m", "fastddpm", "data", "render", "--out", str(out), "--scenes", "200"]
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (out / "render.json").is_file():  # written with the lock held
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert first.poll() is None, "the first render ended before the second started"
    finally:
        first.kill()
        first.wait()
    lines = second.stderr.strip().splitlines()
    assert second.returncode == 2 and len(lines) == 1, second.stderr
    assert lines[0] == f"error: --out {str(out)!r} is in use by another running fastddpm command"


_KILLED_WRITE = """
import os, signal, sys
from fastddpm import atomic
with atomic.atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"half a checkpoint")
    os.kill(os.getpid(), signal.SIGKILL)
"""


def _write_killed_by_sigkill(path: Path) -> None:
    """An atomic write into `path` whose process is SIGKILLed mid-write (no cleanup can run)."""
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    assert subprocess.run([sys.executable, "-c", _KILLED_WRITE, str(path)], env=env).returncode == -9


def test_a_resume_removes_the_temp_files_of_a_checkpoint_save_killed_mid_write(tmp_path, tiny_data):
    from test_train import tiny_config

    from fastddpm.training.checkpoint import CHECKPOINT_NAME
    from fastddpm.training.loop import train

    out = tmp_path / "run"
    train(tiny_config(tiny_data, out), max_steps=2)
    checkpoint = (out / CHECKPOINT_NAME).read_bytes()
    _write_killed_by_sigkill(out / CHECKPOINT_NAME)
    _write_killed_by_sigkill(out / "model" / "model.safetensors")
    assert len(list(out.rglob(f"*{atomic.TEMP_SUFFIX}"))) == 2
    assert (out / CHECKPOINT_NAME).read_bytes() == checkpoint  # the killed write never replaced it
    (out / "notes.tmp").write_text("the user's")  # not the atomic writer's naming
    beside = tmp_path / ".run.abcdefgh.tmp"  # the pattern, but outside the run folder
    beside.write_text("not ours")
    train(tiny_config(tiny_data, out), resume=True, max_steps=1)
    assert [p.name for p in out.rglob(f"*{atomic.TEMP_SUFFIX}")] == ["notes.tmp"]
    assert beside.read_text() == "not ours"


def test_only_the_atomic_writers_temp_files_inside_the_folder_are_removed(tmp_path):
    folder = tmp_path / "out"
    with atomic.atomic_path(folder / "iclevr" / "a.png") as tmp:
        real_name = tmp.name  # a name the writer really makes, matched by its pattern
    stale = [folder / "iclevr" / real_name, folder / ".render.json.k2_x9a0b.tmp"]
    kept = [
        folder / "a.tmp",  # no leading dot
        folder / ".a.tmp",  # no random part
        folder / ".a.png.ABCDEFGH.tmp",  # not mkstemp's characters
        folder / ".out.partial-x1" / ".0.png.abcdefgh.tmp",  # another run's staged folder: its own to clean
        tmp_path / ".out.abcdefgh.tmp",  # beside the folder, not in it
    ]
    for path in stale + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    assert sorted(atomic.remove_stale_temp_files(folder)) == sorted(stale)
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)


@pytest.mark.parametrize(
    "command",
    [
        ["train", "--data", "{data}", "--out", "{out}", "--resume"],  # no run in the folder to resume
        [
            "distill",
            "--model",
            "{junk}",
            "--data",
            "{data}",
            "--out",
            "{out}",
            "--to-steps",
            "2",
        ],  # bad weights
        ["distill", "--out", "{out}", "--resume"],  # no distill run
    ],
)
def test_a_run_refused_before_its_work_leaves_nothing_beside_its_folder(
    tmp_path, tiny_model, tiny_data, command
):
    """Every refusal comes before the folder's lock, whose file would stay beside the folder."""
    import shutil

    junk = shutil.copytree(tiny_model, tmp_path / "junk")
    (junk / "model.safetensors").write_bytes(b"junk")
    parent = tmp_path / "runs"
    (parent / "run").mkdir(parents=True)
    names = {"data": tiny_data, "out": parent / "run", "junk": junk, "model": tiny_model}
    result = CliRunner().invoke(app, [arg.format(**names) for arg in command])
    assert result.exit_code == 2, result.output
    assert sorted(p.name for p in parent.iterdir()) == ["run"] and not any((parent / "run").iterdir())
