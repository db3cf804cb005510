"""Sampling speed side by side, one 32-image split (guidance doubles the network batch to 64):
the course-style baseline run the course way (64M UNet2DModel, eager fp32, diffusers scheduler loop) against
fastddpm's shipped model (bf16, torch.compile, the whole denoising run in one CUDA graph), plus large-batch
throughput (4,096 images, DDIM-20) with model FLOP utilisation. Random baseline weights: latency only.

    python bench/sampling_speed.py              # on the GPU machine
    python bench/sampling_speed.py --quick      # CPU smoke run: two steps per row, two-image splits, toy baseline
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline import CourseUNet  # noqa: E402
from common import RESULTS, save  # noqa: E402

from fastddpm.export import open_backend  # noqa: E402
from fastddpm.configs import SampleSettings  # noqa: E402
from fastddpm.sampling.batch import generate, image_seeds  # noqa: E402
from fastddpm.paths import default_model_dir  # noqa: E402
from fastddpm.runtime import device_name, latency_stats, resolve_dtype, time_ms  # noqa: E402
from fastddpm.schedule import NoiseSchedule, linear_betas  # noqa: E402

# Dense bf16 peak of the lent H200, measured there on an 8192^3 matmul (../shared/device/README.md); the
# datasheet says 989 for H100 / H200 SXM, which no kernel of this size reaches, so MFU is against the measured one.
H200_BF16_PEAK_TFLOPS = 790.0


def course_way(model, steps: int, cond: torch.Tensor, scheduler_name: str):
    from diffusers import DDIMScheduler, DDPMScheduler

    scheduler = DDPMScheduler() if scheduler_name == "ddpm" else DDIMScheduler()

    @torch.no_grad()
    def run() -> torch.Tensor:
        scheduler.set_timesteps(steps)
        x = torch.randn(cond.shape[0], 3, 64, 64, device=cond.device)
        for t in scheduler.timesteps:
            eps = model(x, t.to(cond.device).expand(cond.shape[0]), cond)
            x = scheduler.step(eps, t, x).prev_sample
        return x

    return run


def flops_per_image(backend_fn, device) -> float:
    x, t, c = (
        torch.randn(1, 3, 64, 64, device=device),
        torch.zeros(1, dtype=torch.long, device=device),
        torch.zeros(1, 24, device=device),
    )
    with FlopCounterMode(display=False) as counter:
        backend_fn(x, t, c)
    return counter.get_total_flops()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="CPU smoke run")
    parser.add_argument("--checkpoint", type=Path, default=default_model_dir())
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="folder for the JSON (default bench/results)"
    )
    return parser.parse_args()


def baseline_rows(args, device: torch.device, cond: torch.Tensor, steps_of) -> list[dict]:
    """The course-style baseline run the course way: one row per scheduler."""
    # the smoke run's baseline is the same architecture at toy width: its latency means nothing there
    baseline = (CourseUNet((32, 32, 32, 32)) if args.quick else CourseUNet()).to(device).eval()
    rows = []
    for sampler, steps in (("ddpm", steps_of(1000)), ("ddim", steps_of(50))):
        times = time_ms(
            course_way(baseline, steps, cond, sampler),
            device,
            repeats=1 if sampler == "ddpm" else args.repeats,
        )
        rows.append(
            {
                "system": "course-style baseline, eager fp32",
                "sampler": f"{sampler}-{steps}",
                "ms_per_split": latency_stats(times),
            }
        )
        print(rows[-1])
    return rows


def fastddpm_rows(args, backend, schedule, device: torch.device, cond: torch.Tensor, steps_of) -> list[dict]:
    """The shipped model, one split per run: one row per sampler and step count."""
    cuda = device.type == "cuda"
    split, seeds = cond.shape[0], image_seeds(0, cond.shape[0])
    rows = []
    ours = (("ddpm", 1000), ("ddim", 50), ("ddim", 20), ("dpmpp", 10), ("dpmpp", 5))
    for sampler, steps in ((name, steps_of(n)) for name, n in ours):
        settings = SampleSettings(sampler, steps, guidance=2.0, batch_size=split)
        times = time_ms(
            lambda: generate(backend, schedule, cond.cpu(), seeds, settings, device, capture=cuda),  # noqa: B023
            device,
            repeats=args.repeats,
            warmup=2,
        )
        rows.append(
            {
                "system": f"fastddpm, {'compiled bf16, one CUDA graph' if cuda else 'eager fp32'}",
                "sampler": f"{sampler}-{steps}",
                "ms_per_split": latency_stats(times),
            }
        )
        print(rows[-1])
    return rows


def throughput(args, backend, schedule, device: torch.device, big: int, steps_of) -> dict:
    """`big` images with DDIM-20 in chunks of up to 512: images/s and model FLOP utilisation."""
    cuda = device.type == "cuda"
    flops = flops_per_image(backend, device)
    big_steps = steps_of(20)
    settings = SampleSettings("ddim", big_steps, guidance=2.0, batch_size=min(big, 512))
    big_cond = torch.eye(24)[torch.arange(big) % 24]
    ms = latency_stats(
        time_ms(
            lambda: generate(
                backend, schedule, big_cond, image_seeds(1, big), settings, device, capture=cuda
            ),
            device,
            repeats=1 if args.quick else 3,
        )
    )["median"]
    images_per_s = big / (ms / 1000)
    achieved = flops * 2 * big_steps * big / (ms / 1000) / 1e12  # two network rows per image (guidance)
    return {
        "images": big,
        "sampler": f"ddim-{big_steps}",
        "images_per_second": images_per_s,
        "gflop_per_image_call": flops / 1e9,
        "achieved_tflops": achieved,
        "mfu_vs_h200_bf16_peak": achieved / H200_BF16_PEAK_TFLOPS if cuda else None,
        "peak_tflops": H200_BF16_PEAK_TFLOPS,
        "peak_source": "H200 bf16 dense, measured on an 8192^3 matmul (../shared/device/README.md)",
    }


def main() -> None:
    args = parse_args()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    split, big = (2, 4) if args.quick else (32, 4096)
    steps_of = (lambda steps: min(steps, 2)) if args.quick else (lambda steps: steps)
    cond = torch.eye(24, device=device)[torch.arange(split) % 24]
    rows = baseline_rows(args, device, cond, steps_of)
    schedule = NoiseSchedule(linear_betas())
    backend = open_backend(
        "compile" if cuda else "torch", args.checkpoint, device, resolve_dtype("auto", device)
    )
    rows += fastddpm_rows(args, backend, schedule, device, cond, steps_of)
    speed = throughput(args, backend, schedule, device, big, steps_of)
    print(speed)
    save(
        "sampling_speed",
        {
            "device": device_name(device),
            "split_images": split,
            "rows": rows,
            "throughput": speed,
            "checkpoint": str(args.checkpoint),
        },
        args.out,
    )


if __name__ == "__main__":
    main()
