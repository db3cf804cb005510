"""Settings of one `fastddpm evaluator train` run (torch-free, like fastddpm.configs, so `--help` stays instant)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from fastddpm.choices import Device
from fastddpm.errors import UsageError
from fastddpm.folders import quote


@dataclass(frozen=True)
class EvaluatorTrainConfig:
    """One `fastddpm evaluator train` run; saved in the run folder's evaluator.json."""

    data: tuple[str, ...]  # rendered folders (1-3 and 1-5 object scenes), used together
    validation: str | None = None  # a render of other seeds, scored after every epoch (never trained on)
    init: str | None = None  # a course-format evaluator.pth to fine-tune (else random weights)
    epochs: int = 24
    batch_size: int = 128
    lr: float = 2e-3  # one-cycle peak
    weight_decay: float = 1e-4
    blur_prob: float = 0.5  # share of images seen through 32x32
    seed: int = 0
    device: str = "auto"
    bf16: bool = True  # bf16 autocast (CPU and GPU): ~1.7x faster on a CPU with AVX-512 BF16
    half: bool = True  # save fp16 weights (22 MB instead of 45 MB)

    def validate(self) -> None:
        Device.check(self.device, "--device")
        if self.epochs < 1 or self.batch_size < 1:
            raise UsageError(
                f"--epochs and --batch-size must be at least 1; got {self.epochs}, {self.batch_size}"
            )
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UsageError(f"--lr {self.lr} is out of range: a finite number > 0")
        if not 0 <= self.blur_prob <= 1:
            raise UsageError(f"--blur {self.blur_prob} is out of range: [0, 1]")
        folders = [Path(d).resolve() for d in self.data]
        repeated = [d for i, d in enumerate(self.data) if folders[i] in folders[:i]]
        if repeated:
            raise UsageError(f"--data {quote(repeated[0])} is given twice; give each folder once")
        if self.validation is not None and Path(self.validation).resolve() in folders:
            raise UsageError(
                f"--validation {quote(self.validation)} is also given as --data: validation images are never "
                "trained on; render other seeds for it"
            )
