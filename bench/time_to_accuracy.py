"""Accuracy vs images seen (and wall time) of one or more training runs, from their metrics.jsonl quick
evaluations: a PNG and a markdown table under bench/results/. Each run is labelled (say, with its processor),
since wall time differs several-fold between machines while images seen does not.

python bench/time_to_accuracy.py runs/a/metrics.jsonl:"run a (AMD EPYC)" runs/b/metrics.jsonl:"run b" --batch-size 32

A run continued or scored by another judge part-way can be split into labelled segments by step:
runs/b/metrics.jsonl@0-19135:"run b, judge 1" runs/b/metrics.jsonl@19136-:"run b continued, judge 2".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS  # noqa: E402


def quick_evaluations(path: Path, steps: range) -> list[dict]:
    records = map(json.loads, path.read_text().splitlines())
    return [r for r in records if any(k.startswith("acc_") for k in r) and r["step"] in steps]


def parse_run(spec: str) -> tuple[Path, range, str]:
    """METRICS.jsonl[@FIRST-[LAST]]:LABEL -> (path, steps kept, label); argparse turns a refusal into one line."""
    source, _, label = spec.partition(":")
    path, _, span = source.partition("@")
    first, _, last = span.partition("-")
    if not Path(path).is_file():
        raise argparse.ArgumentTypeError(f"{path!r} is not a metrics.jsonl file")
    if any(bound and not bound.isdigit() for bound in (first, last)):
        raise argparse.ArgumentTypeError(
            f"step range {span!r} is not FIRST-LAST, FIRST- or -LAST in whole steps"
        )
    return Path(path), range(int(first or 0), int(last) + 1 if last else sys.maxsize), label or path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+", type=parse_run, help="METRICS.jsonl[@FIRST-[LAST]]:LABEL")
    parser.add_argument("--batch-size", type=int, default=32, help="images per step (all runs)")
    parser.add_argument("--name", default="time_to_accuracy")
    args = parser.parse_args()
    runs = [(quick_evaluations(path, steps), path, label) for path, steps, label in args.runs]
    splits = sorted({k for evals, _, _ in runs for r in evals for k in r if k.startswith("acc_")})
    lines = ["| run | step | images seen | train minutes | " + " | ".join(s[4:] for s in splits) + " |"]
    lines.append("|---|---|---|---|" + "---|" * len(splits))
    for evals, _, label in runs:
        for r in evals:
            cells = " | ".join(f"{r.get(s, float('nan')):.3f}" for s in splits)
            lines.append(
                f"| {label} | {r['step']} | {r['step'] * args.batch_size:,} | {r['train_seconds'] / 60:.1f} | {cells} |"
            )
    RESULTS.mkdir(parents=True, exist_ok=True)
    sources = ", ".join(dict.fromkeys(f"`{path}`" for _, path, _ in runs))
    header = f"Quick evaluations (DDIM-20, one seed, guidance 2) of {sources}; batch {args.batch_size}.\n\n"
    (RESULTS / f"{args.name}.md").write_text(header + "\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    for (evals, _, label), marker in zip(runs, "os^vD", strict=False):
        for split, style in zip(splits, ("-", "--"), strict=False):
            xs = [r["step"] * args.batch_size / 1000 for r in evals if split in r]
            ax.plot(
                xs, [r[split] for r in evals if split in r], marker + style, label=f"{label}: {split[4:]}"
            )
    ax.set_xlabel("images seen (thousands)")
    ax.set_ylabel("evaluator accuracy (quick DDIM-20, seed 0)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / f"{args.name}.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
