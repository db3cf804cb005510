"""What every command shares: the stderr console, clean errors (exit code 2), progress bars, option parsing."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TypeVar

from rich.console import Console

import typer

from fastddpm.errors import UsageError

console = Console(stderr=True)
F = TypeVar("F", bound=Callable)


def clean_errors(fn: F) -> F:
    """Turn a UsageError into one red line on stderr and exit code 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UsageError as err:
            console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


class ProgressBar:
    """A rich progress bar driven by a `(done, total, info="")` callback; it appears at the first update, so
    input errors raised before any work print alone."""

    def __init__(self, description: str) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn(f"[bold]{description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self.task = self.bar.add_task(description, total=None, info="")
        self.description = description
        self.started = False
        self.last_line = 0.0

    def __call__(self, done: int, total: int, info: str = "") -> None:
        if not console.is_terminal:  # logs and pipes get a plain line every 30 s instead of a live bar
            now = time.monotonic()
            if now - self.last_line > 30 or done >= total:
                console.print(f"{self.description}: {done}/{total} {info}", highlight=False)
                self.last_line = now
            return
        if not self.started:
            self.bar.start()
            self.started = True
        self.bar.update(self.task, completed=done, total=total, info=info)

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        if self.started:
            self.bar.stop()


def int_tuple(text: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UsageError(f"{option} takes comma-separated integers like 64,128,128; got {text!r}") from None


def csv(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def cpu_note(device: str) -> None:
    import torch

    if device != "cuda" and not torch.cuda.is_available():
        console.print(
            "[dim]note: no CUDA GPU found; running on the CPU, which is slow. A GPU helps: see the README.[/]"
        )
