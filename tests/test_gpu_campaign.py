"""bench/gpu_campaign.py: the dry run ends every stage ok (or skipped for want of CUDA) and brings back what it
names; a stage that crashes or overruns is recorded and the campaign goes on; --collect refuses a tampered
folder and reassembles the model; the GPU-vs-CPU agreement rule."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
COURSE = ROOT.parent / "shared" / "iclevr" / "course"
MAX_FILES, MAX_BYTES = 8, 16 * 2**20  # what a device run brings back
sys.path.insert(0, str(BENCH))

from campaign.rows import cpu_agreement  # noqa: E402


def campaign(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(BENCH / "gpu_campaign.py"), *args],
        capture_output=True, text=True, timeout=timeout, env=env, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    base = tmp_path_factory.mktemp("campaign")
    labels = ["--labels-dir", str(COURSE)] if COURSE.is_dir() else []
    done = campaign("--out", str(base / "out"), "--work", str(base / "work"), "--dry-run", *labels)
    return base / "out", done


@pytest.mark.slow
def test_dry_run_ends_every_stage_and_brings_back_what_it_names(dry_run):
    out, done = dry_run
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((out / "campaign.json").read_text())
    statuses = {e["stage"]: e["status"] for e in record["stages"]}
    assert list(statuses) == [
        "a. preflight", "b. default_bench", "c. sampling_speed", "d. gpu_tests",
        "e. render", "f. train", "g. new_model_bench", "h. export",
    ]  # fmt: skip
    cuda_only = {"d. gpu_tests"}
    for stage, status in statuses.items():
        assert status == ("skipped: no CUDA" if stage in cuda_only else "ok"), (stage, status)
    assert len(done.stdout.strip().splitlines()) == len(statuses) + 1  # one line per stage and a total
    named = {f["name"] for f in record["files"]} | {"campaign.json"}
    assert named == {p.name for p in out.iterdir()}
    assert len(named) <= MAX_FILES and all(p.stat().st_size <= MAX_BYTES for p in out.iterdir())
    assert any(n.startswith("model.tar.part") for n in named)
    with tarfile.open(out / "results.tar") as tar:
        members = set(tar.getnames())
    assert {e["result_file"] for e in record["stages"]} <= members
    trained = record["stages"][5]["result"]
    assert trained["steps"] > 0 and trained["parts"]["files"]


@pytest.mark.slow
def test_collect_checks_hashes_and_reassembles_the_model(dry_run, tmp_path):
    from fastddpm.model import load_model

    out, _ = dry_run
    results, candidate = tmp_path / "results", tmp_path / "gpu-candidate"
    done = campaign("--collect", str(out), "--results-dir", str(results), "--candidate-dir", str(candidate))
    assert done.returncode == 0, done.stderr
    assert "### Goals" in done.stdout and "| a. preflight | ok |" in done.stdout
    (filed,) = results.iterdir()
    assert (filed / "results" / "train.json").is_file() and (filed / "SUMMARY.md").is_file()
    load_model(candidate)  # a loadable model folder
    again = campaign(
        "--collect", str(out), "--results-dir", str(results), "--candidate-dir", str(tmp_path / "c2")
    )
    assert again.returncode == 2 and "collected already" in again.stderr

    tampered = tmp_path / "tampered"
    tampered.mkdir()
    for path in out.iterdir():
        (tampered / path.name).write_bytes(path.read_bytes())
    part = next(tampered.glob("model.tar.part*"))
    part.write_bytes(part.read_bytes()[:-1] + b"x")
    bad = campaign(
        "--collect",
        str(tampered),
        "--results-dir",
        str(tmp_path / "r2"),
        "--candidate-dir",
        str(tmp_path / "c3"),
    )
    assert bad.returncode == 2 and part.name in bad.stderr and bad.stderr.count("\n") == 1
    assert not (tmp_path / "r2").exists() and not (tmp_path / "c3").exists()


def test_a_crashing_or_overrunning_stage_is_recorded(tmp_path):
    import argparse

    import gpu_campaign
    from campaign.stages import STAGES

    work = tmp_path / "work"
    for sub in ("results", "logs"):
        (work / sub).mkdir(parents=True)
    args = argparse.Namespace(out=tmp_path, labels_dir=None, dry_run=True)
    crashing = type(STAGES[0])("z", "no_such_stage", STAGES[0].run, 5)
    entry = gpu_campaign.launch(crashing, args, work, budget=20)
    assert entry["status"].startswith("error: exit 1 before the stage recorded an end")
    start = time.perf_counter()
    entry = gpu_campaign.launch(STAGES[0], args, work, budget=0.01, grace_s=0.5)  # preflight takes seconds
    assert entry["status"].startswith("timeout: killed after 0 s")
    assert time.perf_counter() - start < 5


def test_an_occupied_out_folder_is_refused(tmp_path):
    (tmp_path / "earlier.json").write_text("{}")
    done = campaign("--out", str(tmp_path), "--dry-run")
    assert done.returncode == 2 and "not an empty folder" in done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["earlier.json"]


def _row(sampler: str, steps: int, means: dict[str, float], std: float) -> dict:
    accuracy = {s: {"mean": m, "std": std, "per_seed": [m, m, m]} for s, m in means.items()}
    return {"backend": "torch", "dtype": "bfloat16", "sampler": sampler, "steps": steps, "accuracy": accuracy}


def test_cpu_agreement_allows_the_seed_noise_and_no_more():
    reference = {
        "environment": {"checkpoint_sha256": "abc"},
        "rows": [_row("dpmpp", 10, {"test": 0.75, "new_test": 0.84}, 0.03)],
    }
    # allowed: max(0.03, 2 * sqrt((0.03^2 + 0.03^2) / 3)) = 0.049
    near = cpu_agreement([_row("dpmpp", 10, {"test": 0.79, "new_test": 0.80}, 0.03)], reference, "abc")
    assert near["agree"] is True and len(near["cells"]) == 2
    far = cpu_agreement([_row("dpmpp", 10, {"test": 0.81, "new_test": 0.84}, 0.03)], reference, "abc")
    assert far["agree"] is False and [c["agree"] for c in far["cells"]] == [False, True]
    unmatched = cpu_agreement([_row("ddim", 50, {"test": 0.1}, 0.0)], reference, "abc")
    assert unmatched["agree"] is None and unmatched["cells"] == []
    other = cpu_agreement([_row("dpmpp", 10, {"test": 0.75}, 0.0)], reference, "def")
    assert other["agree"] is None and "other weights" in other["why"]
