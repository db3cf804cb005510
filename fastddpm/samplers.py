"""Samplers: pure functions of (eps_fn, schedule, x_T, cond) -> images, one signature for all.

    sample(eps_fn, schedule, x_T, cond, *, steps, eta=0.0, noise=None, callback=None) -> x_0

Notation (papers -> code):
    alpha-bar_t (DDPM's cumulative product)        a_t = schedule.alphas_cumprod[t]
    eps_theta(x_t, t, c)                            eps_fn(x, t, cond)
    predicted x_0 (DDPM eq. 15, DDIM eq. 12)        x0 = (x - sqrt(1 - a_t) eps) / sqrt(a_t)
    DPM-Solver's alpha_t, sigma_t, lambda_t         alpha = sqrt(a_t), sigma = sqrt(1 - a_t), lam = log(alpha / sigma)

The loops are plain Python over precomputed scalars with fixed tensor shapes and no host synchronisation, so a
whole run can be captured into one CUDA graph (see capture.py). Stochastic samplers take their per-step noise as
an argument (steps, B, 3, H, W), drawn per image by the caller, so that an image never depends on its batch.
The step formulas equal diffusers' DDPMScheduler, DDIMScheduler and DPMSolverMultistepScheduler (tested).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from fastddpm.errors import UsageError
from fastddpm.schedule import NoiseSchedule

EpsFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
Callback = Callable[[int, torch.Tensor], None]  # (step index, x after that step)


def guided(eps_fn: EpsFn, scale: float) -> EpsFn:
    """Classifier-free guidance: eps_u + s (eps_c - eps_u), conditional and null rows in one batched call.
    Scale 1 is the plain conditional model (no extra work)."""
    if scale == 1.0:
        return eps_fn

    def guided_eps(x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        both = eps_fn(torch.cat((x, x)), torch.cat((t, t)), torch.cat((cond, torch.zeros_like(cond))))
        eps_cond, eps_null = both.chunk(2)
        return eps_null + scale * (eps_cond - eps_null)

    return guided_eps


def _timestep(t: int, x: torch.Tensor) -> torch.Tensor:
    return torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)


def _predict_x0(x: torch.Tensor, eps: torch.Tensor, a_t: float, clip: bool) -> torch.Tensor:
    x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
    return x0.clamp(-1, 1) if clip else x0


def _steps(schedule: NoiseSchedule, steps: int, spacing: str) -> list[tuple[int, float, float]]:
    """(t, alpha-bar_t, alpha-bar of the next timestep) per step; the step after the last one has alpha-bar 1."""
    ac = schedule.alphas_cumprod.tolist()
    ts = schedule.timesteps(steps, spacing)
    return [(t, ac[t], ac[ts[i + 1]] if i + 1 < len(ts) else 1.0) for i, t in enumerate(ts)]


def sample_ddpm(
    eps_fn, schedule: NoiseSchedule, x_T, cond, *, steps=1000, eta=1.0, noise=None, callback=None
):
    """Ancestral DDPM sampling (Ho et al. 2020, Alg. 2) with the 'fixed small' posterior variance."""
    if noise is None or noise.shape[0] < steps:
        raise ValueError(f"DDPM needs per-step noise of shape ({steps}, B, C, H, W)")
    x = x_T
    for i, (t, a_t, a_prev) in enumerate(_steps(schedule, steps, "leading")):
        alpha, beta = a_t / a_prev, 1 - a_t / a_prev
        # 1. predict x_0 from the noise estimate (eq. 15), clipped to the image range
        x0 = _predict_x0(x, eps_fn(x, _timestep(t, x), cond), a_t, clip=True)
        # 2. mean of the posterior q(x_{t-1} | x_t, x_0) (eq. 7)
        x = (math.sqrt(a_prev) * beta / (1 - a_t)) * x0 + (math.sqrt(alpha) * (1 - a_prev) / (1 - a_t)) * x
        # 3. add noise with variance beta-tilde_t = (1 - a_prev) / (1 - a_t) beta_t, except at the last step
        if i + 1 < steps:
            x = x + math.sqrt(max((1 - a_prev) / (1 - a_t) * beta, 1e-20)) * noise[i]
        if callback:
            callback(i, x)
    return x


def sample_ddim(eps_fn, schedule: NoiseSchedule, x_T, cond, *, steps=50, eta=0.0, noise=None, callback=None):
    """DDIM (Song et al. 2021, eq. 12) on 'trailing' timesteps; eta = 0 is deterministic, eta = 1 is DDPM-like."""
    if eta > 0 and (noise is None or noise.shape[0] < steps):
        raise ValueError(f"DDIM with eta > 0 needs per-step noise of shape ({steps}, B, C, H, W)")
    x = x_T
    for i, (t, a_t, a_prev) in enumerate(_steps(schedule, steps, "trailing")):
        eps = eps_fn(x, _timestep(t, x), cond)
        # 1. predicted x_0 (eq. 12, first term), clipped
        x0 = _predict_x0(x, eps, a_t, clip=True)
        # 2. sigma_t (eq. 16) interpolates between DDIM (eta 0) and DDPM (eta 1)
        sigma = eta * math.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
        # 3. x_{t-1} = sqrt(a_prev) x_0 + direction pointing to x_t + random noise (eq. 12)
        x = math.sqrt(a_prev) * x0 + math.sqrt(max(1 - a_prev - sigma**2, 0.0)) * eps
        if sigma > 0:
            x = x + sigma * noise[i]
        if callback:
            callback(i, x)
    return x


def sample_dpmpp_2m(
    eps_fn, schedule: NoiseSchedule, x_T, cond, *, steps=20, eta=0.0, noise=None, callback=None
):
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2): data prediction, multistep second order (midpoint form);
    first order at the first step and at the final step to sigma = 0, as diffusers does."""
    ac = schedule.alphas_cumprod.tolist()
    ts = schedule.timesteps(steps, "linspace")
    alpha = [math.sqrt(ac[t]) for t in ts] + [1.0]
    sigma = [math.sqrt(1 - ac[t]) for t in ts] + [0.0]
    lam = [math.log(a / s) for a, s in zip(alpha[:-1], sigma[:-1], strict=True)]
    x, previous_x0 = x_T, None
    for i, t in enumerate(ts):
        eps = eps_fn(x, _timestep(t, x), cond)
        # 1. data prediction x_theta = (x - sigma_s eps) / alpha_s
        x0 = (x - sigma[i] * eps) / alpha[i]
        if i + 1 == len(ts):
            x = x0  # 2a. final step to sigma = 0: the first-order update reduces to x_0
        else:
            h = lam[i + 1] - lam[i]
            decay = math.expm1(-h)  # exp(-h) - 1
            d = x0
            if previous_x0 is not None:
                # 2b. second order: D = D0 + 1/(2 r) (D0 - D1), r = h_{i-1} / h (eq. for 2M, midpoint form)
                r = (lam[i] - lam[i - 1]) / h
                d = x0 + (0.5 / r) * (x0 - previous_x0)
            x = (sigma[i + 1] / sigma[i]) * x - alpha[i + 1] * decay * d
        previous_x0 = x0
        if callback:
            callback(i, x)
    return x


SAMPLERS = {"ddpm": sample_ddpm, "ddim": sample_ddim, "dpmpp": sample_dpmpp_2m}
DEFAULT_STEPS = {"ddpm": 1000, "ddim": 50, "dpmpp": 20}


def check_sampler(name: str) -> None:
    if name not in SAMPLERS:
        raise UsageError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")


def noise_steps(name: str, steps: int, eta: float) -> int:
    """How many per-step noise tensors a sampler consumes."""
    return steps if name == "ddpm" or (name == "ddim" and eta > 0) else 0
