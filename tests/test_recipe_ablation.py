"""bench/recipe_ablation.py: its variants are `fastddpm train` commands, and a bad option is one line and exit 2."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from recipe_variants import VARIANT_OPTIONS, variant  # noqa: E402


def test_variants_are_train_options_and_a_seed_suffix_repeats_one():
    assert variant("baseline").train_args() == ["--seed", "0"]
    repeat = variant("patch2-s1")
    assert repeat.options == VARIANT_OPTIONS["patch2"] and repeat.seed == 1
    assert repeat.train_args()[-2:] == ["--seed", "1"] and "--patch" in repeat.train_args()
    assert "--hflip" in variant("hflip").train_args()
    with pytest.raises(ValueError, match="unknown variant 'patch3'"):
        variant("patch3")


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, message",
    [
        (["--variants", "baseline,nope"], "unknown variant 'nope'"),
        (["--variants", ","], "give at least one name"),
        (["--minutes", "0"], "--minutes: 0 is out of range"),
        (["--minutes", "ten"], "expected a number"),
        (["--curve-minutes", "-1"], "--curve-minutes -1.0 is out of range"),
        (["--data", "nowhere"], "does not exist"),
    ],
)
def test_bad_options_exit_2_with_one_line(tmp_path, args, message):
    env = {**os.environ, "PYTHONPATH": str(BENCH.parent), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(BENCH / "recipe_ablation.py"), "--runs-dir", str(tmp_path / "runs"), *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "runs").exists()  # nothing started


def test_the_eps_uniform_variant_turns_the_min_snr_weight_off():
    assert variant("eps-uniform").train_args() == ["--min-snr-gamma", "0", "--seed", "0"]
