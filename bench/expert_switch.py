"""Two models split by noise level (a diagnosis for bench/results/recipe/DDPM1000.md): `--high` predicts eps at
t >= --switch, `--low` below it, inside one sampler run. Scores DDPM-1000 and DPM-Solver++-10 on one validation
split (synth.test_splits of --draw, never a test split) with the shipped evaluator, guidance 2.5. If a model that
is good at low noise keeps its DDPM-1000 gain with the high-noise steps left to the other, what each lacks is
accuracy in its own range of t, and a recipe can aim the weight (or a second network) there.

    python bench/expert_switch.py --high checkpoints/default --low /work/runs/ft-refine-uniform-long/model \
        --switch 200 --split val --out /tmp/expert-val.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from fastddpm import atomic
from fastddpm.configs import SampleSettings
from fastddpm.data import synth
from fastddpm.evaluator.network import Evaluator
from fastddpm.evaluator.score import score_splits
from fastddpm.export import open_backend
from fastddpm.model import checkpoint_sha256, load_card
from fastddpm.sampling.samplers import EpsFn
from fastddpm.schedule import NoiseSchedule

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipe_scoring import GUIDANCE, SPLITS  # noqa: E402  (the recipe's scoring: its guidance and split names)

ROWS = (("dpmpp", 10), ("ddpm", 1000))


def switched(high: EpsFn, low: EpsFn, switch: int) -> EpsFn:
    """eps from `high` at t >= switch and from `low` below; a sampler's call holds one t for its whole batch."""

    def eps(x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return (high if int(t.flatten()[0]) >= switch else low)(x, t, cond)

    return eps


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--high", type=Path, required=True, help="model folder for t >= --switch")
    parser.add_argument("--low", type=Path, required=True, help="model folder for t < --switch")
    parser.add_argument("--switch", type=int, required=True, help="first timestep the --high model predicts")
    parser.add_argument("--split", choices=SPLITS, required=True)
    parser.add_argument("--draw", type=int, default=1000, help="validation draw (synth.test_splits seed)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--out", type=Path, required=True, help="JSON record")
    args = parser.parse_args()
    args.diffusion = load_card(args.high).diffusion
    if load_card(args.low).diffusion != args.diffusion or not 0 < args.switch < args.diffusion.timesteps:
        parser.error("--high and --low need the same diffusion config, and --switch a timestep inside it")
    return args


def main() -> None:
    args = parse_args()
    schedule = NoiseSchedule.from_config(args.diffusion)
    eps = switched(
        open_backend("torch", args.high, "cpu"), open_backend("torch", args.low, "cpu"), args.switch
    )
    split = dict(zip(SPLITS, synth.test_splits(args.draw), strict=True))[args.split]
    evaluator = Evaluator(None, "cpu")
    rows = []
    for sampler, steps in ROWS:
        start = time.perf_counter()
        settings = SampleSettings(sampler, steps, guidance=GUIDANCE)
        accuracy = score_splits(eps, schedule, {args.split: split}, settings, [args.seed], evaluator, "cpu")
        seconds = round(time.perf_counter() - start, 1)
        rows.append(
            {"sampler": sampler, "steps": steps, "accuracy": accuracy[args.split][0], "seconds": seconds}
        )
        print(rows[-1], flush=True)
    models = {
        name: {"folder": str(m), "sha256": checkpoint_sha256(m)}
        for name, m in (("high", args.high), ("low", args.low))
    }
    atomic.write_json(
        args.out,
        {
            **models,
            "switch": args.switch,
            "split": args.split,
            "draw": args.draw,
            "seed": args.seed,
            "guidance": GUIDANCE,
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
