"""Recipe ablation (issue 23): train each named variant (bench/recipe_variants.py) from scratch for the same
training time, then score its EMA model on validation label sets (bench/recipe_scoring.py) and write
bench/results/recipe/results.json, results.md and results.png. Rules and budget: bench/results/recipe/PLAN.md.

    python bench/recipe_ablation.py --data /work/data/iclevr --runs-dir /work/runs/recipe --minutes 22

Each variant trains with `fastddpm train --minutes M --eval-minutes 0 --out RUNS/NAME OPTIONS`. Every
--curve-minutes of training the runner stops it (SIGTERM: the trainer checkpoints and writes its EMA model),
scores a curve point and resumes it with --resume, so the curve costs a few seconds of sampling per point and
no change to the run. Rerunning the same command continues interrupted variants and skips finished ones (their
state is RUNS/NAME/ablation.json); results.json keeps the entries of variants not run this time.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipe_report import write_results  # noqa: E402
from recipe_scoring import Scorer, curve_value  # noqa: E402
from recipe_variants import FIRST_VARIANTS, Variant, variant  # noqa: E402

from fastddpm import atomic  # noqa: E402
from fastddpm.training.checkpoint import CHECKPOINT_NAME  # noqa: E402
from fastddpm.data.reader import check_root  # noqa: E402
from fastddpm.errors import UsageError  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "recipe"
STATE_NAME = "ablation.json"
STOPPED = 143  # the trainer's exit status after SIGTERM (checkpoint and model written)


def positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is out of range: a finite number > 0")
    return value


def variant_list(text: str) -> list[Variant]:
    try:
        names = [n.strip() for n in text.split(",") if n.strip()]
        if not names:
            raise ValueError("--variants: give at least one name")
        return [variant(n) for n in dict.fromkeys(names)]
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def read_state(folder: Path) -> dict:
    path = folder / STATE_NAME
    return json.loads(path.read_text()) if path.is_file() else {"curve": []}


def trained_seconds(folder: Path) -> float:
    """Training seconds of the run's last log line (0 before its first)."""
    path = folder / "metrics.jsonl"
    if not path.is_file():
        return 0.0
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return max((r["train_seconds"] for r in lines if "train_seconds" in r), default=0.0)


class Trainer:
    """One variant's `fastddpm train` process, started and stopped by the runner (on core and thread settings
    it inherits from the runner's)."""

    def __init__(self, variant: Variant, folder: Path, args: argparse.Namespace) -> None:
        self.variant, self.folder, self.args = variant, folder, args
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        resume = (self.folder / CHECKPOINT_NAME).is_file()
        if not resume and self.folder.exists():  # a start that died before its first checkpoint: nothing kept
            for name in ("config.json", "metrics.jsonl"):
                (self.folder / name).unlink(missing_ok=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "fastddpm",
            "train",
            "--data",
            str(self.args.data),
            "--out",
            str(self.folder),
        ]
        # --epochs far beyond the budget: the time budget alone ends the run and shapes its LR schedule
        cmd += [
            "--minutes",
            str(self.args.minutes),
            "--epochs",
            "1000",
            "--eval-minutes",
            "0",
            "--device",
            "cpu",
        ]
        cmd += [*self.variant.train_args(), *(["--resume"] if resume else [])]
        log = open(self.folder / "train.log", "a")  # noqa: SIM115 - the child holds it; closed on wait
        log.write(" ".join(cmd) + "\n")
        log.flush()
        self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def wait(self, stop_at_seconds: float | None) -> int:
        """Wait for the end of the run, or stop it once it has trained `stop_at_seconds`; its exit status."""
        while self.process.poll() is None:
            if stop_at_seconds is not None and trained_seconds(self.folder) >= stop_at_seconds:
                self.stop()
            time.sleep(2)
        return self.process.returncode

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait()


def train_variant(trainer: Trainer, scorer: Scorer, state: dict, curve_minutes: float) -> None:
    """Train to the end of the budget, stopping for a curve point every `curve_minutes` (0: none)."""
    budget = trainer.args.minutes * 60
    step = curve_minutes * 60
    points = [step * k for k in range(1, int(budget / step) + 1) if step * k < budget - 30] if step else []
    while True:
        done = trained_seconds(trainer.folder)
        pending = [p for p in points if p > done + 15]
        trainer.start()
        status = trainer.wait(pending[0] if pending else None)
        if status == 0:
            return
        if status != STOPPED or not pending:
            raise RuntimeError(f"fastddpm train exited with {status}; see {trainer.folder / 'train.log'}")
        model = trainer.folder / "model"
        info = json.loads((model / "config.json").read_text())["info"]
        point = {"train_seconds": info["train_seconds"], "images_seen": info["images_seen"]}
        state["curve"].append({**point, "accuracy": scorer.curve_point(model)})
        atomic.write_json(trainer.folder / STATE_NAME, state)
        print(f"{trainer.variant.name}: {point} -> {state['curve'][-1]['accuracy']:.3f}", flush=True)


def run_variant(variant: Variant, args: argparse.Namespace, scorer: Scorer) -> dict:
    """Train (or continue) and score one variant; its state, also saved as RUNS/NAME/ablation.json."""
    folder = args.runs_dir / variant.name
    state = read_state(folder)
    if state.get("final"):
        print(f"{variant.name}: finished earlier, kept", flush=True)
        return state
    state.update(name=variant.name, options=variant.options, seed=variant.seed, minutes=args.minutes)
    trainer = Trainer(variant, folder, args)
    previous = signal.signal(signal.SIGTERM, lambda *_: (trainer.stop(), sys.exit(STOPPED)))
    try:
        train_variant(trainer, scorer, state, args.curve_minutes)
    finally:
        signal.signal(signal.SIGTERM, previous)
    model = folder / "model"
    state["info"] = json.loads((model / "config.json").read_text())["info"]
    state["run_config"] = json.loads((folder / "config.json").read_text())
    print(f"{variant.name}: trained, scoring", flush=True)
    state["final"] = scorer.full(model)
    state["curve"].append(
        {
            "train_seconds": state["info"]["train_seconds"],
            "images_seen": state["info"]["images_seen"],
            "accuracy": curve_value(state["final"]["cells"]),
        }
    )
    atomic.write_json(folder / STATE_NAME, state)
    return state


def parse_args() -> argparse.Namespace:
    """Every option checked before any work: a bad one ends with one error line and exit 2."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variants", type=variant_list, default=",".join(FIRST_VARIANTS))
    parser.add_argument("--minutes", type=positive, default=22.0, help="training minutes per variant")
    parser.add_argument(
        "--curve-minutes", type=float, default=5.0, help="minutes between curve points; 0: none"
    )
    parser.add_argument("--runs-dir", type=Path, default=Path("/work/runs/recipe"))
    parser.add_argument("--data", type=Path, default=Path("/work/data/iclevr"))
    parser.add_argument("--evaluator", type=Path, default=None, help="default: the shipped stand-in")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for results.json / .md / .png")
    args = parser.parse_args()
    if not (args.curve_minutes >= 0 and args.curve_minutes != float("inf")):
        parser.error(f"--curve-minutes {args.curve_minutes} is out of range: a finite number >= 0 (0: none)")
    for option, folder in (("--runs-dir", args.runs_dir), ("--out", args.out)):
        if folder.exists() and not folder.is_dir():
            parser.error(f"{option} {str(folder)!r} is a file, not a folder")
    for item in args.variants:  # a longer budget on a started run would be another recipe
        started = read_state(args.runs_dir / item.name).get("minutes", args.minutes)
        if started != args.minutes:
            parser.error(
                f"--minutes {args.minutes}: {item.name} in {str(args.runs_dir)!r} was started with --minutes "
                f"{started}; rerun with that or choose another --runs-dir"
            )
    try:
        check_root(args.data)
        args.scorer = Scorer(args.evaluator, "cpu")
    except UsageError as error:
        parser.error(str(error))
    return args


def main() -> None:
    args = parse_args()
    for item in args.variants:
        state = run_variant(item, args, args.scorer)
        write_results(args.out, state)


if __name__ == "__main__":
    main()
