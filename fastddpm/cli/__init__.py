"""The `fastddpm` command line: parse, validate, call one library function, report. No maths here."""

from __future__ import annotations

import typer

from fastddpm.cli.data import data_app, evaluator_app
from fastddpm.cli.model import model_app

app = typer.Typer(
    help="Conditional DDPM on i-CLEVR: render data, train, sample fast, export, and score with the course evaluator.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
for command in model_app.registered_commands:
    app.registered_commands.append(command)
app.add_typer(data_app, name="data")
app.add_typer(evaluator_app, name="evaluator")


def main() -> None:
    app(prog_name="fastddpm")
