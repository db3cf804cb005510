"""`fastddpm sample`'s job: images for label lists, written as 0.png, 1.png, ... (file order), an 8-per-row grid,
optionally a denoising strip from noise to image, and sample.json listing what was written.

A folder is owned by the run that wrote its sample.json: a new run into it first removes exactly the files that
record lists (and says so); a folder holding anything else is refused before any work, so a folder never mixes
the images of two runs.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from fastddpm import atomic
from fastddpm.export import open_backend
from fastddpm.conditions import LabelList, multi_hot
from fastddpm.data.reader import to_uint8
from fastddpm.defaults import ICLEVR_MAX_OBJECTS
from fastddpm.errors import UsageError
from fastddpm.configs import SampleSettings
from fastddpm.sampling.batch import generate, image_noise, image_seeds
from fastddpm.model import load_card
from fastddpm.runtime import resolve_device, resolve_dtype
from fastddpm.schedule import NoiseSchedule

TRAJECTORY_LABELS = ["red sphere", "cyan cylinder", "cyan cube"]
TRAJECTORY_FRAMES = 10
RECORD_NAME = "sample.json"


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
    seeds = image_seeds(seed, 1)
    generate(
        backend,
        schedule,
        multi_hot([labels]),
        seeds,
        single,
        device,
        callback=lambda i, x: steps.append(x[0].float().clamp(-1, 1).cpu()),
    )
    x_T = image_noise(seeds, single, device)[0][0].cpu().clamp(-1, 1)
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


def objects_warning(job: SampleJob) -> str | None:
    """A note when a condition names more objects than the model's training scenes held (drawn anyway: the
    model may still place them, but nothing trained it to)."""
    render = load_card(job.model_dir).info.get("render") or {}
    trained = int(render.get("max_objects", ICLEVR_MAX_OBJECTS))
    most = max(len(labels) for labels in [*job.labels, job.trajectory_labels or []])
    if most <= trained:
        return None
    return f"a condition names {most} objects; {job.model_dir} was trained on scenes of 1 to {trained}"


def claim_folder(out: Path) -> list[str]:
    """Check `out` before any work: a new folder, an empty one, or one an earlier `fastddpm sample` owns.
    Returns the names of that earlier run's files (to remove before writing)."""
    atomic.check_output_folder(out)
    present = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if not present:
        return []
    record = out / RECORD_NAME
    try:
        owned = json.loads(record.read_text())["files"] if record.is_file() else None
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
        owned = None
    foreign = [name for name in present if owned is None or name not in {*owned, RECORD_NAME}]
    if foreign:
        raise UsageError(
            f"--out {str(out)!r} holds files that an earlier `fastddpm sample` did not write (e.g. "
            f"{', '.join(foreign[:3])}); choose a new or empty folder"
        )
    return [name for name in owned if (out / name).exists()]


def run_sample(job: SampleJob, progress=None) -> dict:
    """Generate, then replace the folder's previous samples (if any) with the PNGs, grid, optional strip and
    sample.json; returns the record (with "replaced": how many earlier files were removed)."""
    previous = claim_folder(job.out)
    device = resolve_device(job.device)
    dtype = resolve_dtype(job.dtype, device)
    backend = open_backend(job.backend, job.model_dir, device, dtype, job.export_dir)
    schedule = NoiseSchedule.from_config(load_card(job.model_dir).diffusion)
    images = generate(
        backend,
        schedule,
        multi_hot(job.labels),
        image_seeds(job.seed, len(job.labels)),
        job.settings,
        device,
        capture=backend.capturable,
        progress=progress,
    )
    strip = (
        trajectory(backend, schedule, job.trajectory_labels, job.settings, job.seed, device)
        if job.trajectory_labels
        else None
    )
    for name in previous:
        (job.out / name).unlink()
    job.out.mkdir(parents=True, exist_ok=True)
    files = []
    for i, image in enumerate(to_uint8(images).permute(0, 2, 3, 1).numpy()):
        atomic.save_png(job.out / f"{i}.png", image)
        files.append(f"{i}.png")
    save_grid(job.out / "grid.png", images)
    files.append("grid.png")
    if strip is not None:
        save_grid(job.out / "trajectory.png", strip, nrow=len(strip))
        files.append("trajectory.png")
    record = {
        "labels": job.labels,
        "settings": dataclasses.asdict(job.settings),
        "seed": job.seed,
        "backend": job.backend,
        "device": str(device),
        "dtype": str(dtype),
        "model": str(job.model_dir),
        "files": files,
    }
    atomic.write_json(job.out / RECORD_NAME, record)
    return {**record, "replaced": len(previous)}
