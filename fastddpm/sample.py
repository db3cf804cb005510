"""`fastddpm sample`: images for label lists, written as 0.png, 1.png, ... (file order), an 8-per-row grid, and
optionally a denoising strip from noise to image."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from fastddpm import atomic
from fastddpm.backends import make_backend
from fastddpm.conditions import LabelList, multi_hot
from fastddpm.data.reader import to_uint8
from fastddpm.errors import UsageError
from fastddpm.generate import SampleSettings, generate, image_seeds
from fastddpm.model import load_card
from fastddpm.schedule import NoiseSchedule

TRAJECTORY_LABELS = ["red sphere", "cyan cylinder", "cyan cube"]
TRAJECTORY_FRAMES = 10


def resolve_device(name: str) -> torch.device:
    if name not in ("auto", "cpu", "cuda"):
        raise UsageError(f"--device {name!r} is not one of auto, cpu, cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but no CUDA device is available")
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() or name == "cuda" else "cpu")


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    choices = {
        "auto": torch.bfloat16 if device.type == "cuda" else torch.float32,
        "fp32": torch.float32,
        "bf16": torch.bfloat16,
        "fp16": torch.float16,
    }
    if name not in choices:
        raise UsageError(f"--dtype {name!r} is not one of {', '.join(choices)}")
    return choices[name]


def save_grid(path: Path, images: torch.Tensor, nrow: int = 8) -> None:
    """(N, 3, H, W) in [-1, 1] -> one PNG grid (torchvision make_grid)."""
    import torchvision

    grid = torchvision.utils.make_grid(to_uint8(images), nrow=nrow, padding=2)
    atomic.save_png(path, grid.permute(1, 2, 0).numpy())


def trajectory(
    backend,
    schedule: NoiseSchedule,
    labels: LabelList,
    settings: SampleSettings,
    seed: int,
    device: torch.device,
) -> torch.Tensor:
    """Frames (F, 3, 64, 64) from x_T to the final image, evenly spaced over the sampler's steps (run with at least
    TRAJECTORY_FRAMES - 1 steps so the strip always has TRAJECTORY_FRAMES frames)."""
    steps: list[torch.Tensor] = []
    single = dataclasses.replace(settings, batch_size=1, steps=max(settings.steps, TRAJECTORY_FRAMES - 1))
    generate(
        backend,
        schedule,
        multi_hot([labels]),
        [image_seeds(seed, 1)[0]],
        single,
        device,
        callback=lambda i, x: steps.append(x[0].float().clamp(-1, 1).cpu()),
    )
    from fastddpm.generate import image_noise

    x_T = image_noise([image_seeds(seed, 1)[0]], single, device)[0][0].cpu().clamp(-1, 1)
    picks = torch.linspace(0, len(steps) - 1, min(TRAJECTORY_FRAMES - 1, len(steps))).round().long().unique()
    return torch.stack([x_T, *(steps[i] for i in picks)])


@dataclass(frozen=True)
class SampleJob:
    labels: list[LabelList]
    out: Path
    model_dir: Path
    settings: SampleSettings
    seed: int = 0
    backend: str = "torch"
    device: str = "auto"
    dtype: str = "auto"
    export_dir: Path = Path("export")
    trajectory_labels: LabelList | None = None  # None: no strip


def run_sample(job: SampleJob, progress=None) -> dict:
    """Generate, write the PNGs, grid, optional strip and sample.json; return the record."""
    device = resolve_device(job.device)
    dtype = resolve_dtype(job.dtype, device)
    backend = make_backend(job.backend, job.model_dir, device, dtype, job.export_dir)
    schedule = NoiseSchedule.from_config(load_card(job.model_dir).diffusion)
    images = generate(
        backend,
        schedule,
        multi_hot(job.labels),
        image_seeds(job.seed, len(job.labels)),
        job.settings,
        device,
        capture=device.type == "cuda",
        progress=progress,
    )
    job.out.mkdir(parents=True, exist_ok=True)
    pixels = to_uint8(images).permute(0, 2, 3, 1).numpy()
    for i, image in enumerate(pixels):
        atomic.save_png(job.out / f"{i}.png", image)
    save_grid(job.out / "grid.png", images)
    if job.trajectory_labels:
        frames = trajectory(backend, schedule, job.trajectory_labels, job.settings, job.seed, device)
        save_grid(job.out / "trajectory.png", frames, nrow=len(frames))
    record = {
        "labels": job.labels,
        "settings": dataclasses.asdict(job.settings),
        "seed": job.seed,
        "backend": job.backend,
        "device": str(device),
        "dtype": str(dtype),
        "model": str(job.model_dir),
    }
    atomic.write_text(job.out / "sample.json", json.dumps(record, indent=2) + "\n")
    return record
