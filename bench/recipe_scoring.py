"""How the recipe ablation scores a model, fixed in bench/results/recipe/PLAN.md before any run: validation label
sets only (`synth.test_splits` of seeds 1000-1002, each a val / new_val pair drawn like test.json /
new_test.json, never a test split), the shipped evaluator, DPM-Solver++(2M) and DDIM at 10 steps, guidance 2.5,
sampling seeds 0, 1, 2. A curve point (accuracy during training) is the cheap corner of that grid: draw 1000,
both splits, DPM-Solver++-10, seed 0; the final model's curve point is read from its full grid."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from fastddpm.export import open_backend
from fastddpm.configs import SampleSettings
from fastddpm.data import synth
from fastddpm.evaluator.network import Evaluator
from fastddpm.model import load_card
from fastddpm.schedule import NoiseSchedule
from fastddpm.evaluator.score import mean_spread, score_splits

GUIDANCE = 2.5
STEPS = 10
SAMPLERS = ("dpmpp", "ddim")
SEEDS = (0, 1, 2)
VALIDATION_SEEDS = (1000, 1001, 1002)
SPLITS = ("val", "new_val")
CURVE_DRAW, CURVE_SAMPLER, CURVE_SEED = 1000, "dpmpp", 0


def cell_name(draw: int, split: str, sampler: str) -> str:
    return f"{draw}/{split}/{sampler}-{STEPS}"


class Scorer:
    """Samples a model folder's label sets and scores them; the evaluator and label sets are loaded once."""

    def __init__(self, evaluator: Path | None, device) -> None:
        self.device = device
        self.evaluator = Evaluator(evaluator, device)
        self.draws = {
            seed: dict(zip(SPLITS, synth.test_splits(seed), strict=True)) for seed in VALIDATION_SEEDS
        }

    def cells(self, model_dir: Path, draws, samplers, seeds) -> dict[str, list[float]]:
        """{cell name: [accuracy per sampling seed]} over the given draws x splits x samplers."""
        backend = open_backend("torch", model_dir, self.device)
        schedule = NoiseSchedule.from_config(load_card(model_dir).diffusion)
        cells = {}
        for draw in draws:
            for sampler in samplers:
                settings = SampleSettings(sampler, STEPS, guidance=GUIDANCE)
                scores = score_splits(
                    backend, schedule, self.draws[draw], settings, list(seeds), self.evaluator, self.device
                )
                cells.update({cell_name(draw, split, sampler): v for split, v in scores.items()})
        return cells

    def full(self, model_dir: Path) -> dict:
        start = time.perf_counter()
        cells = self.cells(model_dir, VALIDATION_SEEDS, SAMPLERS, SEEDS)
        return {"cells": cells, "seconds": round(time.perf_counter() - start, 1)}

    def curve_point(self, model_dir: Path) -> float:
        cells = self.cells(model_dir, [CURVE_DRAW], [CURVE_SAMPLER], [CURVE_SEED])
        return curve_value(cells, seed_index=0)


def curve_value(cells: dict[str, list[float]], seed_index: int | None = None) -> float:
    """The curve metric: mean over both splits of draw 1000 at DPM-Solver++-10, sampling seed 0."""
    index = SEEDS.index(CURVE_SEED) if seed_index is None else seed_index
    return statistics.fmean(cells[cell_name(CURVE_DRAW, split, CURVE_SAMPLER)][index] for split in SPLITS)


def per_seed_means(cells: dict[str, list[float]], sampler: str | None = None) -> list[float]:
    """For each sampling seed, the mean over every cell (of one sampler, if given): the values a spread is of."""
    chosen = [v for name, v in cells.items() if sampler is None or name.endswith(f"/{sampler}-{STEPS}")]
    return [statistics.fmean(values[i] for values in chosen) for i in range(len(SEEDS))]


def summary(cells: dict[str, list[float]]) -> dict:
    """{"all": (mean, std over seeds), sampler: (mean, std), ...}: the plan's numbers."""
    out = {"all": mean_spread(per_seed_means(cells))}
    out.update({sampler: mean_spread(per_seed_means(cells, sampler)) for sampler in SAMPLERS})
    return out
