"""Saving a bench script's result as bench/results/<name>-<stamp>.json (device, timing and dtype helpers live in
fastddpm.runtime, shared with `fastddpm bench`)."""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def save(name: str, record: dict) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    record = {
        "script": name,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "stamp": stamp,
        "torch": torch.__version__,
        **record,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{stamp}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved {path}")
    return path
