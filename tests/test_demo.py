"""fastddpm.demo: generate() as a plain function, the page built without a server, and the CLI's bad input.
(The page in a real browser: test_demo_browser.py.)"""

from __future__ import annotations

import socket
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

import fastddpm
from fastddpm import demo
from fastddpm.cli import app
from fastddpm.errors import UsageError
from test_bad_input import assert_refused

runner = CliRunner()


@pytest.fixture(scope="module")
def pipe(tiny_model):
    return fastddpm.Pipeline.from_pretrained(tiny_model, device="cpu")


def test_generate_returns_the_pipelines_images_and_the_time(pipe):
    result = demo.generate(pipe, ["Red  Sphere", "cyan cube"], "ddim", 3, 2.0, seed=1, count=2)
    expected = pipe([["red sphere", "cyan cube"]] * 2, sampler="ddim", steps=3, seed=1, guidance=2.0)
    assert [image.size for image in result.images] == [(64, 64)] * 2
    for ours, theirs in zip(result.images, expected, strict=True):
        assert np.array_equal(np.asarray(ours), np.asarray(theirs))
    assert result.seconds > 0 and result.accuracy is None
    assert result.summary() == f"2 images in {result.seconds:.2f} s"
    typed = demo.generate(pipe, "red sphere, Cyan Cube", "ddim", 3, 2.0, seed=1, count=1)
    assert np.array_equal(np.asarray(typed.images[0]), np.asarray(expected[0]))


def test_generate_takes_a_guidance_interval(pipe):
    result = demo.generate(pipe, ["red sphere"], "ddim", 3, 3.0, seed=1, count=1, guidance_interval="0-400")
    expected = pipe(
        [["red sphere"]], sampler="ddim", steps=3, seed=1, guidance=3.0, guidance_interval="0-400"
    )
    every_step = pipe([["red sphere"]], sampler="ddim", steps=3, seed=1, guidance=3.0)
    assert np.array_equal(np.asarray(result.images[0]), np.asarray(expected[0]))
    assert not np.array_equal(np.asarray(result.images[0]), np.asarray(every_step[0]))
    with pytest.raises(UsageError, match="--guidance-interval takes `all` or timesteps LO-HI"):
        demo.generate(pipe, ["red sphere"], "ddim", 3, 3.0, guidance_interval="low")


def test_generate_takes_a_timestep_grid(pipe):
    result = demo.generate(pipe, ["red sphere"], "ddim", 3, 2.0, seed=1, count=1, spacing="karras")
    expected = pipe([["red sphere"]], sampler="ddim", steps=3, seed=1, guidance=2.0, spacing="karras")
    own = pipe([["red sphere"]], sampler="ddim", steps=3, seed=1, guidance=2.0)
    assert np.array_equal(np.asarray(result.images[0]), np.asarray(expected[0]))
    assert not np.array_equal(np.asarray(result.images[0]), np.asarray(own[0]))
    with pytest.raises(UsageError, match="--spacing 'cosine' is not one of own, leading"):
        demo.generate(pipe, ["red sphere"], "ddim", 3, 2.0, spacing="cosine")


def test_generate_scores_against_the_chosen_objects(pipe, tiny_evaluator):
    result = demo.generate(pipe, ["gray cube"], "dpmpp", 2, None, count=2, evaluator=tiny_evaluator, score=True)
    assert result.accuracy == pipe.score(result.images, [["gray cube"]] * 2, tiny_evaluator)
    assert result.summary().endswith(f"; evaluator accuracy {result.accuracy:.3f}")


@pytest.mark.parametrize(
    "objects, settings, fragment",
    [
        (["red sphre"], {}, "unknown object 'red sphre' in the objects. Did you mean 'red sphere'"),
        ([], {}, "empty label list in the objects"),
        (["red sphere", "cyan cube", "gray cube", "blue cube"], {}, "4 objects in the objects; at most 3"),
        (["red sphere", "red sphere"], {}, "repeated object 'red sphere'"),
        (["red sphere"], {"sampler": "euler"}, "sampler 'euler' is not one of ddpm, ddim, dpmpp, unipc"),
        (["red sphere"], {"steps": 2.5}, "steps 2.5: give a whole number from 1 to 1000"),
        (["red sphere"], {"steps": None}, "steps None"),
        (["red sphere"], {"count": 17}, "images 17: give a whole number from 1 to 16"),
        (["red sphere"], {"seed": -1}, "seed -1"),
    ],
)
def test_generate_refuses_bad_input_naming_it(pipe, objects, settings, fragment):
    with pytest.raises(UsageError, match="^" + fragment.replace("(", r"\(").replace(".", r"\.")):
        demo.generate(pipe, objects, **settings)


def test_the_page_shows_a_bad_label_as_its_message(pipe):
    gr = pytest.importorskip("gradio")
    page = demo.build_app(pipe)
    assert isinstance(page, gr.Blocks)
    handler = next(fn for fn in page.fns.values() if fn.name == "on_generate").fn
    images, status = handler(["red sphre"], "dpmpp", 2, 2.0, "all", "own", 0, 1, False)
    assert images == [] and status.startswith("error: unknown object 'red sphre'")
    images, status = handler(["red sphere"], "dpmpp", 2, 2.0, "0-450x", "own", 0, 1, False)
    assert images == [] and status.startswith("error: --guidance-interval takes `all` or timesteps LO-HI")
    images, status = handler(["red sphere"], "dpmpp", 40, 2.0, "all", "logsnr", 0, 1, False)
    assert images == [] and status.startswith("error: --steps 40 is out of range: dpmpp takes 1 to 37 steps")
    images, status = handler(["red sphere"], "dpmpp", 2, 2.0, "all", "karras", 0, 1, False)
    assert len(images) == 1 and status.startswith("1 image in ")


def test_demo_without_gradio_says_how_to_install(monkeypatch, tiny_model):
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio now raises ImportError
    result = runner.invoke(app, ["demo", "--model", str(tiny_model)])
    assert_refused(result.exit_code, result.output, "pip install 'fastddpm[demo]'")


def test_demo_refuses_a_taken_port_and_a_bad_model(tiny_model, tmp_path):
    pytest.importorskip("gradio")
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["demo", "--model", str(tiny_model), "--port", str(port)])
        assert_refused(result.exit_code, result.output, f"--port {port} on 127.0.0.1", "choose a free port")
    result = runner.invoke(app, ["demo", "--model", str(tmp_path / "none"), "--port", str(port)])  # free now
    assert_refused(result.exit_code, result.output, "none' is not a model folder")
    result = runner.invoke(app, ["demo", "--port", "70000"])
    assert_refused(result.exit_code, result.output, "--port", "65535")
