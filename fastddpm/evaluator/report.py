"""`fastddpm evaluator report`: how good is a judge? Its course-formula accuracy on held-out renders (folders of
seeds it never saw), per object count, on the images as the course squashes them (320x240 -> 64x64) and blurred
through 32x32; and what it misses: which classes, confused with what, and how visible the missed objects were
(their pixels at 320x240, from the renderer's id buffer)."""

from __future__ import annotations

import json
import re
import statistics
from collections import Counter
from pathlib import Path

import torch

from fastddpm.conditions import CLASSES, read_train_labels, split_class
from fastddpm.data.reader import load_dataset, to_model_range
from fastddpm.evaluator.network import Evaluator, topk_hits
from fastddpm.evaluator.train import blur_through_32
from fastddpm.runtime import resolve_device

SCENE_NAME = re.compile(r"CLEVR_train_(\d{6})_(\d+)\.png$")


def accuracy_by_count(scores: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Micro top-k accuracy over all images and per object count."""
    counts = targets.sum(1).long()
    result = {}
    for n in [0, *sorted(set(counts.tolist()))]:
        rows = counts == n if n else torch.ones_like(counts, dtype=torch.bool)
        hits, total = topk_hits(scores[rows], targets[rows])
        result["all" if n == 0 else f"{n}_objects"] = hits / total
    return result


def misses(scores: torch.Tensor, names: list[str], labels: dict[str, list[str]]) -> list[dict]:
    """Every true object outside its image's top k: the image, the class, its insertion index, and the classes that
    took the top-k places instead."""
    out = []
    for row, name in zip(scores, names, strict=True):
        truth = labels[name]
        top = {CLASSES[i] for i in row.topk(len(truth)).indices.tolist()}
        intruders = sorted(top - set(truth))
        for index, cls in enumerate(truth):
            if cls not in top:
                out.append({"image": name, "class": cls, "index": index, "instead": intruders})
    return out


def error_kind(true: str, instead: list[str]) -> str:
    """'color' (an intruder of the same shape), 'shape' (same color), or 'both'."""
    shape, color = split_class(CLASSES.index(true))
    parts = [split_class(CLASSES.index(c)) for c in instead]
    if any(s == shape for s, _ in parts):
        return "color"
    if any(c == color for _, c in parts):
        return "shape"
    return "both"


def visible_pixels(folder: Path, image: str) -> list[int]:
    """Pixels of each object of a rendered image left visible at 320x240 (its scene re-drawn from the seed in
    render.json: placement is deterministic)."""
    from fastddpm.data import render, synth

    seed = json.loads((folder / "render.json").read_text())["seed"]
    labels = read_train_labels(folder / "train.json")
    scene_id, index = (int(v) for v in SCENE_NAME.search(image).groups())
    prefix = f"CLEVR_train_{scene_id:06d}_"
    last = max((n for n in labels if n.startswith(prefix)), key=lambda n: int(SCENE_NAME.search(n)[2]))
    scene = synth.draw_scene(seed, scene_id, labels[last])  # the whole scene, in insertion order
    batch = synth.scene_batch([scene.objects[: index + 1]], [scene.views[index]])
    return render.visible_pixels(batch)[0].tolist()


def visibility(folder: Path, missed: list[dict], names: list[str], reference_images: int = 60) -> dict:
    """Visible pixels of the missed objects (added to each miss) beside those of every object in the first
    `reference_images` 3-object images: are the misses the small and hidden ones?"""
    for miss in missed:
        miss["visible_pixels"] = visible_pixels(folder, miss["image"])[miss["index"]]
    reference = [
        v
        for name in [n for n in names if n.endswith("_2.png")][:reference_images]
        for v in visible_pixels(folder, name)
    ]
    if not missed or not reference:
        return {}
    return {
        "missed_median": statistics.median(m["visible_pixels"] for m in missed),
        "all_median": statistics.median(reference),
        "missed_below_600": sum(m["visible_pixels"] < 600 for m in missed) / len(missed),
        "all_below_600": sum(v < 600 for v in reference) / len(reference),
    }


def folder_report(evaluator: Evaluator, folder: Path, geometry: bool = True) -> dict:
    """Accuracy (plain and blurred, per object count) and the misses of one held-out render."""
    data = load_dataset(folder)
    labels = read_train_labels(folder / "train.json")
    images = to_model_range(data.images)
    plain = evaluator.scores(images)
    blurred = evaluator.scores(torch.cat([blur_through_32(c) for c in images.split(256)]))
    missed = misses(plain, data.names, labels)
    geometry = geometry and (folder / "render.json").is_file()
    classes = Counter(m["class"] for m in missed)
    return {
        "folder": str(folder),
        "images": len(data.names),
        "objects": int(data.labels.sum()),
        "accuracy": accuracy_by_count(plain, data.labels),
        "accuracy_blurred_32": accuracy_by_count(blurred, data.labels),
        "missed_objects": len(missed),
        "missed_by_class": dict(classes.most_common()),
        "missed_by_color": dict(Counter(m["class"].split()[0] for m in missed).most_common()),
        "missed_by_kind": dict(Counter(error_kind(m["class"], m["instead"]) for m in missed).most_common()),
        "confusions": Counter(f"{m['class']} -> {', '.join(m['instead'])}" for m in missed).most_common(10),
        "visible_pixels": visibility(folder, missed, data.names) if geometry else {},
        "missed": missed,
    }


def heldout_report(evaluator_path: str | Path | None, folders: list[Path], device: str = "auto") -> dict:
    evaluator = Evaluator(evaluator_path, resolve_device(device))
    return {"evaluator": str(evaluator.path), "folders": [folder_report(evaluator, Path(f)) for f in folders]}
