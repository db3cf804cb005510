"""Where the shipped artifacts live: the repository's checkpoints/ folder (or $FASTDDPM_CHECKPOINTS)."""

from __future__ import annotations

import os
from pathlib import Path


def checkpoints_dir() -> Path:
    override = os.environ.get("FASTDDPM_CHECKPOINTS")
    return Path(override) if override else Path(__file__).resolve().parent.parent / "checkpoints"


def default_evaluator_path() -> Path:
    return checkpoints_dir() / "evaluator.pth"


def default_model_dir() -> Path:
    return checkpoints_dir() / "default"
