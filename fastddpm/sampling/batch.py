"""Batch generation: any number of conditions, chunked into fixed batch shapes, per-image seeds, guidance, and
(on CUDA) the whole denoising run of each chunk replayed from one captured CUDA graph."""

from __future__ import annotations

from collections.abc import Callable

import torch

from fastddpm.conditions import LabelList, multi_hot
from fastddpm.configs import SampleSettings, check_interval, format_interval, parse_interval, parse_spacing
from fastddpm.errors import UsageError
from fastddpm.model import ModelCard
from fastddpm.sampling.samplers import Callback, EpsFn, guided, sampler_spec
from fastddpm.schedule import NoiseSchedule

IMAGE_SHAPE = (3, 64, 64)
SEED_STRIDE = 1_000_003  # image i of a run with seed s is drawn from seed s * SEED_STRIDE + i


def model_defaults(
    card: ModelCard, sampler: str | None, steps: int | None, guidance: float | None
) -> tuple[str, int, float]:
    """(sampler, steps, guidance) for a model, filling what the user left out. A distilled student (its card says
    so) samples DDIM at its own step count with guidance 1, and refuses any other scale (it has one folded in);
    other models take the sampler and guidance their card names (card.sampling; DDIM if it names none) and the
    card's step count for the card's sampler, the sampler's default step count for any other."""
    student = card.info.student
    if student:
        if guidance not in (None, 1.0):
            raise UsageError(
                f"--guidance {guidance}: this student has guidance {student.guidance_folded} folded in; "
                "sample it with --guidance 1 (the default for students)"
            )
        sampler = sampler or student.sampler
        own = student.steps if sampler == student.sampler else sampler_spec(sampler).default_steps
        return sampler, own if steps is None else steps, 1.0
    own = card.sampling
    sampler = sampler or own.sampler or SampleSettings.sampler
    if steps is None:
        steps = own.steps if own.steps and sampler == own.sampler else sampler_spec(sampler).default_steps
    return sampler, steps, own.guidance if guidance is None else guidance


def model_interval(card: ModelCard, interval: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """The guidance interval a run uses: None takes the one the card names (card.sampling; None there is every
    step), `all` is every step, otherwise timesteps 'LO-HI' or (LO, HI). It is a setting of its own, so an explicit
    --guidance keeps the card's interval."""
    if interval is None:
        found = card.sampling.guidance_interval
        return None if found is None else (found[0], found[1])
    if isinstance(interval, str):
        return parse_interval(interval)
    check_interval(interval)
    return interval[0], interval[1]


def model_spacing(card: ModelCard, spacing: str | None) -> str | None:
    """The timestep grid a run uses: None takes the one the card names (card.sampling; None there is each
    sampler's own), `own` is each sampler's own, otherwise a name in choices.Spacing. A distilled student takes
    only its sampler's own grid, the one it was distilled on."""
    if spacing is None:
        return card.sampling.spacing
    spacing = parse_spacing(spacing)
    if spacing is not None and card.info.student:
        raise UsageError(
            f"--spacing {spacing}: a distilled student samples on the grid it was distilled on (own)"
        )
    return spacing


def card_settings(
    card: ModelCard,
    sampler: str | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    eta: float = SampleSettings.eta,
    batch_size: int = SampleSettings.batch_size,
    guidance_interval: str | tuple[int, int] | None = None,
    spacing: str | None = None,
) -> SampleSettings:
    """The checked settings of a run of `card`'s model: what is None comes from the card and the sampler's
    defaults (model_defaults, model_interval, model_spacing)."""
    chosen, steps, guidance = model_defaults(card, sampler, steps, guidance)
    interval = model_interval(card, guidance_interval)
    settings = SampleSettings(
        chosen, steps, eta, guidance, batch_size, interval, model_spacing(card, spacing)
    )
    check_settings(settings, NoiseSchedule.from_config(card.diffusion))
    return settings


def image_seeds(seed: int, count: int) -> list[int]:
    return [seed * SEED_STRIDE + i for i in range(count)]


def image_noise(
    seeds: list[int], settings: SampleSettings, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """x_T (B, 3, 64, 64) and per-step noise (n, B, 3, 64, 64) or None, each image from its own generator, so an
    image never changes with the batch it is drawn in (same device, same seed -> same image)."""
    n = sampler_spec(settings.sampler).noise_steps(settings.steps, settings.eta)
    x_T, noise = [], []
    for seed in seeds:
        g = torch.Generator(device).manual_seed(seed)
        x_T.append(torch.randn(IMAGE_SHAPE, generator=g, device=device))
        if n:
            noise.append(torch.randn((n, *IMAGE_SHAPE), generator=g, device=device))
    return torch.stack(x_T), (torch.stack(noise, dim=1) if n else None)


def check_settings(settings: SampleSettings, schedule: NoiseSchedule | None = None) -> None:
    """What the registry knows: whether the sampler takes eta, and (given the schedule) its step range on its grid
    and the guidance interval's end."""
    spec = sampler_spec(settings.sampler)
    spec.check_eta(settings.eta)
    if schedule is not None:
        num_timesteps = schedule.num_timesteps
        spec.check_steps(settings.steps, schedule, settings.spacing)
        interval = settings.guidance_interval
        if interval is not None and interval[1] >= num_timesteps:
            raise UsageError(
                f"--guidance-interval {format_interval(interval)} is out of range: timesteps 0 to {num_timesteps - 1}"
            )


def denoise_fn(
    eps_fn: EpsFn, schedule: NoiseSchedule, settings: SampleSettings, callback: Callback | None = None
):
    """(x_T, cond, noise) -> x_0 for one chunk: the sampler with guidance bound in."""
    check_settings(settings, schedule)
    spec = sampler_spec(settings.sampler)
    model = guided(eps_fn, settings.guidance, settings.guidance_interval)

    def run(x_T: torch.Tensor, cond: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        return spec(
            model,
            schedule,
            x_T,
            cond,
            steps=settings.steps,
            eta=settings.eta,
            noise=noise,
            callback=callback,
            spacing=settings.spacing,
        )

    return run


def generate(
    eps_fn: EpsFn,
    schedule: NoiseSchedule,
    cond: torch.Tensor,  # (N, 24) multi-hot
    seeds: list[int],  # N per-image seeds
    settings: SampleSettings,
    device: torch.device | str = "cpu",
    capture: bool = False,  # CUDA only: replay each chunk from one captured graph (a capturable eps_fn)
    progress: Callable[[int, int], None] | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Generate N images: (N, 3, 64, 64) float in [-1, 1], on the CPU."""
    device = torch.device(device)
    if len(seeds) != cond.shape[0]:
        raise ValueError("one seed per condition")
    capture = capture and device.type == "cuda"
    if capture and callback is not None:
        raise ValueError("a captured run replays a graph and never calls back: pass capture=False")
    run = denoise_fn(eps_fn, schedule, settings, callback)
    if capture:
        from fastddpm.sampling.capture import CapturedRun

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


def generate_split(
    eps_fn: EpsFn,
    schedule: NoiseSchedule,
    labels: list[LabelList],
    settings: SampleSettings,
    seed: int,
    device: torch.device | str,
    capture: bool = False,
) -> torch.Tensor:
    """One image per label list, image i drawn from seed `seed`'s i-th per-image seed: (N, 3, 64, 64) in [-1, 1]."""
    return generate(
        eps_fn, schedule, multi_hot(labels), image_seeds(seed, len(labels)), settings, device, capture
    )
