"""Sample a split's label lists and score them with the evaluator: the number every user reports."""

from __future__ import annotations

import statistics

import torch

from fastddpm.conditions import LabelList, multi_hot
from fastddpm.evaluator import Evaluator
from fastddpm.generate import SampleSettings, generate, image_seeds
from fastddpm.samplers import EpsFn
from fastddpm.schedule import NoiseSchedule


def sample_split(
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
                sample_split(eps_fn, schedule, labels, settings, s, device, capture), multi_hot(labels)
            )
            for s in seeds
        ]
        for name, labels in splits.items()
    }


def mean_spread(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)
