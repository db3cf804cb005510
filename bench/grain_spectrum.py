"""The grain of sampled images, measured against renders (issue 23's DDPM-1000 diagnosis): the luminance power
spectrum in radial frequency bands, each source's power over the renders' power in that band, and the RMS of
the finest detail (image minus its 3x3 box blur, in grey levels). Grain shows as excess power in the top bands.

    python bench/grain_spectrum.py --data /work/data/holdout_diag --images 256 \\
        --grid ddpm-1000=RUN/torch-ddpm-1000-val.png --grid dpmpp-10=RUN/torch-dpmpp-10-val.png \\
        --out bench/results/recipe/grain_spectrum.md

A grid is a PNG that `fastddpm bench` saves (64x64 tiles, 8 to a row, 2 px padding, torchvision's make_grid).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from fastddpm import atomic
from fastddpm.conditions import read_train_labels
from fastddpm.data.reader import decode_image

TILE, PAD = 64, 2
BANDS = ((1, 4), (4, 8), (8, 16), (16, 24), (24, 33))  # radial frequency, cycles per image
LUMA = np.array([0.299, 0.587, 0.114])
_FREQ = np.fft.fftfreq(TILE) * TILE
RADIUS = np.hypot(_FREQ[:, None], _FREQ[None, :])  # of each FFT bin, cycles per image


def grid_tiles(path: Path) -> np.ndarray:
    """(N, 64, 64, 3) uint8 tiles of a bench grid; tiles that are all padding (a short last row) are dropped."""
    from PIL import Image

    with Image.open(path) as img:
        grid = np.asarray(img.convert("RGB"))
    rows, cols = (grid.shape[0] - PAD) // (TILE + PAD), (grid.shape[1] - PAD) // (TILE + PAD)
    tiles = [
        grid[
            PAD + r * (TILE + PAD) : PAD + r * (TILE + PAD) + TILE,
            PAD + c * (TILE + PAD) : PAD + c * (TILE + PAD) + TILE,
        ]
        for r in range(rows)
        for c in range(cols)
    ]
    return np.stack([t for t in tiles if t.any()])


def render_tiles(root: Path, count: int) -> np.ndarray:
    """(count, 64, 64, 3) uint8: the first `count` images of ROOT's train.json, decoded as the trainer does."""
    names = list(read_train_labels(root / "train.json"))[:count]
    return np.stack([decode_image(root / "iclevr" / n).transpose(1, 2, 0) for n in names])


def luminance(tiles: np.ndarray) -> np.ndarray:
    """(N, 64, 64) float luminance of (N, 64, 64, 3) RGB tiles, grey levels."""
    return tiles.astype(np.float64) @ LUMA


def power_spectra(tiles: np.ndarray) -> np.ndarray:
    """(N, 64, 64) luminance power spectrum per image (its mean removed), per pixel."""
    luma = luminance(tiles)
    luma -= luma.mean(axis=(1, 2), keepdims=True)
    return np.abs(np.fft.fft2(luma)) ** 2 / luma[0].size


def band_power(tiles: np.ndarray) -> np.ndarray:
    """Mean luminance power per radial band (BANDS), each image's mean removed."""
    power = power_spectra(tiles)
    return np.array([power[:, (RADIUS >= lo) & (RADIUS < hi)].mean() for lo, hi in BANDS])


def patch_grid_peak(tiles: np.ndarray, patch: int = 4) -> float:
    """Mean luminance power at the off-axis frequencies a `patch`-pixel token grid repeats at (both coordinates
    multiples of 64 / patch, neither zero), over the mean power of the band they lie in. A pattern that repeats per
    token of the 4x4 stem shows here; the axes are left out because resizing 320x240 to 64x64 puts peaks there in
    the renders themselves."""
    power = power_spectra(tiles).mean(axis=0)
    step = TILE // patch
    grid = [(i, j) for i in range(step, TILE, step) for j in range(step, TILE, step)]
    band = power[(RADIUS >= step - 2) & (RADIUS < TILE // 2 + 2)].mean()
    return float(np.mean([power[i, j] for i, j in grid]) / band)


def fine_detail_rms(tiles: np.ndarray) -> float:
    """RMS of luminance minus its 3x3 box blur (edges replicated), grey levels, over all images and pixels."""
    luma = luminance(tiles)
    padded = np.pad(luma, ((0, 0), (1, 1), (1, 1)), mode="edge")
    blur = sum(padded[:, i : i + TILE, j : j + TILE] for i in range(3) for j in range(3)) / 9
    return float(np.sqrt(((luma - blur) ** 2).mean()))


def report(sources: dict[str, np.ndarray], command: str) -> str:
    reference = band_power(sources["renders"])
    bands = " | ".join(f"{lo}-{hi - 1}" for lo, hi in BANDS)
    lines = [
        "# Grain: luminance power per radial frequency band, over the renders' power",
        "",
        f"Made by `{command}`. Bands in cycles per 64-pixel image (32 is the finest a 64x64 image holds); 1.00 is",
        "the renders' power in that band. Fine-detail RMS: luminance minus its 3x3 box blur, grey levels.",
        "Patch-grid peak: power at the off-axis frequencies a 4x4-pixel token grid repeats at, over its band's mean",
        "(1: no peak).",
        "",
        f"| source | images | {bands} | fine-detail RMS | patch-grid peak |",
        "|---|---|" + "---|" * len(BANDS) + "---|---|",
    ]
    for name, tiles in sources.items():
        ratios = " | ".join(f"{r:.2f}" for r in band_power(tiles) / reference)
        detail, peak = fine_detail_rms(tiles), patch_grid_peak(tiles)
        lines.append(f"| {name} | {len(tiles)} | {ratios} | {detail:.2f} | {peak:.2f} |")
    return "\n".join(lines) + "\n"


def named_grid(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not Path(path).is_file():
        raise argparse.ArgumentTypeError(f"--grid {text!r}: expected NAME=PATH of an existing PNG")
    return name, Path(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a data folder (the course's layout)")
    parser.add_argument("--images", type=int, default=256, help="renders to read from --data")
    parser.add_argument(
        "--grid", type=named_grid, action="append", required=True, help="NAME=PATH, repeatable"
    )
    parser.add_argument("--out", type=Path, required=True, help="the markdown report to write")
    args = parser.parse_args()
    if not (args.data / "train.json").is_file():
        parser.error(f"--data {str(args.data)!r} has no train.json")
    if args.images < 1:
        parser.error(f"--images {args.images} is out of range: at least 1")
    if args.out.is_dir():
        parser.error(f"--out {str(args.out)!r} is a folder; name the markdown file to write")
    grids = {}
    for name, path in args.grid:
        try:
            grids[name] = grid_tiles(path)
        except (OSError, ValueError) as error:  # not an image, or no 64x64 tile in it
            parser.error(f"--grid {name}={str(path)!r} is not a bench grid of 64x64 tiles ({error})")
    sources = {"renders": render_tiles(args.data, args.images), **grids}
    text = report(sources, "python " + " ".join(sys.argv))
    atomic.write_text(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
