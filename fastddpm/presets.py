"""Named starting points of `fastddpm train --preset NAME` and how one is applied to a TrainConfig (torch-free,
so `fastddpm --help` can list them)."""

from __future__ import annotations

import dataclasses

from fastddpm.configs import TrainConfig
from fastddpm.errors import UsageError

# The TrainConfig fields each preset changes from TrainConfig's defaults ("model.<field>" for ModelConfig's).
# Options given explicitly override a preset's values.
TRAIN_PRESETS: dict[str, dict[str, object]] = {
    # The defaults themselves: the configuration the shipped CPU model's base was trained with (4.76M
    # parameters). The shipped model is that base fine-tuned with --refine 32 --min-snr-floor 0.3 (its card).
    "cpu": {},
    # Chosen from the GPU machine's measurements (../shared/device/README.md), not from a training comparison on
    # a GPU. At batch 32-64 on an H100 / H200 a UNet of 15-17M parameters costs the same 3.1 ms per compiled call
    # as one of a third the FLOPs, because GroupNorm, SiLU and small convolutions are bound by launches and memory
    # traffic, not arithmetic; so the GPU affords a wider model on finer 2x2 patches (the UNet runs at 32x32
    # instead of 16x16: about 4x4 tokens per object instead of 2x2, aimed at the shapes the CPU model gets wrong),
    # batch 256, bf16 and compile. Attention stays at 8x8 and 4x4 (attention at 16x16 bought no speed there,
    # measured on a 26.6M UNet). On one CPU core for 20 minutes, 2x2 patches trailed 4x4 ones (recipe
    # ablation, bench/results/recipe/results.md), also per image; at a GPU's budget it is untested, and the GPU
    # campaign's train and bench stages (bench/campaign/stages.py, f and g) give this preset its first score.
    # The refinement head and the floored min-SNR weight are what lifted the CPU model's DDPM-1000 above its
    # 10-step rows at an unchanged 10-step score (bench/results/recipe/PLAN.md); both are cheap at a GPU's batch,
    # and neither has been tried from scratch.
    "gpu": {
        "batch_size": 256,
        "amp": "bf16",
        "compile": True,
        "eval_minutes": 1.0,
        "model.patch_size": 2,
        "model.block_channels": (64, 128, 256, 256),
        "model.attention_levels": (2, 3),
        "model.refine_channels": 32,
        "min_snr_floor": 0.3,
    },
}


def apply_preset(config: TrainConfig, name: str, explicit: frozenset[str] = frozenset()) -> TrainConfig:
    """`config` with preset `name`'s settings, except the fields in `explicit` (same names as TRAIN_PRESETS'
    keys): those were given on the command line and keep config's values."""
    if name not in TRAIN_PRESETS:
        raise UsageError(f"--preset {name!r} is not one of {', '.join(TRAIN_PRESETS)}")
    chosen = {k: v for k, v in TRAIN_PRESETS[name].items() if k not in explicit}
    # With the min-SNR weight off (None) a preset's floor has no weight to floor, and validate() would refuse it.
    if not config.min_snr_gamma:
        chosen.pop("min_snr_floor", None)
    model = {k.removeprefix("model."): v for k, v in chosen.items() if k.startswith("model.")}
    train = {k: v for k, v in chosen.items() if not k.startswith("model.")}
    return dataclasses.replace(config, model=dataclasses.replace(config.model, **model), **train)
