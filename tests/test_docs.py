"""The docs cannot drift from the CLI: every `fastddpm ...` command in README.md and docs/*.md must parse.

Parsing is checked against the Typer app itself (no subprocess, no `--help` text): each command's sub-command
path must exist and each `--option` it names must be one of that command's options. Synopsis brackets
(`[--precision fp32|fp16]`) are read as the options they list. The chain a newcomer runs first (render, train,
sample, score) and the README's Python snippet are run at toy sizes (slow).
"""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer

import fastddpm
from fastddpm.cli import app

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"```(\w*)\n(.*?)```", re.S)


def shown_commands() -> list[tuple[str, str]]:
    """(file name, command line) for every `fastddpm` line in a non-Python code block, continuations joined."""
    found = []
    for path in DOC_FILES:
        for language, body in FENCE.findall(path.read_text()):
            if language == "python":
                continue
            for line in body.replace("\\\n", " ").splitlines():
                command = line.split(" #")[0].strip()
                if command.startswith("fastddpm "):
                    found.append((path.name, command))
    return found


def python_snippet() -> str:
    blocks = [
        body for language, body in FENCE.findall((ROOT / "README.md").read_text()) if language == "python"
    ]
    assert len(blocks) == 1, "README.md shows exactly one ```python block"
    return blocks[0]


def resolve(words: list[str]):
    """The (click) command the words name, and the words after its name."""
    command = typer.main.get_command(app)
    rest = words
    while hasattr(command, "commands") and rest and rest[0] in command.commands:
        command, rest = command.commands[rest[0]], rest[1:]
    assert not hasattr(command, "commands"), f"no such command: fastddpm {' '.join(words)}"
    return command, rest


def option_names(words: list[str]) -> list[str]:
    return [re.split(r"[=\]|]", word.lstrip("["))[0] for word in words if word.lstrip("[").startswith("--")]


COMMANDS = shown_commands()


def test_the_docs_show_commands():
    files = {name for name, _ in COMMANDS}
    assert "README.md" in files and len(COMMANDS) >= 15


@pytest.mark.parametrize(("doc", "line"), COMMANDS, ids=[f"{d}:{c[:60]}" for d, c in COMMANDS])
def test_every_shown_command_parses(doc, line):
    command, rest = resolve(shlex.split(line.replace("[", " [").replace("]", "] "))[1:])
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    unknown = [name for name in option_names(rest) if name not in known]
    assert not unknown, f"{doc}: `{line}` names options `fastddpm {command.name}` does not have: {unknown}"


def test_an_unknown_option_is_caught():
    command, rest = resolve(["sample", "--labels", "red cube", "--no-such-option", "1"])
    known = {opt for param in command.params for opt in param.opts}
    assert "--no-such-option" in option_names(rest) and "--no-such-option" not in known


def fastddpm_cli(*args: str, cwd: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fastddpm", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"fastddpm {' '.join(args)}\n{result.stdout}\n{result.stderr}"


@pytest.mark.slow
def test_the_laptop_path_runs_at_toy_size(tmp_path):
    readme = (ROOT / "README.md").read_text()
    chain = [line for _, line in COMMANDS if "data/small" in line and line in readme]
    assert [line.split()[1] for line in chain] == ["data", "train", "sample", "evaluator"]
    toy = {"--scenes": "4", "--minutes": "0.05", "--steps": "2"}
    for line in chain:
        words = shlex.split(line)[1:]
        words = [toy.get(words[i - 1], word) if i else word for i, word in enumerate(words)]
        if words[0] == "train":
            words += ["--channels", "32,32", "--attention", "", "--batch-size", "4", "--eval-minutes", "0"]
        fastddpm_cli(*words, cwd=tmp_path)
    assert (tmp_path / "out/small/0.png").is_file()


@pytest.mark.slow
@pytest.mark.skipif(
    not hasattr(fastddpm, "Pipeline"), reason="fastddpm.Pipeline is being built on branch api"
)
def test_the_readme_python_snippet_runs(tmp_path, monkeypatch):
    (tmp_path / "checkpoints").symlink_to(ROOT / "checkpoints")
    monkeypatch.chdir(tmp_path)
    exec(compile(python_snippet(), "README.md", "exec"), {})
    assert (tmp_path / "sample.png").is_file()
