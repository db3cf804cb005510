"""What every command shares: the consoles, one-line errors (exit code 2), progress bars, option parsing.

Text is text: user values and help strings are never read as rich markup or emoji codes, and when output goes to
a file or a CI log the consoles are wide enough that tables and paths stay whole.
"""

from __future__ import annotations

import functools
import inspect
import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from fastddpm.errors import UsageError
from fastddpm.folders import QUOTE_LIMIT, quote

LOG_WIDTH = 160  # columns when stdout / stderr is not a terminal
LONG_QUOTED = re.compile(rf"'([^']{{{QUOTE_LIMIT},}})'")


def _console(stderr: bool) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or "COLUMNS" in os.environ else LOG_WIDTH
    return Console(stderr=stderr, width=width, emoji=False, highlight=False)


console = _console(stderr=True)  # messages and progress
out_console = _console(stderr=False)  # results (tables)
F = TypeVar("F", bound=Callable)


def say(text: str) -> None:
    """Print a message literally (no markup, no emoji), on stderr."""
    console.print(text, markup=False, soft_wrap=True)


def error_line(message: str) -> None:
    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)


def clean_errors(fn: F) -> F:
    """Turn a UsageError into one red line on stderr and exit code 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UsageError as err:
            error_line(str(err))
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


class OneLineErrors(typer.core.TyperGroup):
    """Parse errors (unknown option, value out of range, bad choice) as one line naming the value, exit code 2,
    like every other bad input; help is printed as usual."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        _escape_help(self)
        try:
            code = super().main(*args, **kwargs)
        except typer.Abort:
            sys.exit(130)
        except Exception as err:
            if not hasattr(err, "format_message"):  # not a parse error (typer vendors click: match by shape)
                raise
            if type(err).__name__ == "NoArgsIsHelpError":
                err.show()
            else:
                ctx = getattr(err, "ctx", None)
                message = err.format_message().replace("Value error, ", "")  # pydantic's prefix, noise here
                message = LONG_QUOTED.sub(lambda m: quote(m.group(1)), message)  # click quotes values whole
                error_line(f"{message} (see `{ctx.command_path if ctx else 'fastddpm'} --help`)")
            sys.exit(2)
        sys.exit(code if isinstance(code, int) else 0)


def option(panel: str | None, help: str, *decls: str, **kwargs: Any) -> Any:
    """One option's declaration: its help panel and text first, then typer's settings."""
    return typer.Option(*decls, help=help, rich_help_panel=panel, **kwargs)


def _escape_help(command: Any) -> None:
    """Help as written: brackets like fastddpm[trt] are text, not rich markup, and each paragraph of a
    docstring flows to the terminal's width (rich mode keeps a docstring's line breaks everywhere but in the
    command's first paragraph), in the command's help and in its group's list. Once per command tree."""
    if getattr(command, "_help_escaped", False):
        return
    command._help_escaped = True
    if command.help:
        paragraphs = [" ".join(p.split()) for p in inspect.cleandoc(command.help).split("\n\n")]
        command.help = escape("\n\n".join(paragraphs))
        command.short_help = command.short_help or escape(paragraphs[0])
    for param in command.params:
        if getattr(param, "help", None):
            param.help = escape(param.help)
    for sub in getattr(command, "commands", {}).values():
        _escape_help(sub)


class ProgressBar:
    """A rich progress bar driven by a `(done, total, info="")` callback; it appears at the first update, so
    input errors raised before any work print alone. In logs and pipes: a plain line every 30 s."""

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
            TextColumn(f"[bold]{escape(description)}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}", markup=False),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self.task = self.bar.add_task(description, total=None, info="")
        self.description = description
        self.started = False
        self.last_line = 0.0

    def __call__(self, done: int, total: int, info: str = "") -> None:
        if not console.is_terminal:
            now = time.monotonic()
            if now - self.last_line > 30 or done >= total:
                say(f"{self.description}: {done}/{total} {info}".rstrip())
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


def exit_if_stopped(result: Any, out: Path) -> None:
    """After train / distill: a run stopped by a signal says how to continue and exits 128 + the signal."""
    if result.stopped_by is not None:
        say(f"stopped at step {result.step}; continue with --resume (checkpoint in {out})")
        raise typer.Exit(128 + result.stopped_by)


def int_tuple(
    text: str, option: str, minimum: int | None = None, maximum: int | None = None, unique: bool = False
) -> tuple[int, ...]:
    """'64,128,128' -> (64, 128, 128); every value within [minimum, maximum] when given, each at most once when
    `unique` (seeds, step counts: a repeat would only rerun the same thing)."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UsageError(
            f"{option} takes comma-separated integers like 64,128,128; got {quote(text)}"
        ) from None
    if not values:
        raise UsageError(f"{option} needs at least one integer; got {quote(text)}")
    low = [v for v in values if minimum is not None and v < minimum]
    if low:
        raise UsageError(f"{option} {low[0]} is out of range: each value must be >= {minimum}")
    high = [v for v in values if maximum is not None and v > maximum]
    if high:
        raise UsageError(f"{option} {high[0]} is out of range: each value must be <= {maximum}")
    if unique:
        refuse_repeats(values, option, str)
    return values


def csv(text: str, option: str, choices: tuple[str, ...]) -> tuple[str, ...]:
    """'ddim,dpmpp' -> ('ddim', 'dpmpp'), each one of `choices`, each at most once."""
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    for value in values or (text,):
        if value not in choices:
            raise UsageError(f"{option} {quote(value)} is not one of {', '.join(choices)}")
    refuse_repeats(values, option, quote)
    return values


def refuse_repeats(values: tuple, option: str, show: Callable[[object], str]) -> None:
    repeated = [v for i, v in enumerate(values) if v in values[:i]]
    if repeated:
        raise UsageError(f"{option} {show(repeated[0])} is given twice; give each value once")


def cpu_note(device: str) -> None:
    import torch

    if device != "cuda" and not torch.cuda.is_available():
        console.print(
            "[dim]note: no CUDA GPU found; running on the CPU, which is slow. A GPU helps: see the README.[/]"
        )


def given_options(ctx: typer.Context) -> list[str]:
    """The parameters of this command whose options were given, not left at their defaults."""
    return [
        name
        for name in ctx.params
        if getattr(ctx.get_parameter_source(name), "name", "DEFAULT") not in ("DEFAULT", "DEFAULT_MAP")
    ]


def refuse_given_options(ctx: typer.Context, names: Iterable[str], beside: str, decider: str) -> None:
    """The options among `names` that were given would be ignored beside `beside`, whose `decider` decides
    them: refuse them in one line."""
    given = given_options(ctx)
    clash = [name for name in names if name in given]
    if clash:
        flags = ", ".join("--" + name.replace("_", "-") for name in clash)
        raise UsageError(f"{flags} cannot be given with {beside}: {decider} decides them")


def refuse_options_with_resume(ctx: typer.Context, out: Path, keeps: frozenset[str]) -> None:
    """--resume continues the run as its config.json says: any option given beside it but those in `keeps`
    would be ignored, so it is refused."""
    others = [name for name in ctx.params if name not in keeps]
    refuse_given_options(ctx, others, "--resume", f"the run's config.json in {quote(out)}")
