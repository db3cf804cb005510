"""Choose the guidance scale on VALIDATION label sets, never on the test splits: the sets are drawn like the data
set's test.json / new_test.json but from another seed, so the scale is not tuned on what the bench reports.

    python bench/guidance_sweep.py --scales 1,1.5,2,3,4 --sampler dpmpp --steps 20
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

from fastddpm.backends import make_backend  # noqa: E402
from fastddpm.data import synth  # noqa: E402
from fastddpm.evaluator import Evaluator  # noqa: E402
from fastddpm.configs import SampleSettings  # noqa: E402
from fastddpm.model import load_card  # noqa: E402
from fastddpm.paths import default_model_dir  # noqa: E402
from fastddpm.runtime import device_name, resolve_dtype  # noqa: E402
from fastddpm.schedule import NoiseSchedule  # noqa: E402
from fastddpm.scoring import mean_spread, score_splits  # noqa: E402

VALIDATION_SEED = 1000  # label sets only; the data sets' own test splits use their render seed (0 by default)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scales", default="1,1.5,2,3,4")
    parser.add_argument("--sampler", default="dpmpp")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--checkpoint", type=Path, default=default_model_dir())
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    val, new_val = synth.test_splits(VALIDATION_SEED)
    splits = {"val": val, "new_val": new_val}
    backend = make_backend("torch", args.checkpoint, device, resolve_dtype("auto", device))
    schedule = NoiseSchedule.from_config(load_card(args.checkpoint).diffusion)
    evaluator = Evaluator(None, device)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for scale in (float(s) for s in args.scales.split(",")):
        settings = SampleSettings(args.sampler, args.steps, guidance=scale)
        scores = score_splits(backend, schedule, splits, settings, seeds, evaluator, device)
        row = {"guidance": scale, **{name: mean_spread(values)[0] for name, values in scores.items()}}
        row["mean"] = (row["val"] + row["new_val"]) / 2
        rows.append(row)
        print(
            f"guidance {scale:4.1f}: val {row['val']:.3f}  new_val {row['new_val']:.3f}  mean {row['mean']:.3f}"
        )
    best = max(rows, key=lambda r: r["mean"])
    print(f"best on validation: guidance {best['guidance']}")
    save(
        "guidance_sweep",
        {
            "device": device_name(device),
            "checkpoint": str(args.checkpoint),
            "sampler": args.sampler,
            "steps": args.steps,
            "seeds": seeds,
            "validation_seed": VALIDATION_SEED,
            "rows": rows,
            "best": best,
        },
    )


if __name__ == "__main__":
    main()
