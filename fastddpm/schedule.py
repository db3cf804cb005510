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

import torch

from fastddpm.errors import UsageError

SCHEDULES = ("linear", "cosine")
PREDICTIONS = ("epsilon", "v")


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
class DiffusionConfig:
    """How images are noised and what the network predicts; saved with every checkpoint."""

    schedule: str = "linear"  # linear | cosine
    timesteps: int = 1000
    prediction: str = "epsilon"  # epsilon | v
    # Epsilon prediction with a skip: eps = c(t) (x_t - sqrt(a_t) mean) + F(x_t, t, c), where c(t) x_t is the best
    # linear guess of eps for data of this mean and std (Wiener filter). The network then learns only the
    # residual instead of copying the noise through its channels (measured: without it, a 4x4-patch UNet kept an
    # eps error of 0.02 at t = 999 where the linear guess has ~0). None: no skip.
    skip_data_std: float | None = 0.1
    skip_data_mean: float = 0.0

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise UsageError(f"schedule {self.schedule!r} is not one of {', '.join(SCHEDULES)}")
        if self.prediction not in PREDICTIONS:
            raise UsageError(f"prediction {self.prediction!r} is not one of {', '.join(PREDICTIONS)}")


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
        """`steps` decreasing timesteps for a sampler, as diffusers' timestep_spacing computes them:
        'leading' (DDIM paper: 0, k, 2k, ... reversed), 'trailing' (starts at T-1; better with few steps),
        'linspace' (DPM-Solver's default)."""
        T = self.num_timesteps
        if not 1 <= steps <= T:
            raise UsageError(f"steps must be between 1 and {T}; got {steps}")
        if spacing == "leading":
            ratio = T // steps
            return [int(i * ratio) for i in range(steps)][::-1]
        if spacing == "trailing":
            return [int(round(T - i * T / steps)) - 1 for i in range(steps)]
        if spacing == "linspace":
            if steps > T // 2:
                raise UsageError(
                    f"DPM-Solver++ takes at most {T // 2} steps (its timestep grid repeats beyond); got {steps}"
                )
            grid = torch.linspace(0, T - 1, steps + 1, dtype=torch.float64).round().long().tolist()
            return grid[::-1][:-1]
        raise UsageError(f"timestep spacing {spacing!r} is not one of leading, trailing, linspace")
