"""The noise schedule as data: betas and their cumulative products, built by small named functions.

Notation (DDPM / DDIM papers -> code): beta_t -> betas[t]; alpha-bar_t -> alphas_cumprod[t];
x_t = sqrt(alpha-bar_t) x_0 + sqrt(1 - alpha-bar_t) eps  (add_noise);
v = sqrt(alpha-bar_t) eps - sqrt(1 - alpha-bar_t) x_0  (velocity).
The betas are computed exactly as diffusers' schedulers compute them (float32), so our samplers can be tested
against diffusers step for step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from fastddpm.choices import Spacing
from fastddpm.configs import DiffusionConfig

SPACINGS = Spacing.names()


def linear_betas(timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """DDPM's linear schedule (diffusers 'linear')."""
    return torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float32)


def cosine_betas(timesteps: int = 1000, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal's cosine schedule (diffusers 'squaredcos_cap_v2')."""

    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [
        min(1 - alpha_bar((i + 1) / timesteps) / alpha_bar(i / timesteps), max_beta) for i in range(timesteps)
    ]
    return torch.tensor(betas, dtype=torch.float32)


@dataclass(frozen=True)
class NoiseSchedule:
    betas: torch.Tensor  # (T,) float32
    alphas_cumprod: torch.Tensor = field(init=False)  # (T,) alpha-bar_t, derived from betas

    def __post_init__(self) -> None:
        object.__setattr__(self, "alphas_cumprod", torch.cumprod(1.0 - self.betas, dim=0))

    @staticmethod
    def from_config(config: DiffusionConfig) -> NoiseSchedule:
        make = linear_betas if config.schedule == "linear" else cosine_betas
        return NoiseSchedule(make(config.timesteps))

    def to(self, device: torch.device | str) -> NoiseSchedule:
        """A copy whose tensors live on `device` (training gathers from them every step)."""
        return NoiseSchedule(self.betas.to(device))

    @property
    def num_timesteps(self) -> int:
        return self.betas.shape[0]

    def _gather(self, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.alphas_cumprod[t].to(like.dtype).view(-1, *([1] * (like.dim() - 1)))
        return a.sqrt(), (1 - a).sqrt()

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps, with t (B,) integer timesteps."""
        sqrt_a, sqrt_1ma = self._gather(t, x0)
        return sqrt_a * x0 + sqrt_1ma * noise

    def velocity(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """v = sqrt(a_t) eps - sqrt(1 - a_t) x0 (Salimans & Ho)."""
        sqrt_a, sqrt_1ma = self._gather(t, x0)
        return sqrt_a * noise - sqrt_1ma * x0

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        a = self.alphas_cumprod[t]
        return a / (1 - a)

    def timesteps(self, steps: int, spacing: str = "trailing") -> list[int]:
        """`steps` decreasing, distinct timesteps. diffusers' timestep_spacing: 'leading' (DDIM paper: 0, k, 2k, ...
        reversed), 'trailing' (starts at T-1; better with few steps), 'linspace' (rounded linspace over [0, T-1]).
        Denser at low noise: 'quadratic' (DDIM paper's CIFAR-10 grid), 'logsnr' (uniform in log-SNR, DPM-Solver's
        grid for small images), 'karras' (EDM's rho = 7 grid in sigma); each is steps + 1 points from T-1 to 0,
        rounded, without the last (the final update lands on the clean image, as linspace's does)."""
        if spacing not in SPACINGS:
            raise ValueError(f"timestep spacing {spacing!r} is not one of {', '.join(SPACINGS)}")
        T, top = self.num_timesteps, self.max_steps(spacing)
        if not 1 <= steps <= top:
            raise ValueError(f"{spacing} spacing gives 1 to {top} distinct timesteps; asked for {steps}")
        if spacing == "leading":
            ratio = T // steps
            return [int(i * ratio) for i in range(steps)][::-1]
        if spacing == "trailing":
            return [int(round(T - i * T / steps)) - 1 for i in range(steps)]
        if spacing == "linspace":
            grid = torch.linspace(0, T - 1, steps + 1, dtype=torch.float64).round().long().tolist()
            return grid[::-1][:-1]
        return self._grid(steps, spacing)

    def _grid(self, steps: int, spacing: str) -> list[int]:
        """The rounded grids denser at low noise, possibly with repeats (timesteps checks)."""
        T = self.num_timesteps
        u = torch.linspace(0, 1, steps + 1, dtype=torch.float64)  # 0 at the noisiest point
        if spacing == "quadratic":
            t = (T - 1) * (1 - u) ** 2
        else:
            a = self.alphas_cumprod.double()
            log_sigma = 0.5 * torch.log((1 - a) / a)  # increasing in t
            lo, hi = log_sigma[0], log_sigma[-1]
            if spacing == "logsnr":
                target = hi + u * (lo - hi)
            else:
                rho = 7.0
                top, bottom = hi.exp() ** (1 / rho), lo.exp() ** (1 / rho)
                target = rho * torch.log(top + u * (bottom - top))
            t = torch.from_numpy(np.interp(target.numpy(), log_sigma.numpy(), np.arange(T, dtype=np.float64)))
        return t.round().long().tolist()[:-1]

    def max_steps(self, spacing: str) -> int:
        """The most steps `spacing` gives distinct timesteps for: linspace's rounding repeats them beyond T // 2,
        the denser grids' at their low-noise end (the first step count that repeats one ends the range)."""
        T = self.num_timesteps
        if spacing in ("leading", "trailing"):
            return T
        if spacing == "linspace":
            return T // 2
        steps = 1
        while steps < T and len(set(self._grid(steps + 1, spacing))) == steps + 1:
            steps += 1
        return steps
