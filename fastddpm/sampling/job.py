"""`fastddpm sample`'s job: images for label lists, written as 0.png, 1.png, ... (file order), an 8-per-row grid,
optionally a denoising strip from noise to image, and sample.json listing what was written.

A folder is owned by the run that wrote its sample.json; a folder holding anything else (or a record naming a
file outside the folder) is refused before any work. A run holds a lock on its folder, writes into a temporary
folder beside it and swaps that in at the end, so a folder never mixes the images of two runs and an
interrupted run leaves the old one intact.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from fastddpm import atomic, folders
from fastddpm.conditions import LabelList, multi_hot
from fastddpm.data.reader import to_uint8
from fastddpm.defaults import ICLEVR_MAX_OBJECTS
from fastddpm.errors import UsageError
from fastddpm.configs import SampleSettings
from fastddpm.sampling.batch import generate, image_noise, image_seeds
from fastddpm.model import load_card
from fastddpm.runtime import resolve_dtype
from fastddpm.schedule import NoiseSchedule

if TYPE_CHECKING:
    from fastddpm.pipeline import Pipeline

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


def objects_warning(model_dir: Path, conditions: list[LabelList]) -> str | None:
    """A note when a condition names more objects than the model's training scenes held (drawn anyway: the
    model may still place them, but nothing trained it to); `sample` and `bench` print it."""
    render = load_card(model_dir).info.render
    trained = render.max_objects if render and render.max_objects else ICLEVR_MAX_OBJECTS
    most = max(len(labels) for labels in conditions)
    if most <= trained:
        return None
    return f"a condition names {most} objects; {model_dir} was trained on scenes of 1 to {trained}"


def claim_folder(out: Path) -> list[str]:
    """Check `out` before any work: a new folder, an empty one, or one an earlier `fastddpm sample` owns.
    Returns the names of that earlier run's files (replaced by the new run)."""
    atomic.check_output_folder(out)
    present = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if not present:
        return []
    record = out / RECORD_NAME
    try:
        owned = json.loads(record.read_text())["files"] if record.is_file() else None
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError, RecursionError):
        owned = None
    if owned is not None and not isinstance(owned, list):
        raise UsageError(f'{record} has "files" of type {type(owned).__name__}; a list of names is expected')
    for name in owned or []:
        folders.inside(out, name, record)
    foreign = [name for name in present if owned is None or name not in {*owned, RECORD_NAME}]
    if foreign:
        raise UsageError(
            f"--out {str(out)!r} holds files that an earlier `fastddpm sample` did not write (e.g. "
            f"{', '.join(folders.quote(n) for n in foreign[:3])}); choose a new or empty folder"
        )
    return [name for name in owned if (out / name).exists()]


def run_sample(job: SampleJob, pipe: Pipeline, progress=None) -> dict:
    """Generate with `pipe` (built by the caller for job.model_dir and job.backend) into a staged folder beside
    job.out, under the folder's lock, then swap it in for the earlier run's samples (if any); returns the record
    (with "replaced": how many earlier files were replaced)."""
    with folders.folder_lock(job.out):
        previous = claim_folder(job.out)
        with folders.staged_folder(job.out) as stage:
            record = _generate_into(job, pipe, stage, progress)
    return {**record, "replaced": len(previous)}


def _generate_into(job: SampleJob, pipe: Pipeline, stage: Path, progress) -> dict:
    """Generate the images and write them, the grid, the optional strip and sample.json into `stage`."""
    device = pipe.device
    dtype = resolve_dtype(job.dtype, device)
    images = pipe.generate(job.labels, job.settings, job.seed, progress=progress)
    strip = (
        trajectory(pipe.backend, pipe.schedule, job.trajectory_labels, job.settings, job.seed, device)
        if job.trajectory_labels
        else None
    )
    files = []
    for i, image in enumerate(to_uint8(images).permute(0, 2, 3, 1).numpy()):
        atomic.save_png(stage / f"{i}.png", image)
        files.append(f"{i}.png")
    save_grid(stage / "grid.png", images)
    files.append("grid.png")
    if strip is not None:
        save_grid(stage / "trajectory.png", strip, nrow=len(strip))
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
    atomic.write_json(stage / RECORD_NAME, record)
    return record
