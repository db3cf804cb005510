"""`fastddpm data render`: write a look-alike i-CLEVR data set in the course's exact layout.

DIR/iclevr/CLEVR_train_NNNNNN_S.png (320x240 RGB; image S of a scene holds its first S + 1 objects),
DIR/train.json, DIR/objects.json, DIR/test.json, DIR/new_test.json and DIR/preview.png (4x8 grid of the first images).
Resumable: images already on disk are skipped (each was written atomically, so none is half-written), and an
image's pixels depend only on the seed, its scene, its index and the device, never on which images shared its
render batch, so a render stopped and resumed ends with the same files as one run straight through.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from fastddpm import atomic
from fastddpm.conditions import CLASS_INDEX, ConditionError, LabelList, read_train_labels
from fastddpm.data import render, synth
from fastddpm.defaults import ICLEVR_MAX_OBJECTS, ICLEVR_SCENES, MAX_SCENES
from fastddpm.errors import UsageError
from fastddpm.runtime import resolve_device

IMAGE_NAME = re.compile(r"^CLEVR_train_(\d{6})_(\d+)\.png$")
# 1: exact sRGB curve; 2: 16k-entry sRGB table (bytes differ by at most one level); 3: shadow grain set by
# each image's scene and index instead of its place in the render batch
RENDERER_VERSION = 3
RENDER_BATCH = 16  # images per renderer call: large enough to amortize Python, small enough for the CPU cache


@dataclass(frozen=True)
class SceneJob:
    scene_id: int
    labels: LabelList  # the full scene, in insertion order

    def image_name(self, index: int) -> str:
        return f"CLEVR_train_{self.scene_id:06d}_{index}.png"


@dataclass(frozen=True)
class RenderConfig:
    """Saved as DIR/render.json: what made the data set. A resumed render must match it (any --scenes)."""

    seed: int
    max_objects: int
    labels_sha256: str | None  # of the --labels file, None when labels were drawn
    device: str
    renderer: int = RENDERER_VERSION  # bumped whenever pixels change for the same seed


@dataclass(frozen=True)
class RenderReport:
    images: int  # images in the data set
    rendered: int  # images rendered by this call (the rest were already on disk)
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.rendered / self.seconds if self.seconds > 0 else 0.0


def drawn_jobs(scenes: int, seed: int, max_objects: int) -> list[SceneJob]:
    return [SceneJob(i, synth.scene_labels(seed, i, max_objects)) for i in range(scenes)]


def jobs_from_train_file(path: str | Path, max_objects: int) -> list[SceneJob]:
    """Group a train.json's images into incremental scenes: CLEVR_train_<scene>_<S>.png holds S + 1 objects,
    and the label lists of one scene are prefixes of each other."""
    labels = read_train_labels(path)
    scenes: dict[int, dict[int, LabelList]] = {}
    for name, objects in labels.items():
        match = IMAGE_NAME.match(name)
        if not match:
            raise ConditionError(f"{name!r} in {path}: image names must look like CLEVR_train_000123_0.png")
        scene, index = int(match[1]), int(match[2])
        if len(objects) != index + 1:
            raise ConditionError(
                f"{name!r} in {path}: image _{index} of a scene must hold {index + 1} objects"
            )
        if len(objects) > max_objects:
            raise ConditionError(
                f"{name!r} in {path} has {len(objects)} objects; --max-objects is {max_objects}"
            )
        scenes.setdefault(scene, {})[index] = objects
    jobs = []
    for scene, images in sorted(scenes.items()):
        full = images[max(images)]
        for index, objects in images.items():
            if objects != full[: index + 1]:
                raise ConditionError(
                    f"scene {scene:06d} in {path}: image _{index} {objects} is not a prefix of the scene {full}"
                )
        jobs.append(SceneJob(scene, full))
    return jobs


def _validate(out: Path, scenes: int, max_objects: int) -> None:
    if not 1 <= scenes <= MAX_SCENES:
        raise UsageError(
            f"--scenes {scenes} is out of range: 1 to {MAX_SCENES:,} (image names hold six digits)"
        )
    if not 1 <= max_objects <= 5:
        raise UsageError(f"--max-objects {max_objects} is out of range: 1 to 5")
    atomic.check_output_folder(out)


def _check_resumable(out: Path, config: RenderConfig) -> None:
    """Refuse to mix images of another render (or a user's real data) into this one."""
    manifest = out / "render.json"
    if not manifest.is_file() and out.is_dir() and any(out.iterdir()):
        raise UsageError(
            f"{str(out)!r} already holds files that `fastddpm data render` did not write; choose another --out"
        )
    if manifest.is_file():
        previous = json.loads(manifest.read_text())
        if previous != dataclasses.asdict(config):
            raise UsageError(
                f"{str(out)!r} was rendered with {previous}; this call asks for {dataclasses.asdict(config)}. "
                "Resume with the same settings or choose another --out."
            )


def render_dataset(
    out: str | Path,
    scenes: int = ICLEVR_SCENES,
    seed: int = 0,
    device: str = "cpu",
    max_objects: int = ICLEVR_MAX_OBJECTS,
    labels_file: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,  # (images done, images total)
) -> RenderReport:
    """Render (or finish rendering) a data set into `out`. Same seed -> same labels and pixels on the same device."""
    out = Path(out)
    _validate(out, scenes, max_objects)
    device = resolve_device(device).type  # cpu | cuda: part of what makes the pixels (render.json)
    jobs = (
        jobs_from_train_file(labels_file, max_objects)
        if labels_file
        else drawn_jobs(scenes, seed, max_objects)
    )
    labels_sha = hashlib.sha256(Path(labels_file).read_bytes()).hexdigest() if labels_file else None
    config = RenderConfig(seed, max_objects, labels_sha, device)
    with atomic.owned_folder(out):
        _check_resumable(out, config)
        start = time.perf_counter()
        (out / "iclevr").mkdir(parents=True, exist_ok=True)
        atomic.write_json(out / "render.json", dataclasses.asdict(config))
        test, new_test = synth.test_splits(seed)
        atomic.write_json(out / "objects.json", CLASS_INDEX)
        atomic.write_json(out / "test.json", test)
        atomic.write_json(out / "new_test.json", new_test)
        rendered = _render_missing(jobs, seed, device, out / "iclevr", progress)
        train = {job.image_name(i): job.labels[: i + 1] for job in jobs for i in range(len(job.labels))}
        atomic.write_json(out / "train.json", train)
        write_preview(out, list(train)[:32])
    return RenderReport(images=len(train), rendered=rendered, seconds=time.perf_counter() - start)


def _render_missing(
    jobs: list[SceneJob], seed: int, device: str, image_dir: Path, progress: Callable[[int, int], None] | None
) -> int:
    """Render the jobs' images that are not in `image_dir` yet, RENDER_BATCH at a time; returns how many."""
    total = sum(len(job.labels) for job in jobs)
    existing = {p.name for p in image_dir.glob("CLEVR_train_*.png")}
    done, rendered = 0, 0
    pending_objects, pending_views, pending_grains, pending_paths = [], [], [], []
    with ThreadPoolExecutor(max_workers=2) as writers:

        def flush() -> None:
            nonlocal rendered
            if not pending_paths:
                return
            batch = synth.scene_batch(pending_objects, pending_views, pending_grains)
            images = render.render(batch.to(device)).cpu().numpy()
            list(writers.map(atomic.save_png, pending_paths, images))
            rendered += len(pending_paths)
            for pending in (pending_objects, pending_views, pending_grains, pending_paths):
                pending.clear()

        for job in jobs:
            names = [job.image_name(i) for i in range(len(job.labels))]
            missing = [i for i, name in enumerate(names) if name not in existing]
            if missing:
                scene = synth.draw_scene(seed, job.scene_id, job.labels, device)
                for i in missing:
                    pending_objects.append(scene.objects[: i + 1])
                    pending_views.append(scene.views[i])
                    pending_grains.append(synth.image_grain(job.scene_id, i))
                    pending_paths.append(image_dir / names[i])
                if len(pending_paths) >= RENDER_BATCH:
                    flush()
            done += len(names)
            if progress:
                progress(done - len(pending_paths), total)
        flush()
        if progress:
            progress(total, total)
    return rendered


def write_preview(out: Path, names: list[str]) -> None:
    """A 4x8 grid of the given images, saved as out/preview.png."""
    import numpy as np
    import torchvision
    from PIL import Image

    images = [torch.from_numpy(np.array(Image.open(out / "iclevr" / n).convert("RGB"))) for n in names]
    grid = torchvision.utils.make_grid(torch.stack(images).permute(0, 3, 1, 2), nrow=8, padding=2)
    atomic.save_png(out / "preview.png", grid.permute(1, 2, 0).numpy())
