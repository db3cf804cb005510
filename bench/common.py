"""Saving a bench script's result as <folder>/<name>-<stamp>.json, bench/results/ by default, atomically (device,
timing and dtype helpers live in fastddpm.runtime, shared with `fastddpm bench`)."""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path

import torch

from fastddpm import atomic

RESULTS = Path(__file__).resolve().parent / "results"


def save(name: str, record: dict, folder: Path = RESULTS) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    record = {
        "script": name,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "stamp": stamp,
        "torch": torch.__version__,
        **record,
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{stamp}.json"
    atomic.write_text(path, json.dumps(record, indent=2) + "\n")
    print(f"saved {path}")
    return path
