"""The training loss: denoising score matching with condition dropout (for classifier-free guidance) and
min-SNR-gamma weighting (Hang et al. 2023), which converges several times faster than the plain loss."""

from __future__ import annotations

import torch
from torch import nn

from fastddpm.model import EpsilonModel
from fastddpm.schedule import NoiseSchedule


def drop_conditions(
    cond: torch.Tensor, rate: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Replace each row of (B, 24) multi-hot by the null condition (all zeros) with probability `rate`."""
    keep = torch.rand(cond.shape[0], 1, device=cond.device, generator=generator) >= rate
    return cond * keep


def diffusion_loss(
    model: EpsilonModel,
    schedule: NoiseSchedule,
    x0: torch.Tensor,  # (B, 3, 64, 64) clean images in [-1, 1]
    cond: torch.Tensor,  # (B, 24) multi-hot
    *,
    cond_drop: float = 0.1,
    min_snr_gamma: float | None = 5.0,
    min_snr_floor: float = 0.0,  # the weight's lower bound (min-SNR's falls toward 0 at low noise)
    generator: torch.Generator | None = None,
    forward: nn.Module | None = None,  # the model's TrainingForm as training runs it (DDP, compiled)
) -> torch.Tensor:
    """The loss of `model` in its own parameterisation (EpsilonModel.training_output against training_target)."""
    t = torch.randint(0, schedule.num_timesteps, (x0.shape[0],), device=x0.device, generator=generator)
    noise = torch.randn(x0.shape, device=x0.device, generator=generator)
    x_t = schedule.add_noise(x0, noise, t)
    target = model.training_target(schedule, x0, noise, t)
    output = (forward if forward is not None else model.training_output)(
        x_t, t, drop_conditions(cond, cond_drop, generator)
    )
    per_image = (output.float() - target).pow(2).mean(dim=(1, 2, 3))
    if min_snr_gamma is None:
        return per_image.mean()
    weight = model.min_snr_weight(schedule.snr(t), min_snr_gamma).clamp(min=min_snr_floor)
    return (weight * per_image).mean()
