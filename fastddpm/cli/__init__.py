"""The `fastddpm` command line: parse, validate, call one library function, report. No maths here; one module
per command, shared options in options.py, defaults and choices from fastddpm.configs."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from fastddpm import __version__
from fastddpm.cli.bench import bench
from fastddpm.cli.common import OneLineErrors, say
from fastddpm.cli.data import data_app
from fastddpm.cli.demo import demo
from fastddpm.cli.distill import distill
from fastddpm.cli.evaluator import evaluator_app
from fastddpm.cli.export import export
from fastddpm.cli.sample import sample
from fastddpm.cli.train import train

app = typer.Typer(
    cls=OneLineErrors,
    help="Conditional DDPM on i-CLEVR: render data, train, sample fast, export, and score with the course evaluator.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
for command in (train, distill, sample, bench, export, demo):
    app.command()(command)
app.add_typer(data_app, name="data")
app.add_typer(evaluator_app, name="evaluator")


def _version(value: bool) -> None:
    if value:
        say(f"fastddpm {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """Conditional DDPM on i-CLEVR: render data, train, sample fast, export, and score with the course evaluator."""


def main() -> None:
    app(prog_name="fastddpm")
