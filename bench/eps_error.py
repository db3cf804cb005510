"""Why does DDPM-1000 score below 10-step samplers? The model's eps error per timestep bucket on held-out renders
(never trained on), beside the error of the linear skip alone (the network's output set to zero) and the x0
error it implies, plus where the 10-step samplers' timesteps fall. No sampling: one forward pass per image per
bucket, conditional and guided (the guided eps is what every sampler steps with).

    fastddpm data render --out /work/data/holdout_diag --scenes 200 --seed 77
    python bench/eps_error.py --data /work/data/holdout_diag --out bench/results/recipe/eps_error.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fastddpm import atomic  # noqa: E402
from fastddpm.data.reader import load_dataset, to_model_range  # noqa: E402
from fastddpm.errors import UsageError  # noqa: E402
from fastddpm.model import EpsilonModel, load_model  # noqa: E402
from fastddpm.paths import default_model_dir  # noqa: E402
from fastddpm.schedule import NoiseSchedule  # noqa: E402

EDGES = (0, 10, 25, 50, 100, 200, 400, 700, 1000)  # timestep buckets [a, b)
GUIDANCE = 2.5


@torch.no_grad()
def bucket_errors(eps_model, schedule, images, labels, lo, hi, generator, batch=50) -> dict:
    """Mean over images of per-image MSEs at one t drawn per image from [lo, hi)."""
    sums = dict(cond=0.0, guided=0.0, skip=0.0, x0=0.0, x0_guided=0.0, norm_ratio=0.0)
    for start in range(0, len(images), batch):
        x0 = to_model_range(images[start : start + batch])
        cond = labels[start : start + batch]
        n = x0.shape[0]
        t = torch.randint(lo, hi, (n,), generator=generator)
        noise = torch.randn(x0.shape, generator=generator)
        x_t = schedule.add_noise(x0, noise, t)
        eps_c = eps_model(x_t, t, cond)
        eps_u = eps_model(x_t, t, torch.zeros_like(cond))
        eps_g = eps_u + GUIDANCE * (eps_c - eps_u)
        skip = eps_c - eps_model.net(x_t, t, cond) if not eps_model.v_prediction else torch.zeros_like(x0)
        a = schedule.alphas_cumprod[t].view(-1, 1, 1, 1)

        for key, pred in (("cond", eps_c), ("guided", eps_g), ("skip", skip)):
            sums[key] += (pred - noise).pow(2).mean(dim=(1, 2, 3)).sum().item()
        for key, pred in (("x0", eps_c), ("x0_guided", eps_g)):  # x0 implied, clipped like the samplers'
            x0_hat = ((x_t - (1 - a).sqrt() * pred) / a.sqrt()).clamp(-1, 1)
            sums[key] += (x0_hat - x0).pow(2).mean(dim=(1, 2, 3)).sqrt().sum().item()
        sums["norm_ratio"] += (eps_c.flatten(1).norm(dim=1) / noise.flatten(1).norm(dim=1)).sum().item()
    return {k: v / len(images) for k, v in sums.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=default_model_dir())
    parser.add_argument("--data", type=Path, required=True, help="a held-out render (not the training set)")
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--out", type=Path, required=True, help="markdown file to write")
    args = parser.parse_args()
    try:
        net, card = load_model(args.model)
        data = load_dataset(args.data)
    except UsageError as error:
        parser.error(str(error))
    eps_model = EpsilonModel(net, card.diffusion).eval()
    schedule = NoiseSchedule.from_config(card.diffusion)
    images, labels = data.images[: args.images], data.labels[: args.images]
    generator = torch.Generator().manual_seed(0)
    visited = sorted(schedule.timesteps(10))
    lines = [
        f"# eps error per timestep bucket: {args.model} on {args.data} ({len(images)} held-out images)",
        "",
        "Made by `python bench/eps_error.py " + " ".join(sys.argv[1:]) + "`. One t per image per bucket, one",
        "noise draw (seed 0). eps MSE of the conditional and the guided (2.5) eps against the true noise; the",
        "linear skip alone (network output zero); x0 RMSE implied by each (clipped to [-1, 1], as the samplers);",
        "|eps_pred| / |eps|. 10-step samplers (trailing spacing) evaluate the model at t = "
        + ", ".join(map(str, visited))
        + ".",
        "",
        "| t bucket | 10-step visits | eps MSE cond | eps MSE guided | eps MSE skip only | x0 RMSE cond | "
        "x0 RMSE guided | eps norm ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for lo, hi in zip(EDGES, EDGES[1:], strict=False):
        e = bucket_errors(eps_model, schedule, images, labels, lo, hi, generator)
        hits = sum(lo <= t < hi for t in visited)
        lines.append(
            f"| [{lo}, {hi}) | {hits} | {e['cond']:.4f} | {e['guided']:.4f} | {e['skip']:.4f} | "
            f"{e['x0']:.4f} | {e['x0_guided']:.4f} | {e['norm_ratio']:.3f} |"
        )
        print(lines[-1], flush=True)
    atomic.write_text(args.out, "\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
