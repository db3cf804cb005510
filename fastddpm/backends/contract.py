"""The network's input/output contract, declared once: ONNX export, its parity inputs, the TensorRT profile,
ONNX Runtime feeds and io-binding, and buffer allocation all read their names, shapes and ranges from here."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fastddpm.conditions import NUM_CLASSES
from fastddpm.errors import UsageError


@dataclass(frozen=True)
class UNetIO:
    image_size: int = 64  # pixels per side of x and eps
    batch_min: int = 1
    batch_opt: int = 64  # 32 images with guidance's doubled batch
    batch_max: int = 128
    num_timesteps: int = 1000  # t takes integers in [0, num_timesteps)

    x: str = "x"  # (B, 3, S, S) float32 noisy image
    t: str = "t"  # (B,) int64 timestep
    cond: str = "cond"  # (B, 24) float32 multi-hot; all zeros = null condition
    eps: str = "eps"  # (B, 3, S, S) float32 predicted noise

    @property
    def input_names(self) -> list[str]:
        return [self.x, self.t, self.cond]

    def shapes(self, batch: int) -> dict[str, tuple[int, ...]]:
        s = self.image_size
        return {
            self.x: (batch, 3, s, s),
            self.t: (batch,),
            self.cond: (batch, NUM_CLASSES),
            self.eps: (batch, 3, s, s),
        }

    def check_batch(self, batch: int, what: str = "the export") -> None:
        if not self.batch_min <= batch <= self.batch_max:
            raise UsageError(
                f"batch {batch} is outside the {what}'s profile {self.batch_min}:{self.batch_opt}:{self.batch_max}; "
                "re-export with a wider --batch MIN:OPT:MAX (guidance doubles the batch)"
            )

    def random_inputs(self, batch: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Inputs in the contract's ranges, the first row with the null condition: {name: tensor}."""
        shapes = self.shapes(batch)
        x = torch.randn(shapes[self.x], generator=generator)
        t = torch.randint(0, self.num_timesteps, shapes[self.t], generator=generator)
        cond = (torch.rand(shapes[self.cond], generator=generator) < 0.1).float()
        cond[0] = 0
        return {self.x: x, self.t: t, self.cond: cond}


def parse_batch_profile(text: str) -> tuple[int, int, int]:
    """'MIN:OPT:MAX' -> (min, opt, max), checked."""
    try:
        lo, opt, hi = (int(v) for v in text.split(":"))
    except ValueError:
        raise UsageError(f"--batch takes MIN:OPT:MAX like 1:64:128; got {text!r}") from None
    if not 1 <= lo <= opt <= hi:
        raise UsageError(f"--batch needs 1 <= MIN <= OPT <= MAX; got {text!r}")
    return lo, opt, hi
