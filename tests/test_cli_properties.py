"""Generated values thrown at every command's options: the exit code is 0 or 2, never a traceback, and an output
is either complete or absent (never half-written). Tiny sizes keep the whole file near a minute on 2 CPU cores."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from conftest import COURSE
from fastddpm.cli import app

pytestmark = pytest.mark.slow  # generated inputs for every command: minutes, not seconds

runner = CliRunner()
fresh = itertools.count()
SETTINGS = dict(deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Numbers as a user might type them: in range, out of range, not numbers at all.
small_ints = st.sampled_from(["-1", "0", "1", "2", "x", "", "1.5", "99999999999999999999"])
floats = st.one_of(
    st.sampled_from(["-1", "0", "0.5", "1", "2", "nan", "inf", "-inf", "1e308", "x", ""]),
    st.floats(allow_nan=True, allow_infinity=True, width=32).map(repr),
)
markup = st.text(alphabet="red sphere cub,[]/:bold\\", max_size=24)
labels = st.one_of(
    st.sampled_from(["red sphere", "red sphere,cyan cube", "gray cylinder,red cube,blue sphere"]), markup
)


def invoke(*args) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    text = result.output
    assert result.exit_code in (0, 2), (args, result.exit_code, text, result.exception)
    assert "Traceback" not in text, text
    return result.exit_code, text


def new_folder(base: Path) -> Path:
    return base / f"out{next(fresh)}"


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("properties")


@settings(max_examples=25, **SETTINGS)
@given(
    labels=labels,
    sampler=st.sampled_from(["ddim", "dpmpp", "unipc", "ddpm", "euler", ""]),
    steps=st.sampled_from(["-1", "0", "1", "2", "x"]),
    guidance=floats,
    eta=floats,
    seed=small_ints,
    batch_size=small_ints,
)
def test_sample(base, tiny_model, labels, sampler, steps, guidance, eta, seed, batch_size):
    out = new_folder(base)
    args = ["--labels", labels, "--sampler", sampler, "--steps", steps, "--guidance", guidance, "--eta", eta]
    code, _ = invoke(
        "sample", *args, "--seed", seed, "--batch-size", batch_size, "--model", tiny_model, "--out", out
    )
    if code == 2:
        assert not out.exists()
    else:
        record = json.loads((out / "sample.json").read_text())
        assert sorted(p.name for p in out.iterdir()) == sorted([*record["files"], "sample.json"])


@settings(max_examples=10, **SETTINGS)
@given(
    sampler=st.sampled_from(["ddim", "dpmpp,unipc", "ddim,", "plms", ""]),
    steps=st.sampled_from(["1", "0", "1,2", "-3", "x,1", ""]),
    seeds=st.sampled_from(["0", "0,1", "-1", "a", ""]),
    guidance=floats,
)
def test_bench(base, tiny_model, tiny_evaluator, sampler, steps, seeds, guidance):
    out = new_folder(base)
    args = [
        "--sampler",
        sampler,
        "--steps",
        steps,
        "--seeds",
        seeds,
        "--guidance",
        guidance,
        "--no-reference",
    ]
    args += ["--model", tiny_model, "--evaluator", tiny_evaluator, "--labels-file", COURSE / "test.json"]
    code, _ = invoke("bench", *args, "--out", out)
    if code == 2:
        assert not out.exists()
    else:
        [report] = out.glob("*.json")
        assert report.with_suffix(".md").is_file() and report.with_suffix(".png").is_file()


@settings(max_examples=15, **SETTINGS)
@given(
    epochs=st.sampled_from(["0.2", "0", "-1", "nan", "x"]),
    lr=floats,
    cond_drop=floats,
    channels=st.sampled_from(["32,32", "32,48", "0", "x", ""]),
    attention=st.sampled_from(["1", "", "9", "-1", "a"]),
    patch=st.sampled_from(["4", "3", "0", "8"]),
)
def test_train(base, tiny_data, epochs, lr, cond_drop, channels, attention, patch):
    out = new_folder(base)
    args = ["--epochs", epochs, "--lr", lr, "--cond-drop", cond_drop, "--channels", channels]
    args += ["--attention", attention, "--patch", patch, "--batch-size", "4", "--eval-minutes", "0"]
    code, _ = invoke("train", "--data", tiny_data, "--out", out, "--device", "cpu", *args)
    if code == 2:
        assert not out.exists()
    else:
        assert (out / "model" / "model.safetensors").is_file() and (out / "checkpoint.safetensors").is_file()


@settings(max_examples=12, **SETTINGS)
@given(scenes=small_ints, seed=small_ints, max_objects=st.sampled_from(["1", "3", "5", "6", "0", "x"]))
def test_render(base, scenes, seed, max_objects):
    out = new_folder(base)
    code, _ = invoke(
        "data", "render", "--out", out, "--scenes", scenes, "--seed", seed, "--max-objects", max_objects
    )
    if code == 2:
        assert not out.exists()
    else:
        train = json.loads((out / "train.json").read_text())
        assert sorted(p.name for p in (out / "iclevr").iterdir()) == sorted(train)


@settings(max_examples=8, **SETTINGS)
@given(
    precision=st.sampled_from(["fp32", "fp8", ""]),
    batch=st.sampled_from(["1:8:16", "0:1:2", "4:2:1", "1:2", "a:b:c", ""]),
)
def test_export(base, tiny_model, precision, batch):
    out = new_folder(base)
    code, _ = invoke(
        "export", "--model", tiny_model, "--precision", precision, "--batch-profile", batch, "--out", out
    )
    if code == 2:
        assert not out.exists()
    else:
        [onnx] = out.glob("*.onnx")
        assert onnx.with_name(onnx.name + ".json").is_file() and not list(out.glob(".*.tmp"))
