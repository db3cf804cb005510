"""The quick evaluation a training run logs: a few DDIM steps on the data folder's test splits, scored."""

from __future__ import annotations

import time

import torch

from fastddpm.data.reader import split_labels
from fastddpm.errors import UsageError
from fastddpm.evaluator.network import Evaluator
from fastddpm.configs import SampleSettings
from fastddpm.evaluator.score import score_splits
from fastddpm.runtime import autocast
from fastddpm.schedule import DiffusionConfig, NoiseSchedule


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
