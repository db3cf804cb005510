"""Sample a split's label lists and score them with the evaluator: the number every user reports, and the quick
evaluation a training run logs."""

from __future__ import annotations

import statistics
import time

import torch

from fastddpm.conditions import LabelList, multi_hot
from fastddpm.data.reader import split_labels
from fastddpm.errors import UsageError
from fastddpm.evaluator.network import Evaluator
from fastddpm.configs import SampleSettings
from fastddpm.sampling.batch import generate_split
from fastddpm.runtime import autocast
from fastddpm.sampling.samplers import EpsFn
from fastddpm.schedule import DiffusionConfig, NoiseSchedule


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


class QuickEval:
    """A training run's periodic check: `steps` DDIM steps on the data folder's test splits from the given
    (EMA) network, one seed, scored by the evaluator (loaded at the first call; skipped with a note when there is
    none or the data folder has no splits)."""

    def __init__(
        self,
        data: str,  # data folder holding test.json / new_test.json
        diffusion: DiffusionConfig,
        device: torch.device,
        steps: int,  # DDIM steps
        guidance: float,
        evaluator: str | None,  # None: the shipped stand-in
    ) -> None:
        self.splits = split_labels(data)
        self.diffusion, self.device, self.evaluator_path = diffusion, device, evaluator
        self.schedule = NoiseSchedule.from_config(diffusion).to(device)
        self.settings = SampleSettings("ddim", steps, guidance=guidance)
        self.evaluator: Evaluator | None = None

    def __call__(self, net: torch.nn.Module) -> dict:
        """{acc_<split>: accuracy, ..., eval_seconds} or {note: why nothing was scored, eval_seconds}."""
        from fastddpm.model import EpsilonModel

        start = time.perf_counter()
        if not self.splits:
            return {"note": "no test.json / new_test.json in the data folder", "eval_seconds": 0.0}
        if self.evaluator is None:
            try:
                self.evaluator = Evaluator(self.evaluator_path, self.device)
            except UsageError as err:
                return {"note": str(err), "eval_seconds": 0.0}
        eps = EpsilonModel(net, self.diffusion).to(self.device).eval()
        amp = torch.bfloat16 if self.device.type == "cuda" else None
        with torch.no_grad(), autocast(self.device, amp):
            scores = score_splits(
                eps, self.schedule, self.splits, self.settings, [0], self.evaluator, self.device
            )
        return {
            **{f"acc_{name}": values[0] for name, values in scores.items()},
            "eval_seconds": round(time.perf_counter() - start, 1),
        }
