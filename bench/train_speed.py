"""Training throughput (images/s) of the shipped configuration, and of the course-style baseline with --baseline.
Same step as `fastddpm train` (loss, AdamW, clipping, EMA); data resident on the device; warm-up (compilation)
excluded, then `--steps` timed steps.

    python bench/train_speed.py                       # shipped config; CUDA: compiled + bf16, batch 256
    python bench/train_speed.py --baseline --batch-size 64 --no-compile --amp off   # the course way
    python bench/train_speed.py --conditioning tokens  # the cross-attention alternative
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline import CourseUNet  # noqa: E402
from common import save  # noqa: E402

from fastddpm.training.loss import diffusion_loss  # noqa: E402
from fastddpm.choices import Conditioning  # noqa: E402
from fastddpm.configs import DiffusionConfig, ModelConfig  # noqa: E402
from fastddpm.model import ConditionalUNet, EpsilonModel, TrainingForm, count_parameters  # noqa: E402
from fastddpm.runtime import device_name, timed_call  # noqa: E402
from fastddpm.schedule import NoiseSchedule, linear_betas  # noqa: E402
from fastddpm.training.loop import ema_update  # noqa: E402
from fastddpm.training.setup import default_batch_size  # noqa: E402


def parse_args() -> argparse.Namespace:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", action="store_true", help="the course-style 64M UNet2DModel")
    parser.add_argument("--conditioning", choices=Conditioning.names(), default=ModelConfig.conditioning)
    parser.add_argument(
        "--batch-size", type=int, default=default_batch_size(torch.device("cuda" if cuda else "cpu"))
    )
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=cuda)
    parser.add_argument("--amp", choices=["bf16", "off"], default="bf16" if cuda else "off")
    parser.add_argument("--steps", type=int, default=50 if cuda else 5)
    parser.add_argument("--warmup", type=int, default=10 if cuda else 1)
    return parser.parse_args()


def main() -> None:
    cuda = torch.cuda.is_available()
    args = parse_args()
    device = torch.device("cuda" if cuda else "cpu")
    config = ModelConfig(conditioning=args.conditioning)
    net = (CourseUNet() if args.baseline else ConditionalUNet(config)).to(device)
    ema = copy.deepcopy(net).requires_grad_(False)
    # as the trainer; the course's baseline predicts plain eps (no skip)
    eps_model = EpsilonModel(net, DiffusionConfig(skip_data_std=None) if args.baseline else DiffusionConfig())
    trained = TrainingForm(eps_model.to(device))
    model = torch.compile(trained) if args.compile else trained
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4, fused=cuda)
    schedule = NoiseSchedule(linear_betas()).to(device)
    images = torch.randint(0, 256, (4096, 3, 64, 64), dtype=torch.uint8, device=device)
    labels = (torch.rand(4096, 24, device=device) < 0.08).float()

    def step() -> None:
        index = torch.randint(0, 4096, (args.batch_size,), device=device)
        with torch.autocast(device.type, torch.bfloat16, enabled=args.amp == "bf16"):
            x0 = images[index].float() / 127.5 - 1
            loss = diffusion_loss(eps_model, schedule, x0, labels[index], forward=model)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        ema_update(ema, net, 0.999)

    def steps(n: int):
        return lambda: [step() for _ in range(n)]

    warmup = timed_call(steps(args.warmup), device)[1] / 1000  # includes compilation
    seconds = timed_call(steps(args.steps), device)[1] / 1000
    rate = args.steps * args.batch_size / seconds
    name = "course-style baseline" if args.baseline else f"shipped config, {args.conditioning} conditioning"
    print(
        f"{name}: {count_parameters(net) / 1e6:.1f}M parameters, batch {args.batch_size}, compile {args.compile}, "
        f"amp {args.amp}: {rate:,.1f} images/s on {device_name(device)} (warm-up {warmup:.0f} s)"
    )
    save(
        "train_speed",
        {
            "model": name,
            "parameters": count_parameters(net),
            "device": device_name(device),
            "batch_size": args.batch_size,
            "compile": args.compile,
            "amp": args.amp,
            "steps": args.steps,
            "images_per_second": rate,
            "warmup_seconds": warmup,
        },
    )


if __name__ == "__main__":
    main()
