"""Distillation on tiny models: a halving stage teaches the student's one step to land where the teacher's two
land; the student is an ordinary model folder; stop + resume continues exactly."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from conftest import make_tiny_model
from fastddpm.cli import app
from fastddpm.configs import SamplingDefaults
from fastddpm.distill.config import DistillConfig
from fastddpm.distill.loop import distill
from fastddpm.distill.method import Stage, halving_target, loss_of
from fastddpm.errors import UsageError
from fastddpm.model import EpsilonModel, load_card, load_model
from fastddpm.schedule import NoiseSchedule


def tiny_config(model, data, out, **overrides) -> DistillConfig:
    base = dict(model=str(model), data=str(data), out=str(out), to_steps=1, from_steps=2, stage_steps=4)
    return DistillConfig(
        **{**base, "batch_size": 4, "lr": 1e-3, "log_every": 2, "device": "cpu", **overrides}
    )


def one_vs_two_steps(student, teacher, schedule, steps: int) -> float:
    """How far the student's one DDIM step is from the teacher's two, on fixed held-out images and noise at each
    of the student's timesteps, in the student's parameterisation: the mean squared difference between its eps
    and the eps whose step lands exactly where the teacher's two do (the landing points differ by that difference
    times a per-timestep constant)."""
    g = torch.Generator().manual_seed(123)
    grid = torch.tensor(schedule.timesteps(2 * steps, "trailing"))
    alphas = torch.cat([schedule.alphas_cumprod[grid], torch.ones(1)])
    x0, cond = torch.rand(16, 3, 64, 64, generator=g) * 2 - 1, torch.eye(24)[torch.arange(16) % 24]
    index = 2 * (torch.arange(16) % steps)
    z = schedule.add_noise(x0, torch.randn(x0.shape, generator=g), grid[index])
    with torch.no_grad():
        target = halving_target(teacher, z, index, grid, alphas, cond)
        return float((student(z, grid[index], cond) - target).pow(2).mean())


@pytest.mark.slow
@pytest.mark.parametrize("steps", [1, 2])
def test_a_halving_stage_makes_one_step_match_two(tmp_path, steps):
    torch.manual_seed(0)
    net, card = load_model(make_tiny_model(tmp_path / "teacher"))
    teacher = EpsilonModel(net, card.diffusion).eval().requires_grad_(False)
    student = EpsilonModel(load_model(tmp_path / "teacher")[0], card.diffusion)
    schedule = NoiseSchedule.from_config(card.diffusion)
    config = DistillConfig(model="", data="", out="", to_steps=1, from_steps=2)
    stage = Stage(1, steps, teacher, student)
    before = one_vs_two_steps(student, teacher, schedule, steps)
    optimizer = torch.optim.Adam(student.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(1)
    for _ in range(60):
        x0, cond = (
            torch.rand(8, 3, 64, 64, generator=g) * 2 - 1,
            torch.eye(24)[torch.randint(0, 24, (8,), generator=g)],
        )
        loss = loss_of(config, stage, schedule, x0, cond, g)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = one_vs_two_steps(student, teacher, schedule, steps)
    assert after < 0.1 * before, (before, after)


@pytest.mark.slow
def test_stop_and_resume_continue_exactly(tiny_data, tmp_path):
    teacher = make_tiny_model(tmp_path / "teacher")
    straight = distill(tiny_config(teacher, tiny_data, tmp_path / "straight"))
    assert straight.model_dir is not None
    out = tmp_path / "split"
    for limit in (3, 4, 6):  # inside stage 0, at the boundary between stages, inside stage 1
        stopped = distill(tiny_config(teacher, tiny_data, out), resume=limit != 3, step_limit=limit)
        assert stopped.model_dir is None and stopped.step == limit
    with pytest.raises(UsageError, match="already holds a run"):
        distill(tiny_config(teacher, tiny_data, out))
    resumed = distill(tiny_config(teacher, tiny_data, out), resume=True)
    assert resumed.step == straight.step == 8
    for folder in ("students/folded", "students/1-step"):
        a = load_file(tmp_path / "straight" / folder / "model.safetensors")
        b = load_file(out / folder / "model.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), folder
    stages = [
        e
        for e in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
        if "student_steps" in e and "acc_test" in e
    ]
    assert [e["student_steps"] for e in stages] == [2, 1]


@pytest.mark.slow
def test_the_student_is_an_ordinary_model_folder(tiny_data, tmp_path):
    teacher = make_tiny_model(tmp_path / "teacher")
    card = dataclasses.replace(load_card(teacher), sampling=SamplingDefaults(3.0, "a test"))
    (teacher / "config.json").write_text(card.to_json())  # the student folds the teacher card's scale
    runner = CliRunner()
    out = tmp_path / "run"
    args = [
        "distill",
        "--model",
        teacher,
        "--data",
        tiny_data,
        "--out",
        out,
        "--to-steps",
        "1",
        "--from-steps",
        "2",
    ]
    result = runner.invoke(
        app, [str(a) for a in [*args, "--stage-steps", "2", "--batch-size", "2", "--device", "cpu"]]
    )
    assert result.exit_code == 0, result.output
    student = out / "model"
    info = load_card(student).info.student
    assert info.steps == 1 and info.guidance_folded == 3.0 and len(info.teacher_sha256) == 64
    samples = tmp_path / "samples"
    result = runner.invoke(
        app, ["sample", "--labels", "red sphere", "--model", str(student), "--out", str(samples)]
    )
    assert result.exit_code == 0, result.output
    settings = json.loads((samples / "sample.json").read_text())["settings"]
    assert (settings["sampler"], settings["steps"], settings["guidance"]) == ("ddim", 1, 1.0)
    result = runner.invoke(
        app,
        [
            "sample",
            "--labels",
            "red sphere",
            "--model",
            str(student),
            "--guidance",
            "2",
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert result.exit_code == 2 and "folded in" in result.output
    from fastddpm.export.onnx_export import export_onnx

    _, record = export_onnx(student, tmp_path / "export", "fp32", (1, 8, 64))
    assert all(row["relative"] <= 1e-3 for row in record.parity)
    assert dataclasses.asdict(load_card(student).model) == dataclasses.asdict(load_card(teacher).model)


@pytest.mark.slow
def test_a_student_distills_further_without_folding_again(tiny_data, tmp_path):
    teacher = make_tiny_model(tmp_path / "teacher")
    first = tmp_path / "first"
    distill(tiny_config(teacher, tiny_data, first, stage_steps=2))
    runner = CliRunner()
    args = [
        "distill",
        "--model",
        first / "students" / "folded",
        "--data",
        tiny_data,
        "--out",
        tmp_path / "second",
    ]
    args += ["--to-steps", "1"]
    result = runner.invoke(
        app, [str(a) for a in [*args, "--stage-steps", "2", "--batch-size", "2", "--device", "cpu"]]
    )
    assert result.exit_code == 0, result.output
    start = json.loads((tmp_path / "second" / "metrics.jsonl").read_text().splitlines()[0])
    assert start["stages"] == [1]  # one halving from the folded student's 2 steps, no second folding
    assert load_card(tmp_path / "second" / "model").info.student.guidance_folded == 2.0
