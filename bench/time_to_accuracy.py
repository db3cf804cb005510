"""Accuracy vs training wall time of a run (its metrics.jsonl): a PNG and a markdown table under bench/results/.

python bench/time_to_accuracy.py runs/default/metrics.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("metrics", type=Path)
    parser.add_argument("--name", default="time_to_accuracy")
    args = parser.parse_args()
    records = [json.loads(line) for line in args.metrics.read_text().splitlines()]
    evals = [r for r in records if any(k.startswith("acc_") for k in r)]
    splits = sorted({k for r in evals for k in r if k.startswith("acc_")})
    lines = ["| step | train minutes | " + " | ".join(splits) + " |", "|---|---|" + "---|" * len(splits)]
    for r in evals:
        lines.append(
            f"| {r['step']} | {r['train_seconds'] / 60:.1f} | "
            + " | ".join(f"{r.get(s, float('nan')):.3f}" for s in splits)
            + " |"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.md").write_text(
        f"Quick evaluations of `{args.metrics}` (DDIM, one seed).\n\n" + "\n".join(lines) + "\n"
    )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for split in splits:
        ax.plot(
            [r["train_seconds"] / 60 for r in evals if split in r],
            [r[split] for r in evals if split in r],
            "o-",
            label=split[4:],
        )
    ax.set_xlabel("training wall time (minutes, evaluation excluded)")
    ax.set_ylabel("evaluator accuracy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / f"{args.name}.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
