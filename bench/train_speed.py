"""Training throughput (images/s) of the shipped configuration, and of the course-style baseline with --baseline.
Same step as `fastddpm train` (loss, AdamW, clipping, EMA); data resident on the device; warm-up (compilation)
excluded, then `--steps` timed steps.

    python bench/train_speed.py                       # shipped config; CUDA: compiled + bf16, batch 256
    python bench/train_speed.py --baseline --batch-size 64 --no-compile --amp off   # the course way
    python bench/train_speed.py --conditioning tokens  # the cross-attention alternative
    python bench/train_speed.py --compare eager,channels-last,compile,bf16 --rounds 5   # side by side

--compare builds every named setting in one process and times them in interleaved rounds (a round times each
once, in turn), so a neighbour's load or a clock change falls on all of them alike; it reports each one's
median over the rounds.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass(frozen=True)
class StepSettings:
    compile: bool = False
    amp: str = "off"  # bf16 | off
    channels_last: bool = False


COMPARE = {
    "eager": StepSettings(),
    "channels-last": StepSettings(channels_last=True),
    "compile": StepSettings(compile=True),
    "bf16": StepSettings(amp="bf16"),
    "compile-bf16": StepSettings(compile=True, amp="bf16"),
    "compile-channels-last": StepSettings(compile=True, channels_last=True),
}


def comma_list(text: str) -> list[str]:
    names = [n for n in text.split(",") if n]
    for name in names:
        if name not in COMPARE:
            raise argparse.ArgumentTypeError(f"{name!r} is not one of {', '.join(COMPARE)}")
    return names


def parse_args() -> argparse.Namespace:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", action="store_true", help="the course-style 64M UNet2DModel")
    parser.add_argument("--conditioning", choices=Conditioning.names(), default=ModelConfig.conditioning)
    parser.add_argument(
        "--batch-size", type=int, default=default_batch_size(torch.device("cuda" if cuda else "cpu"))
    )
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=cuda)
    parser.add_argument("--amp", choices=["bf16", "off"], default="bf16" if cuda else "off")
    parser.add_argument(
        "--channels-last", action="store_true", help="model and batches in channels-last memory"
    )
    parser.add_argument(
        "--compare", type=comma_list, help=f"settings to time side by side: {', '.join(COMPARE)}"
    )
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of --compare")
    parser.add_argument("--steps", type=int, default=50 if cuda else 5)
    parser.add_argument("--warmup", type=int, default=10 if cuda else 1)
    return parser.parse_args()


def build_step(
    args: argparse.Namespace, settings: StepSettings, device: torch.device
) -> tuple[Callable[[], None], int]:
    """One training step of a fresh model (seeded alike for every setting) as `fastddpm train` runs it, and the
    model's parameter count."""
    torch.manual_seed(0)
    memory = torch.channels_last if settings.channels_last else torch.contiguous_format
    net = (
        CourseUNet() if args.baseline else ConditionalUNet(ModelConfig(conditioning=args.conditioning))
    ).to(device, memory_format=memory)
    ema = copy.deepcopy(net).requires_grad_(False)
    # as the trainer; the course's baseline predicts plain eps (no skip)
    eps_model = EpsilonModel(net, DiffusionConfig(skip_data_std=None) if args.baseline else DiffusionConfig())
    trained = TrainingForm(eps_model.to(device))
    model = torch.compile(trained) if settings.compile else trained
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4, fused=device.type == "cuda")
    schedule = NoiseSchedule(linear_betas()).to(device)
    images = torch.randint(0, 256, (4096, 3, 64, 64), dtype=torch.uint8, device=device)
    labels = (torch.rand(4096, 24, device=device) < 0.08).float()

    def step() -> None:
        index = torch.randint(0, 4096, (args.batch_size,), device=device)
        with torch.autocast(device.type, torch.bfloat16, enabled=settings.amp == "bf16"):
            x0 = (images[index].float() / 127.5 - 1).contiguous(memory_format=memory)
            loss = diffusion_loss(eps_model, schedule, x0, labels[index], forward=model)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        ema_update(ema, net, 0.999)

    return step, count_parameters(net)


def timed_rate(step: Callable[[], None], steps: int, batch: int, device: torch.device) -> float:
    seconds = timed_call(lambda: [step() for _ in range(steps)], device)[1] / 1000
    return steps * batch / seconds


def compare(args: argparse.Namespace, device: torch.device) -> dict:
    """Every --compare setting, warmed up, then timed once per round in turn; medians over the rounds."""
    steps = {name: build_step(args, COMPARE[name], device)[0] for name in args.compare}
    warmup = {
        name: timed_call(lambda s=s: [s() for _ in range(args.warmup)], device)[1] / 1000
        for name, s in steps.items()
    }
    rates: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            rates[name].append(timed_rate(step, args.steps, args.batch_size, device))
    eager = statistics.median(rates[args.compare[0]])
    for name, values in rates.items():
        median = statistics.median(values)
        print(
            f"{name:>22}: {median:7.1f} images/s (x{median / eager:.2f} of {args.compare[0]}; rounds "
            f"{min(values):.1f}-{max(values):.1f}; warm-up {warmup[name]:.0f} s)"
        )
    return {
        "compare": {
            name: {
                **dataclasses.asdict(COMPARE[name]),
                "images_per_second": statistics.median(values),
                "rounds": values,
                "warmup_seconds": warmup[name],
            }
            for name, values in rates.items()
        },
        "rounds": args.rounds,
    }


def main() -> None:
    args = parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = "course-style baseline" if args.baseline else f"shipped config, {args.conditioning} conditioning"
    record = {
        "model": name,
        "device": device_name(device),
        "batch_size": args.batch_size,
        "steps": args.steps,
    }
    if args.compare:
        print(f"{name}, batch {args.batch_size}, {args.steps} steps per round on {device_name(device)}")
        save("train_speed", {**record, **compare(args, device)})
        return
    settings = StepSettings(compile=args.compile, amp=args.amp, channels_last=args.channels_last)
    step, parameters = build_step(args, settings, device)
    warmup = (
        timed_call(lambda: [step() for _ in range(args.warmup)], device)[1] / 1000
    )  # includes compilation
    rate = timed_rate(step, args.steps, args.batch_size, device)
    print(
        f"{name}: {parameters / 1e6:.1f}M parameters, batch {args.batch_size}, compile {args.compile}, "
        f"amp {args.amp}, channels-last {args.channels_last}: {rate:,.1f} images/s on {device_name(device)} "
        f"(warm-up {warmup:.0f} s)"
    )
    record |= {
        "parameters": parameters,
        **dataclasses.asdict(settings),
        "images_per_second": rate,
        "warmup_seconds": warmup,
    }
    save("train_speed", record)


if __name__ == "__main__":
    main()
