"""bench/grain_spectrum.py: it reads back the tiles of a bench grid, and its measures tell grain from smooth images."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from grain_spectrum import band_power, fine_detail_rms, grid_tiles, patch_grid_peak  # noqa: E402

from fastddpm.data.reader import to_model_range  # noqa: E402
from fastddpm.sampling.job import save_grid  # noqa: E402


def test_grid_tiles_are_the_saved_images_and_a_short_row_is_dropped(tmp_path):
    images = torch.randint(
        1, 256, (10, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    save_grid(tmp_path / "grid.png", to_model_range(images))
    tiles = grid_tiles(tmp_path / "grid.png")
    assert tiles.shape == (10, 64, 64, 3)
    assert np.array_equal(tiles, images.permute(0, 2, 3, 1).numpy())


def test_noise_has_more_fine_power_and_detail_than_a_smooth_image():
    rng = np.random.default_rng(0)
    wave = 128 + 40 * np.sin(2 * np.pi * np.arange(64) / 64)  # periodic, so the FFT sees no edge
    smooth = np.broadcast_to(wave[None, :, None, None], (4, 64, 64, 3)) + rng.normal(0, 0.5, (4, 64, 64, 1))
    grainy = smooth + rng.normal(0, 8, (4, 64, 64, 1))
    top = band_power(grainy)[-1] / band_power(smooth)[-1]
    assert top > 50
    assert fine_detail_rms(grainy) > 10 * fine_detail_rms(smooth)
    assert fine_detail_rms(np.full((1, 64, 64, 3), 128.0)) < 1e-9


def test_a_pattern_repeating_every_4x4_pixels_peaks_on_the_patch_grid_and_noise_does_not():
    rng = np.random.default_rng(1)
    noise = 128 + rng.normal(0, 8, (8, 64, 64, 1)).repeat(3, axis=3)
    token = rng.normal(0, 8, (4, 4))  # one 4x4 pattern, the same in every token
    tiled = noise + np.tile(token, (16, 16))[None, :, :, None]
    assert patch_grid_peak(tiled) > 5
    assert 0.5 < patch_grid_peak(noise) < 2


@pytest.mark.parametrize("bad", ["grid", "out"])
def test_a_file_that_is_no_grid_or_an_out_folder_is_one_line_and_exit_2(tmp_path, bad):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("not an image")
    grid = tmp_path / ("notes.txt" if bad == "grid" else "grid.png")
    if bad == "out":
        save_grid(grid, torch.zeros(2, 3, 64, 64))
    out = tmp_path if bad == "out" else tmp_path / "report.md"
    cmd = [sys.executable, str(BENCH / "grain_spectrum.py"), "--data", str(tmp_path / "data"), "--grid"]
    result = subprocess.run([*cmd, f"g={grid}", "--out", str(out)], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("grain_spectrum.py: error: --" + bad)
    assert not (tmp_path / "report.md").exists()
