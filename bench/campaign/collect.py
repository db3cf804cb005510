"""`gpu_campaign.py --collect FOLDER`: check what a GPU run brought back (every sha256), file it under
bench/results/gpu/STAMP/, reassemble the trained model into checkpoints/gpu-candidate/, print the summary."""

from __future__ import annotations

import json
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

from campaign.parts import PartsMismatch, unpack_model
from campaign.summary import markdown

from fastddpm.atomic import file_sha256

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results" / "gpu"
CANDIDATE = ROOT / "checkpoints" / "gpu-candidate"


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def checked_files(folder: Path, record: dict) -> str | None:
    """None when every file campaign.json lists is there with its size and sha256; else what is wrong."""
    for entry in record["files"]:
        path = folder / entry["name"]
        if not path.is_file():
            return f"{path} is missing"
        if path.stat().st_size != entry["bytes"] or file_sha256(path) != entry["sha256"]:
            return f"{path} does not match the size and sha256 that campaign.json records"
    return None


def model_parts(record: dict) -> dict | None:
    for entry in record["stages"]:
        if entry["stage"].endswith("train"):
            return entry["result"].get("parts")
    return None


def collect(folder: Path, results: Path = RESULTS, candidate: Path = CANDIDATE) -> int:
    path = folder / "campaign.json"
    if not path.is_file():
        return fail(
            f"{folder} has no campaign.json: give the folder a GPU run of bench/gpu_campaign.py wrote"
        )
    record = json.loads(path.read_text())
    problem = checked_files(folder, record)
    if problem:
        return fail(problem)
    dest = results / record["started_utc"]
    parts = model_parts(record)
    if dest.exists():
        return fail(f"{dest} exists: this run was collected already")
    if parts and candidate.exists():
        return fail(f"{candidate} exists: move it away first (it holds another campaign's model)")
    results.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=results) as staging:
        stage = Path(staging) / "run"
        stage.mkdir()
        shutil.copy(path, stage / "campaign.json")
        with tarfile.open(folder / "results.tar") as tar:
            tar.extractall(stage, filter="data")
        summary = markdown(record)
        (stage / "SUMMARY.md").write_text(summary)
        if parts:
            try:
                unpack_model(folder, parts, Path(staging), candidate)
            except PartsMismatch as err:
                return fail(str(err))
        stage.rename(dest)
    print(summary)
    print(f"filed in {dest}" + (f"; model in {candidate}" if parts else ""))
    return 0
