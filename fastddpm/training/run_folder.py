"""The folder of a `train` or `distill` run and its bookkeeping, the same for both: the claim (a fresh run
refuses a folder that holds one), the saved config a resumed run continues with, config.json, and the
metrics.jsonl log. The method's own state (weights, optimiser, counters) is in the checkpoint (checkpoint.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TypeVar

from fastddpm import atomic
from fastddpm.errors import UsageError
from fastddpm.folders import quote
from fastddpm.training.checkpoint import CHECKPOINT_NAME, TrainCounters

CONFIG_NAME = "config.json"
METRICS_NAME = "metrics.jsonl"
C = TypeVar("C")


class RunFolder:
    """`path` as a run folder. `kind` names the run in messages ("run", "distillation")."""

    def __init__(self, path: str | Path, kind: str = "run") -> None:
        self.path, self.kind = Path(path), kind

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_NAME

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT_NAME

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_NAME

    def check_writable(self) -> None:
        """Before any work and before owned() (whose lock creates the folder's parent): --out can be written."""
        atomic.check_output_folder(self.path)

    def owned(self) -> AbstractContextManager:
        """The folder's lock for the run's length (a second run into it is refused); stale temp files removed."""
        return atomic.owned_folder(self.path)

    def claim_new(self) -> None:
        """A fresh run: refuse a folder that already holds one (its config.json or checkpoint)."""
        if self.checkpoint_path.exists() or self.config_path.exists():
            raise UsageError(
                f"{str(self.path)!r} already holds a run; pass --resume to continue it or choose another --out"
            )

    def saved_config(self, parse: Callable[[dict], C], hint: str = "") -> C:
        """--resume: the config.json of the run in this folder, read by `parse` (a config's constructor);
        `hint` ends the message when it is not one."""
        if not self.config_path.is_file():
            raise UsageError(f"--resume: {quote(self.path)} holds no config.json of an earlier {self.kind}")
        try:
            return parse(json.loads(self.config_path.read_text()))
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError, RecursionError) as err:
            raise UsageError(
                f"--resume: {quote(self.config_path)} is not a fastddpm {self.kind} config "
                f"({type(err).__name__}){hint}"
            ) from None

    def write_config(self, config: dict) -> None:
        atomic.write_json(self.config_path, config)

    def restart_log(self) -> None:
        """A fresh run starts its own metrics.jsonl."""
        self.metrics_path.unlink(missing_ok=True)

    def log(self, counters: TrainCounters, **fields) -> None:
        """Append one metrics.jsonl record: the step and training seconds, then `fields`."""
        record = {"step": counters.step, "train_seconds": round(counters.train_seconds, 2), **fields}
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")
