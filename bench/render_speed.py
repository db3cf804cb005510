"""Renderer speed: images/s of `fastddpm data render` (placement + ray casting + PNG writing) on CPU or GPU.

python bench/render_speed.py --scenes 100 --device cpu
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

from fastddpm.data.writer import render_dataset  # noqa: E402
from fastddpm.runtime import device_name  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenes", type=int, default=100)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        render_dataset(Path(folder) / "warm", scenes=2, seed=99, device=args.device)  # imports, first kernels
        report = render_dataset(Path(folder) / "data", scenes=args.scenes, seed=0, device=args.device)
    full_minutes = 18009 / report.images_per_second / 60
    print(
        f"{report.rendered} images in {report.seconds:.1f} s: {report.images_per_second:.1f} images/s on "
        f"{device_name(torch.device(args.device))}; the full 18,009-image set would take {full_minutes:.1f} min"
    )
    save(
        "render_speed",
        {
            "device": device_name(torch.device(args.device)),
            "images": report.rendered,
            "seconds": report.seconds,
            "images_per_second": report.images_per_second,
            "full_set_minutes": full_minutes,
        },
    )


if __name__ == "__main__":
    main()
