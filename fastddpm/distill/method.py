"""`fastddpm distill`: a few-step student of a guided teacher, in stages (the student has the teacher's
architecture and keeps the (x, t, cond) -> eps boundary, so sample, bench and export take it unchanged).

Stage 0 folds classifier-free guidance in (Meng et al. 2023, stage one): the student learns the teacher's guided
eps, eps_u + w (eps_c - eps_u), so it samples with one network row per step and guidance 1. Each later stage
halves the DDIM steps (Salimans & Ho 2022, Alg. 2): on the student's grid of N/2 trailing timesteps, the student's
one DDIM step from t must land where the teacher's two steps t -> t' -> t'' land. With z'' the teacher's result,
the student's target in its own (eps) parameterisation is

    eps~ = (z'' - sqrt(a'') / sqrt(a_t) z) / (sqrt(1 - a'') - sqrt(a'') sqrt(1 - a_t) / sqrt(a_t))

(the x-space target x~ of the paper, expressed as eps). Loss weight per timestep of a halving (`weighting`): "eps"
(plain eps MSE, i.e. x-space weight SNR) or "x-trunc-snr" (the paper's x-space max(SNR, 1), i.e. eps weight
max(1, 1/SNR), which puts the high-noise steps first: there an eps error moves x_0 by sqrt(1/SNR), 157x at
t = 999). Folding uses plain eps MSE, as training does. The learning rate decays linearly to 10% over each stage.

Run folder: config.json, metrics.jsonl (loss per check-in, a quick evaluation after every stage), checkpoint
(resumable, bit for bit), students/<steps>/ (each stage's student, fp32) and model/ (the final student, fp16).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from fastddpm.distill.config import DistillConfig
from fastddpm.model import EpsilonModel, load_model
from fastddpm.sampling.samplers import ddim_step, guided
from fastddpm.schedule import NoiseSchedule

STUDENTS = "students"


def halving_target(teacher, z, grid_index, grid, alphas, cond) -> torch.Tensor:
    """eps~ at (z, grid[i]) that makes one student DDIM step land on the teacher's two (module docstring).
    grid: the teacher's timesteps (decreasing); alphas: their alpha-bars with 1.0 appended for the end.
    The teacher's steps are the sampler's own DDIM step, with per-row alpha-bars (B, 1, 1, 1)."""
    a = [alphas[grid_index + k].view(-1, 1, 1, 1) for k in range(3)]  # a_t, a_t', a_t''
    z1 = ddim_step(z, teacher(z, grid[grid_index], cond), a[0], a[1])
    z2 = ddim_step(z1, teacher(z1, grid[grid_index + 1], cond), a[1], a[2])
    ratio = (a[2] / a[0]).sqrt()
    return (z2 - ratio * z) / ((1 - a[2]).sqrt() - ratio * (1 - a[0]).sqrt())


@dataclass
class Stage:
    """What one stage trains: a student of `steps` DDIM steps (0: guidance folding) from `teacher`."""

    index: int
    steps: int
    teacher: Callable  # eps of the stage's teacher: guided original (stage 0) or the previous student
    student: EpsilonModel


def stage_folder(out: Path, steps: int) -> Path:
    """Where a stage's student lives: students/folded (stage 0) or students/<steps>-step."""
    return out / STUDENTS / ("folded" if steps == 0 else f"{steps}-step")


def stage_teacher(config: DistillConfig, index: int, steps: list[int], device: torch.device) -> Callable:
    """The given model for the first stage (with guidance when the stage folds it in), then the previous stage's
    student (guidance already folded in)."""
    folder = Path(config.model) if index == 0 else stage_folder(Path(config.out), steps[index - 1])
    net, card = load_model(folder, device)
    eps = EpsilonModel(net, card.diffusion).eval().requires_grad_(False)
    return guided(eps, config.guidance) if steps[index] == 0 else eps


def loss_of(
    config: DistillConfig, stage: Stage, schedule: NoiseSchedule, x0, cond, generator
) -> torch.Tensor:
    """The stage's loss on one batch of clean images x0 (B, 3, 64, 64) and conditions (B, 24)."""
    device, b = x0.device, x0.shape[0]
    if stage.steps == 0:  # guidance folding: any timestep, the guided eps as target
        t = torch.randint(0, schedule.num_timesteps, (b,), device=device, generator=generator)
        z = schedule.add_noise(x0, torch.randn(x0.shape, device=device, generator=generator), t)
        with torch.no_grad():
            target = stage.teacher(z, t, cond)
    else:  # halving: the student's timesteps are every other one of the teacher's grid
        grid = torch.tensor(schedule.timesteps(2 * stage.steps, "trailing"), device=device)
        alphas = torch.cat([schedule.alphas_cumprod[grid], torch.ones(1, device=device)])
        index = 2 * torch.randint(0, stage.steps, (b,), device=device, generator=generator)
        t = grid[index]
        z = schedule.add_noise(x0, torch.randn(x0.shape, device=device, generator=generator), t)
        with torch.no_grad():
            target = halving_target(stage.teacher, z, index, grid, alphas, cond)
    per_row = (stage.student(z, t, cond) - target).pow(2).mean(dim=(1, 2, 3))
    if stage.steps and config.weighting == "x-trunc-snr":  # folding learns an eps like training: plain MSE
        per_row = per_row * (1 / schedule.snr(t)).clamp(min=1.0)
    return per_row.mean()
