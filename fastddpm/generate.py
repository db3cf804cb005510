"""Batch generation: any number of conditions, chunked into fixed batch shapes, per-image seeds, guidance, and
(on CUDA) the whole denoising run of each chunk replayed from one captured CUDA graph."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from fastddpm.defaults import DEFAULT_GUIDANCE
from fastddpm.samplers import SAMPLERS, Callback, EpsFn, check_sampler, guided, noise_steps
from fastddpm.schedule import NoiseSchedule

IMAGE_SHAPE = (3, 64, 64)
SEED_STRIDE = 1_000_003  # image i of a run with seed s is drawn from seed s * SEED_STRIDE + i


@dataclass(frozen=True)
class SampleSettings:
    sampler: str = "ddim"  # ddpm | ddim | dpmpp
    steps: int = 50
    eta: float = 0.0  # DDIM only: 0 deterministic, 1 DDPM-like
    guidance: float = DEFAULT_GUIDANCE  # classifier-free guidance scale; 1 = plain conditional model
    batch_size: int = 32  # fixed chunk shape (padded at the end)

    def __post_init__(self) -> None:
        check_sampler(self.sampler)


def image_seeds(seed: int, count: int) -> list[int]:
    return [seed * SEED_STRIDE + i for i in range(count)]


def image_noise(
    seeds: list[int], settings: SampleSettings, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """x_T (B, 3, 64, 64) and per-step noise (n, B, 3, 64, 64) or None, each image from its own generator, so an
    image never changes with the batch it is drawn in (same device, same seed -> same image)."""
    n = noise_steps(settings.sampler, settings.steps, settings.eta)
    x_T, noise = [], []
    for seed in seeds:
        g = torch.Generator(device).manual_seed(seed)
        x_T.append(torch.randn(IMAGE_SHAPE, generator=g, device=device))
        if n:
            noise.append(torch.randn((n, *IMAGE_SHAPE), generator=g, device=device))
    return torch.stack(x_T), (torch.stack(noise, dim=1) if n else None)


def denoise_fn(
    eps_fn: EpsFn, schedule: NoiseSchedule, settings: SampleSettings, callback: Callback | None = None
):
    """(x_T, cond, noise) -> x_0 for one chunk: the sampler with guidance bound in."""
    sampler = SAMPLERS[settings.sampler]
    model = guided(eps_fn, settings.guidance)

    def run(x_T: torch.Tensor, cond: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        return sampler(
            model, schedule, x_T, cond, steps=settings.steps, eta=settings.eta, noise=noise, callback=callback
        )

    return run


def generate(
    eps_fn: EpsFn,
    schedule: NoiseSchedule,
    cond: torch.Tensor,  # (N, 24) multi-hot
    seeds: list[int],  # N per-image seeds
    settings: SampleSettings,
    device: torch.device | str = "cpu",
    capture: bool = False,  # CUDA and a capturable backend only: replay each chunk from one captured graph
    progress: Callable[[int, int], None] | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Generate N images: (N, 3, 64, 64) float in [-1, 1], on the CPU."""
    device = torch.device(device)
    if len(seeds) != cond.shape[0]:
        raise ValueError("one seed per condition")
    run = denoise_fn(eps_fn, schedule, settings, callback)
    if capture and device.type == "cuda" and getattr(eps_fn, "capturable", True):
        from fastddpm.capture import CapturedRun

        run = CapturedRun(run)
    out = []
    b = settings.batch_size
    for start in range(0, len(seeds), b):
        chunk_seeds = seeds[start : start + b]
        chunk_cond = cond[start : start + b]
        pad = b - len(chunk_seeds)
        # Pad the last chunk to the fixed shape by repeating its last row (dropped below).
        chunk_seeds = chunk_seeds + chunk_seeds[-1:] * pad
        chunk_cond = torch.cat((chunk_cond, chunk_cond[-1:].expand(pad, -1))) if pad else chunk_cond
        x_T, noise = image_noise(chunk_seeds, settings, device)
        images = run(x_T, chunk_cond.to(device, torch.float32), noise)
        out.append(images[: b - pad].float().clamp(-1, 1).cpu())
        if progress:
            progress(min(start + b, len(seeds)), len(seeds))
    return torch.cat(out)
