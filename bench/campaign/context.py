"""What a campaign stage runs with: its context (folders, deadline, a result saved as it goes), the two ways a
stage ends early (Skipped, BudgetStop), and a child process run under the stage's deadline."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class Skipped(Exception):
    """The stage cannot run on this machine (the reason is its status: 'skipped: REASON')."""


class BudgetStop(Exception):
    """The stage ran out of its budget and stopped cleanly; the message says how far it got."""


@dataclass
class StageContext:
    name: str
    out: Path  # the folder that comes back (campaign.json, results.tar, model parts)
    work: Path  # scratch that stays on the machine: data, runs, exports, per-stage JSON and logs
    deadline: float  # time.time() by which the stage must have ended
    dry_run: bool
    labels_dir: Path | None  # the course's test.json / new_test.json, carried in .course/
    result: dict = field(default_factory=dict)

    @property
    def result_path(self) -> Path:
        return self.work / "results" / f"{self.name}.json"

    def time_left(self) -> float:
        return self.deadline - time.time()

    def save(self, status: str = "running", **fields) -> None:
        from fastddpm import atomic

        self.result.update(fields)
        self.result_path.parent.mkdir(parents=True, exist_ok=True)
        record = {"stage": self.name, "status": status, "result": self.result}
        atomic.write_text(self.result_path, json.dumps(record, indent=2, default=str) + "\n")


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def run_child(ctx: StageContext, argv: list[str], log_name: str, grace_s: float = 20.0) -> tuple[int, bool]:
    """Run `argv` with its output in work/logs/LOG_NAME.log; SIGTERM it `grace_s` before the stage's deadline
    (fastddpm's trainer checkpoints and writes its model on SIGTERM), SIGKILL it at the deadline. Returns
    (exit status, whether it was stopped for time)."""
    log = ctx.work / "logs" / f"{log_name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    with log.open("ab") as sink:
        child = subprocess.Popen(argv, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, env=env)
        try:
            return child.wait(timeout=max(1.0, ctx.time_left() - grace_s)), False
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGTERM)
        try:
            return child.wait(timeout=max(1.0, ctx.time_left() - 2)), True
        except subprocess.TimeoutExpired:
            child.kill()
            return child.wait(), True


def fastddpm_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "fastddpm", *args]


def log_tail(ctx: StageContext, log_name: str, lines: int = 1) -> str:
    path = ctx.work / "logs" / f"{log_name}.log"
    text = path.read_text(errors="replace").strip().splitlines() if path.is_file() else []
    return " | ".join(text[-lines:])[-300:]
