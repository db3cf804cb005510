"""The recipe ablation's named variants (issue 23): each a dict of `fastddpm train` options on top of the shipped
recipe, so a variant is exactly the command a user would type. `NAME-sN` is variant NAME trained with --seed N
(the repeats the plan's rule asks of the two best). Cost per image: matmul and conv FLOPs of one forward pass
at batch 1, counted by torch.utils.flop_counter (a guided sampling step costs two of these)."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Planned first, in the order they run (bench/results/recipe/PLAN.md); the rest are there for later sessions.
FIRST_VARIANTS = ("baseline", "patch2", "v-cosine", "hflip")
PATCH2 = {"patch": 2, "channels": "32,64,128,128", "attention": "2,3"}
VARIANT_OPTIONS: dict[str, dict] = {
    # today's recipe (checkpoints/default/config.json), from scratch
    "baseline": {},
    # a 32x32 level of 32 channels in front of the shipped 16-8-4 levels (same channels and attention there)
    "patch2": PATCH2,
    # v-prediction (no linear skip: that is an epsilon-only device) with the cosine schedule
    "v-cosine": {"prediction": "v", "schedule": "cosine"},
    # mirrored scenes keep their labels; the lighting is not symmetric
    "hflip": {"hflip": True},
    # the min-SNR weight off: plain eps MSE, so the low-noise steps DDPM-1000 ends on are trained
    # (bench/results/recipe/DDPM1000.md)
    "eps-uniform": {"min_snr_gamma": 0},
    # for later sessions: the two halves of v-cosine, and combinations
    "v-linear": {"prediction": "v"},
    "cosine": {"schedule": "cosine"},
    "patch2-hflip": {**PATCH2, "hflip": True},
    "patch2-v-cosine": {**PATCH2, "prediction": "v", "schedule": "cosine"},
}


@dataclass(frozen=True)
class Variant:
    name: str
    options: dict  # fastddpm train option -> value (True: a flag)
    seed: int = 0

    def train_args(self) -> list[str]:
        """The options as `fastddpm train` arguments."""
        args = []
        for key, value in {**self.options, "seed": self.seed}.items():
            flag = "--" + key.replace("_", "-")
            args += [flag] if value is True else [flag, str(value)]
        return args


def variant(name: str) -> Variant:
    """A variant by name: a key of VARIANT_OPTIONS, or one followed by -sN (the same with --seed N)."""
    match = re.fullmatch(r"(.+)-s(\d+)", name)
    base, seed = (match.group(1), int(match.group(2))) if match else (name, 0)
    if base not in VARIANT_OPTIONS:
        known = ", ".join(VARIANT_OPTIONS)
        raise ValueError(
            f"--variants: unknown variant {name!r}; known: {known} (each may end in -sN, a seed)"
        )
    return Variant(name, VARIANT_OPTIONS[base], seed)


def gflop_per_image(model_config) -> float:
    """Forward-pass GFLOP of one 64x64 image (batch 1) for a ModelConfig."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from fastddpm.model import ConditionalUNet

    net = ConditionalUNet(model_config).eval()
    x, t, cond = torch.zeros(1, 3, 64, 64), torch.tensor([500]), torch.zeros(1, 24)
    cond[0, 0] = 1
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(x, t, cond)
    return counter.get_total_flops() / 1e9
