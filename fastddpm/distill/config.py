"""Settings of one `fastddpm distill` run (torch-free, like fastddpm.configs, so `--help` stays instant)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from fastddpm.choices import Device, Weighting
from fastddpm.defaults import DEFAULT_GUIDANCE
from fastddpm.errors import UsageError


@dataclass(frozen=True)
class DistillConfig:
    """One `fastddpm distill` run; saved as OUT/config.json. Stage 0 folds the guidance scale into a student of
    the teacher's architecture; each later stage halves the DDIM steps, from_steps -> ... -> to_steps."""

    model: str  # the teacher's model folder
    data: str  # images and labels the noisy inputs are made from (the teacher's training set)
    out: str  # run folder
    to_steps: int = 4
    from_steps: int = 32  # DDIM steps of the guidance-folded teacher the first halving learns from
    guidance: float = DEFAULT_GUIDANCE  # folded into the student, which then samples with guidance 1
    stage_steps: int = 1500  # optimisation steps per stage
    minutes: float | None = None  # wall-clock budget, shared evenly by the stages (each ends at either limit)
    batch_size: int = 32
    lr: float = 1e-4
    weighting: str = "eps"  # loss weight per timestep: eps (plain eps MSE) | x-trunc-snr (Salimans & Ho)
    seed: int = 0
    device: str = "auto"
    fold_guidance: bool = True  # False when the teacher is already a student (guidance folded in)
    checkpoint_minutes: float = 5.0
    log_every: int = 25

    def stages(self) -> list[int]:
        """Student step counts: 0 for guidance folding (unless already folded), then from_steps / 2, ..., to_steps."""
        halvings, steps = [], self.from_steps
        while steps > self.to_steps:
            steps //= 2
            halvings.append(steps)
        return [0, *halvings] if self.fold_guidance else halvings

    def validate(self, timesteps: int | None = None) -> None:
        """Every value in its range; with the teacher's `timesteps`, also the first halving's grid."""
        Device.check(self.device, "--device")
        Weighting.check(self.weighting, "--weighting")
        power = self.from_steps // self.to_steps if self.to_steps >= 1 else 0
        if self.to_steps < 1 or power < 2 or power & (power - 1) or self.from_steps % self.to_steps:
            raise UsageError(
                f"--to-steps {self.to_steps} / --from-steps {self.from_steps}: from-steps must be to-steps times a "
                "power of two (at least 2), e.g. 32 -> 16 -> 8 -> 4"
            )
        if timesteps is not None and self.from_steps > timesteps:  # the first halving's grid is from_steps
            raise UsageError(
                f"--from-steps {self.from_steps} is out of range: the teacher's schedule has {timesteps} timesteps"
            )
        if not (math.isfinite(self.guidance) and self.guidance >= 1):
            raise UsageError(f"--guidance {self.guidance} is out of range: a finite scale >= 1")
        for option, value in (("--stage-steps", self.stage_steps), ("--batch-size", self.batch_size)):
            if value < 1:
                raise UsageError(f"{option} {value} is out of range: at least 1")
        if not (math.isfinite(self.lr) and self.lr > 0) or (
            self.minutes is not None and not self.minutes > 0
        ):
            raise UsageError(f"--lr {self.lr} and --minutes {self.minutes} must be finite numbers > 0")
