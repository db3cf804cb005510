"""Scoring with the evaluator: sampled splits (the number every user reports; bench and training use it), a folder
of PNGs against test.json-style label files (`fastddpm evaluator score`), and the mean and spread over seeds."""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
import torch

from fastddpm.conditions import LabelList, multi_hot, read_test_labels
from fastddpm.configs import SampleSettings
from fastddpm.data.reader import decode_image, to_model_range
from fastddpm.errors import UsageError
from fastddpm.evaluator.network import Evaluator
from fastddpm.runtime import resolve_device
from fastddpm.sampling.batch import generate_split
from fastddpm.sampling.samplers import EpsFn
from fastddpm.schedule import NoiseSchedule


def read_images(folder: Path, count: int) -> torch.Tensor:
    """folder/0.png .. folder/{count-1}.png -> (count, 3, 64, 64) in [-1, 1] (squashed like the training data)."""
    files = [folder / f"{i}.png" for i in range(count)]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise UsageError(
            f"{str(folder)!r} lacks {len(missing)} of the {count} images the label file needs, e.g. {missing[:5]}"
        )
    decoded = []
    for f in files:
        try:
            decoded.append(decode_image(f))
        except Exception as err:  # noqa: BLE001 - truncated, corrupt or not an image: name the file
            raise UsageError(f"{str(f)!r} is not a readable PNG ({type(err).__name__})") from None
    return to_model_range(torch.from_numpy(np.stack(decoded)))


def score_folder(
    images: Path, label_files: list[Path], evaluator_path: Path | None, device: str
) -> dict[str, float]:
    """{label file: accuracy}. With one label file the PNGs sit in `images`; with several, in images/<file stem>/."""
    if not images.is_dir():
        raise UsageError(f"--images {str(images)!r} is not a folder")
    splits = {str(f): read_test_labels(f) for f in label_files}
    evaluator = Evaluator(evaluator_path, resolve_device(device))
    out = {}
    for label_file, labels in splits.items():
        folder = images if len(label_files) == 1 else images / Path(label_file).stem
        out[label_file] = evaluator.accuracy(read_images(folder, len(labels)), multi_hot(labels))
    return out


def score_splits(
    eps_fn: EpsFn,
    schedule: NoiseSchedule,
    splits: dict[str, list[LabelList]],
    settings: SampleSettings,
    seeds: list[int],
    evaluator: Evaluator,
    device: torch.device | str,
    capture: bool = False,
) -> dict[str, list[float]]:
    """{split: [accuracy for each sampling seed]}; each split scored in one evaluator call, as the course does."""
    return {
        name: [
            evaluator.accuracy(
                generate_split(eps_fn, schedule, labels, settings, s, device, capture), multi_hot(labels)
            )
            for s in seeds
        ]
        for name, labels in splits.items()
    }


def mean_spread(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)
