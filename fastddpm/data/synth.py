"""Scene sampling for the look-alike i-CLEVR data set: labels, placement, camera and light jitter.

Every scene draws from its own numpy generator seeded by (seed, scene id, stream), so a scene's labels and
geometry never depend on which other scenes are drawn, in what order, or whether a run was resumed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from fastddpm.conditions import CLASSES, COLOR_RGB, COLORS, SHAPES, LabelList, class_index, split_class
from fastddpm.data import render
from fastddpm.data.srgb import srgb_to_linear

CAMERA = (7.48, -6.51, 5.34)
CAMERA_JITTER = 0.5
LIGHTS = ((11.7, -6.6, 25.8), (6.4, -2.9, 4.3), (-4.7, -4.0, 3.0), (-1.2, 2.6, 5.8))  # sun, key, fill, back
LIGHT_JITTER = 1.0
PLACEMENT_RANGE = 3.0
MIN_GAP = 0.25  # surface gap between any two objects
MIN_VISIBLE_PIXELS = 200  # at 320x240
PLACEMENT_TRIES = 64
FOOTPRINT = {
    render.CUBE: render.SIZE * math.sqrt(2.0),
    render.SPHERE: render.SIZE,
    render.CYLINDER: render.SIZE,
}
LABEL_STREAM, GEOMETRY_STREAM, SPLIT_STREAM = 0, 1, 2
GOLDEN_RATIO_CONJUGATE = (math.sqrt(5.0) - 1) / 2


def rng_for(seed: int, scene: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, scene, stream]))


def draw_labels(rng: np.random.Generator, n_objects: int) -> LabelList:
    """Shape uniform over 3, color uniform over 8, the color re-drawn while the pair is already in the scene."""
    pairs: list[tuple[int, int]] = []
    for _ in range(n_objects):
        shape, color = int(rng.integers(len(SHAPES))), int(rng.integers(len(COLORS)))
        while (shape, color) in pairs:
            color = int(rng.integers(len(COLORS)))
        pairs.append((shape, color))
    return [f"{COLORS[c]} {SHAPES[s]}" for s, c in pairs]


@dataclass
class Placed:
    shape: int
    color: int
    x: float
    y: float
    angle: float


@dataclass
class Scene:
    """Objects in insertion order; image i shows objects[: i + 1] through views[i] = (camera (3,), lights (4, 3))."""

    objects: list[Placed] = field(default_factory=list)
    views: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)


def image_grain(scene_id: int, index: int) -> float:
    """Phase of image `index` of scene `scene_id`'s shadow-sample rotation: a golden-ratio sequence over the
    images, so that neighbouring images differ and no image depends on the others rendered with it."""
    return ((scene_id * 8 + index) * GOLDEN_RATIO_CONJUGATE) % 1.0


def scene_batch(
    objects_per_image: list[list[Placed]],
    views: list[tuple[np.ndarray, np.ndarray]],
    grains: list[float] | None = None,
) -> render.SceneBatch:
    """Pack images (their object lists, views and shadow grain phases, 0 when not given) into the renderer's
    padded tensors."""
    k = max(1, max(len(objs) for objs in objects_per_image))
    b = len(objects_per_image)
    shape = torch.full((b, k), -1, dtype=torch.long)
    center = torch.zeros(b, k, 3)
    angle = torch.zeros(b, k)
    albedo = torch.zeros(b, k, 3)
    for i, objs in enumerate(objects_per_image):
        for j, o in enumerate(objs):
            shape[i, j] = o.shape
            center[i, j] = torch.tensor([o.x, o.y, render.SIZE])
            angle[i, j] = o.angle
            albedo[i, j] = srgb_to_linear(torch.tensor(COLOR_RGB[COLORS[o.color]]) / 255.0)
    camera = torch.tensor(np.stack([v[0] for v in views]), dtype=torch.float32)
    lights = torch.tensor(np.stack([v[1] for v in views]), dtype=torch.float32)
    grain = torch.tensor(grains if grains is not None else [0.0] * b, dtype=torch.float32)
    return render.SceneBatch(camera, lights, shape, center, angle, albedo, grain)


def _gap_ok(candidate: Placed, placed: list[Placed]) -> bool:
    for o in placed:
        if (
            math.hypot(candidate.x - o.x, candidate.y - o.y)
            < FOOTPRINT[candidate.shape] + FOOTPRINT[o.shape] + MIN_GAP
        ):
            return False
    return True


def _first_visible(
    placed: list[Placed], candidates: list[Placed], view, device: str, chunk: int = 2
) -> Placed | None:
    """The first candidate that leaves every object of the image visible (id buffer at quarter size)."""
    for start in range(0, len(candidates), chunk):
        group = candidates[start : start + chunk]
        batch = scene_batch([placed + [c] for c in group], [view] * len(group)).to(device)
        counts = render.visible_pixels(batch, render.WIDTH // 4, render.HEIGHT // 4)
        ok = (counts >= MIN_VISIBLE_PIXELS / 16).all(-1).nonzero().flatten()
        if ok.numel():
            return group[int(ok[0])]
    return None


def place_scene(labels: LabelList, rng: np.random.Generator, device: str = "cpu") -> Scene:
    """Place objects one at a time: the first at the centre, the others uniform in [-3, 3]^2 with a surface gap,
    each image's every object visible for >= MIN_VISIBLE_PIXELS (checked by rendering an id buffer at quarter size)."""
    scene = Scene()
    for label in labels:
        shape, color = split_class(class_index(label))
        camera = np.array(CAMERA) + rng.uniform(-CAMERA_JITTER, CAMERA_JITTER, 3)
        lights = np.array(LIGHTS) + rng.uniform(-LIGHT_JITTER, LIGHT_JITTER, (4, 3))
        view = (camera, lights)
        candidates = []
        for _ in range(PLACEMENT_TRIES):
            angle = float(rng.uniform(0, 2 * math.pi))
            if not scene.objects:
                candidates.append(Placed(shape, color, 0.0, 0.0, angle))
                break
            x, y = rng.uniform(-PLACEMENT_RANGE, PLACEMENT_RANGE, 2)
            candidate = Placed(shape, color, float(x), float(y), angle)
            if _gap_ok(candidate, scene.objects):
                candidates.append(candidate)
        if not candidates:
            raise RuntimeError(f"no room for {label!r} after {PLACEMENT_TRIES} tries")
        chosen = _first_visible(scene.objects, candidates, view, device)
        if chosen is None:
            raise RuntimeError(f"no visible placement for {label!r} after {PLACEMENT_TRIES} tries")
        scene.objects.append(chosen)
        scene.views.append(view)
    return scene


def draw_scene(seed: int, scene_id: int, labels: LabelList, device: str = "cpu") -> Scene:
    """Geometry for one scene, re-drawn from a new stream in the rare case that an object finds no room."""
    for attempt in range(16):
        try:
            return place_scene(labels, rng_for(seed, scene_id, GEOMETRY_STREAM + 10 * attempt), device)
        except RuntimeError:
            continue
    raise RuntimeError(f"scene {scene_id}: could not place {labels}")


def scene_labels(seed: int, scene_id: int, n_objects: int) -> LabelList:
    return draw_labels(rng_for(seed, scene_id, LABEL_STREAM), n_objects)


def _same_color_set(rng: np.random.Generator, n_objects: int) -> LabelList:
    color = COLORS[int(rng.integers(len(COLORS)))]
    first, second = rng.choice(len(SHAPES), 2, replace=False)
    labels = [f"{color} {SHAPES[first]}", f"{color} {SHAPES[second]}"]
    while len(labels) < n_objects:
        extra = CLASSES[int(rng.integers(len(CLASSES)))]
        if extra not in labels:
            labels.insert(int(rng.integers(len(labels) + 1)), extra)
    return labels


def _distinct_colors(labels: LabelList) -> bool:
    colors = [name.split()[0] for name in labels]
    return len(set(colors)) == len(colors)


def test_splits(seed: int) -> tuple[list[LabelList], list[LabelList]]:
    """The data set's own test.json and new_test.json, composed like the course's (see shared README):
    test: 6 one-, 12 two- and 14 three-object sets drawn like training scenes;
    new: 12 two- and 20 three-object sets, 28 of which pair objects of the same color."""
    rng = rng_for(seed, 0, SPLIT_STREAM)

    def unique(draw, count: int, keep=lambda labels: True) -> list[LabelList]:
        out: list[LabelList] = []
        while len(out) < count:
            labels = draw()
            if keep(labels) and sorted(labels) not in [sorted(o) for o in out]:
                out.append(labels)
        return out

    test = []
    for n, count in ((1, 6), (2, 12), (3, 14)):
        test += unique(lambda: draw_labels(rng, n), count)  # noqa: B023
    new = unique(lambda: _same_color_set(rng, 2), 9) + unique(lambda: _same_color_set(rng, 3), 19)
    new += unique(lambda: draw_labels(rng, 2), 3, _distinct_colors) + unique(
        lambda: draw_labels(rng, 3), 1, _distinct_colors
    )
    order = rng.permutation(len(new))
    return test, [new[i] for i in order]
