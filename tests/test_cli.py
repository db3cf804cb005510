"""Every bad-input path: exit code 2, one message naming the bad value, no traceback, nothing half-written."""

import json

import pytest
from typer.testing import CliRunner

from conftest import COURSE
from fastddpm.cli import app

runner = CliRunner()


def run(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    text = result.output + (result.stderr if result.stderr_bytes is not None else "")
    return result.exit_code, text


@pytest.mark.parametrize(
    "args, message",
    [
        (["data", "render", "--scenes", "0"], "'--scenes': Input should be greater than or equal to 1"),
        (
            ["data", "render", "--max-objects", "9"],
            "'--max-objects': Input should be less than or equal to 5",
        ),
        (["data", "render", "--device", "tpu"], "'tpu' is not one of 'auto', 'cpu', 'cuda'"),
        (["data", "render", "--labels", "missing.json"], "does not exist"),
        (["sample", "--labels", "red spere"], "Did you mean 'red sphere'"),
        (["sample", "--labels", "red sphere,red sphere"], "repeated object"),
        (
            ["sample", "--labels", "red sphere", "--sampler", "euler"],
            "'euler' is not one of 'ddpm', 'ddim', 'dpmpp', 'unipc'",
        ),
        (["sample"], "give exactly one of --labels"),
        (["sample", "--labels-file", COURSE / "train.json"], "must be a list of label lists"),
        (["sample", "--labels", "red sphere", "--backend", "tpu"], "'tpu' is not one of 'torch'"),
        (
            ["sample", "--labels", "red sphere", "--sampler", "dpmpp", "--steps", "900"],
            "dpmpp takes 1 to 500 steps",
        ),
        (["bench", "--sampler", "plms"], "--sampler 'plms' is not one of ddpm, ddim, dpmpp, unipc"),
        (["bench", "--backend", "tf"], "--backend 'tf' is not one of torch, compile, ort, openvino, trt"),
        (["bench", "--steps", "ten"], "comma-separated integers"),
        (["export", "--precision", "fp8"], "'fp8' is not one of 'fp32', 'fp16', 'bf16'"),
        (["export", "--batch", "8:4:2"], "1 <= MIN <= OPT <= MAX"),
        (["train", "--data", "nowhere", "--amp", "fp8"], "'fp8' is not one of 'auto', 'bf16', 'fp16', 'off'"),
        (["train", "--data", "nowhere"], "does not exist"),
        (
            ["evaluator", "score", "--images", "nowhere", "--labels-file", COURSE / "test.json"],
            "is not a folder",
        ),
    ],
)
def test_bad_input_exits_2_with_a_message(tmp_path, tiny_model, args, message):
    out = tmp_path / "out"
    needs_out = {"data": "--out", "sample": "--out", "train": "--out"}
    extra = [needs_out[args[0]], out] if args[0] in needs_out else []
    if args[0] in ("sample", "bench", "export"):
        extra += ["--model", tiny_model]
    if args[0] == "bench":
        extra += ["--labels-file", COURSE / "test.json"]
    code, text = run(*args, *extra)
    assert code == 2, text
    assert message.lower() in " ".join(text.split()).lower(), text
    assert "Traceback" not in text
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())


def test_sample_writes_images_grid_and_trajectory(tmp_path, tiny_model):
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps([["red sphere"], ["cyan cube", "gray cylinder"], ["yellow cube"]]))
    code, text = run(
        "sample",
        "--labels-file",
        labels,
        "--steps",
        "2",
        "--model",
        tiny_model,
        "--out",
        tmp_path / "s",
        "--trajectory",
    )
    assert code == 0, text
    names = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert names == ["0.png", "1.png", "2.png", "grid.png", "sample.json", "trajectory.png"]
    from PIL import Image

    with Image.open(tmp_path / "s" / "0.png") as img:
        assert img.size == (64, 64)
    with Image.open(tmp_path / "s" / "trajectory.png") as img:
        assert img.size[0] >= 8 * 64  # at least 8 frames from noise to image


def test_help_teaches():
    code, text = run("--help")
    assert code == 0 and all(
        cmd in text for cmd in ("train", "sample", "bench", "export", "data", "evaluator")
    )
    code, text = run("bench", "--help")
    assert code == 0 and "--labels-file" in text and "--reference" in text


@pytest.mark.parametrize(
    "group, command, last_words",
    [((), "distill", "Stops and resumes like train."), (("evaluator",), "report", "missed objects were).")],
)
def test_a_commands_list_shows_each_first_paragraph_as_flowing_text(group, command, last_words, monkeypatch):
    """On a terminal wide enough for it, a command's entry in its group's list is one line, not broken where
    the docstring breaks its lines."""
    monkeypatch.setenv("COLUMNS", "400")
    code, text = run(*group, "--help")
    entry = [line for line in text.splitlines() if line.strip("│ ").startswith(command + " ")]
    assert code == 0 and len(entry) == 1 and last_words in entry[0], entry


def test_a_commands_later_paragraphs_flow_too(monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    code, text = run("bench", "--help")
    assert code == 0 and "each split scored in one evaluator call as the course does" in text


def test_help_does_not_import_torch():
    """`fastddpm --help` stays instant: the command tree (choices, defaults) is torch-free."""
    import subprocess
    import sys

    code = (
        "import sys, fastddpm.cli; from fastddpm.cli import app; assert 'torch' not in sys.modules, 'torch'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def every_option(command=None, path=()):
    """(command path, click option) for every option of every command of the app."""
    import typer

    command = command or typer.main.get_command(app)
    for name, sub in getattr(command, "commands", {}).items():
        yield from every_option(sub, (*path, name))
    if not hasattr(command, "commands"):
        for param in command.params:
            yield " ".join(path), param


@pytest.mark.parametrize(
    "flag, low, high",
    [("--seed", 0, 2**32 - 1), ("--batch-size", 1, 65_536), ("--lr", 0.0, None)],
)
def test_a_shared_option_takes_the_same_range_in_every_command(flag, low, high):
    found = {path: (param.min, param.max) for path, param in every_option() if flag in param.opts}
    assert len(found) >= 3, found
    assert set(found.values()) == {(low, high)}, found


@pytest.mark.parametrize("flag", ["--seed", "--device", "--out", "--batch-size"])
def test_a_shared_option_keeps_its_own_help_per_command(flag):
    helps = {path: param.help for path, param in every_option() if flag in param.opts}
    assert all(helps.values()) and len(set(helps.values())) > 1, helps


@pytest.mark.parametrize(
    "given, expected", [([], 5.0), (["--min-snr-gamma", "2"], 2.0), (["--min-snr-gamma", "0"], None)]
)
def test_train_passes_the_min_snr_gamma_on_and_zero_turns_it_off(monkeypatch, tmp_path, given, expected):
    import fastddpm.training.loop as loop
    from fastddpm.training.loop import TrainResult

    seen = {}

    def fake_train(config, resume, progress):
        seen["config"] = config
        return TrainResult(tmp_path / "model", 0, None)

    monkeypatch.setattr(loop, "train", fake_train)
    code, output = run("train", "--data", tmp_path, "--out", tmp_path / "run", *given)
    assert code == 0, output
    assert seen["config"].min_snr_gamma == expected
