"""fastddpm.Pipeline: the README's calls, output types, the CLI's pixels, and ValueError for bad input."""

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import fastddpm
from fastddpm.card import StudentInfo
from fastddpm.cli import app
from fastddpm.model import ModelCard, load_model, save_model

LABELS = [["red sphere", "cyan cube"], ["gray cube"]]


@pytest.fixture(scope="module")
def pipe(tiny_model):
    return fastddpm.Pipeline.from_pretrained(tiny_model, device="cpu", backend="torch")


def test_call_returns_pil_images_and_a_tensor(pipe):
    images = pipe(LABELS, sampler="dpmpp", steps=3, seed=0)
    assert [image.size for image in images] == [(64, 64), (64, 64)]
    assert all(isinstance(image, Image.Image) and image.mode == "RGB" for image in images)
    tensor = pipe(LABELS, sampler="dpmpp", steps=3, seed=0, output_type="pt")
    assert tensor.shape == (2, 3, 64, 64) and tensor.min() >= -1 and tensor.max() <= 1
    assert np.array_equal(
        np.asarray(images[1]), ((tensor[1] + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    )


def test_same_pixels_as_the_cli(pipe, tiny_model, tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "sample",
            "--out",
            str(tmp_path),
            "--labels",
            "red sphere,cyan cube",
            "--sampler",
            "ddim",
            "--steps",
            "4",
            "--seed",
            "3",
            "--model",
            str(tiny_model),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    cli = np.asarray(Image.open(tmp_path / "0.png").convert("RGB")).astype(int)
    ours = np.asarray(pipe([LABELS[0]], sampler="ddim", steps=4, seed=3)[0]).astype(int)
    assert np.abs(cli - ours).max() <= 1


def test_score_is_an_accuracy(pipe, tiny_evaluator):
    images = pipe(LABELS, sampler="ddim", steps=2)
    accuracy = pipe.score(images, LABELS, evaluator=tiny_evaluator)
    assert 0.0 <= accuracy <= 1.0
    assert (
        pipe.score(pipe(LABELS, sampler="ddim", steps=2, output_type="pt"), LABELS, tiny_evaluator)
        == accuracy
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"labels": [["red sphere", "pink cube"]]}, "pink cube"),
        ({"steps": 0}, "--steps 0"),
        ({"sampler": "euler"}, "--sampler 'euler' is not one of"),
        ({"output_type": "np"}, "output_type 'np'"),
    ],
)
def test_bad_input_raises_value_error_naming_it(pipe, kwargs, message):
    with pytest.raises(ValueError, match=message):
        pipe(**{"labels": LABELS, "steps": 2, **kwargs})


def test_unknown_backend_is_a_value_error(tiny_model):
    with pytest.raises(
        ValueError, match="--backend 'tensorflow' is not one of torch, compile, ort, openvino, trt"
    ):
        fastddpm.Pipeline.from_pretrained(tiny_model, device="cpu", backend="tensorflow")


def test_student_refuses_guidance_and_samples_its_own_steps(tiny_model, tmp_path):
    net, card = load_model(tiny_model, torch.device("cpu"))
    info = dataclasses.replace(card.info, student=StudentInfo(sampler="ddim", steps=2, guidance_folded=2.0))
    card = ModelCard(card.model, card.diffusion, info, card.sampling)
    save_model(tmp_path / "student", net, card, dtype=torch.float32)
    student = fastddpm.Pipeline.from_pretrained(tmp_path / "student", device="cpu")
    assert student.settings().steps == 2 and student.settings().guidance == 1.0
    assert len(student(LABELS)) == 2
    with pytest.raises(ValueError, match="--guidance 2.0: this student"):
        student(LABELS, guidance=2.0)
