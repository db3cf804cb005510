"""Pool the per-seed accuracies of several `fastddpm bench` results of one model, judge and guidance (say seeds
0-2 in one run and 3-9 in another) into one mean ± std per row and split, as a markdown table.

    python bench/pool_seeds.py bench/results/guidance-v4/20261125-053624.json \
        bench/results/guidance-v4/seeds3-9-g2.5/20261125-060227.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fastddpm.evaluator.score import mean_spread

SAME = ("checkpoint_sha256", "evaluator_sha256", "guidance", "splits")  # what every pooled result must share


def bench_result(path: str) -> dict:
    """An argparse type: a bench result JSON (one error line and exit 2 for anything else)."""
    try:
        record = json.loads(Path(path).read_text())
        record["rows"], record["config"]  # noqa: B018 - a bench result has both
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise argparse.ArgumentTypeError(f"{path!r} is not a fastddpm bench result ({error})") from None
    return record


def fingerprint(record: dict) -> dict:
    """What must match for seeds to pool: the weights, the judge, the guidance and the label sets themselves."""
    environment, config = record.get("environment", {}), record["config"]
    return {
        "checkpoint_sha256": environment.get("checkpoint_sha256"),
        "evaluator_sha256": environment.get("evaluator_sha256"),
        "guidance": config.get("guidance"),
        "splits": config.get("splits"),
    }


def pooled(records: list[dict]) -> dict[tuple, dict[str, list[float]]]:
    """{(backend, sampler, steps): {split: every seed's accuracy, in the order given}}."""
    rows: dict[tuple, dict[str, list[float]]] = {}
    for record in records:
        for row in record["rows"]:
            key = (row["backend"], row["sampler"], row["steps"])
            for split, accuracy in row["accuracy"].items():
                rows.setdefault(key, {}).setdefault(split, []).extend(accuracy["per_seed"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("results", nargs="+", type=bench_result, help="bench result JSONs to pool")
    args = parser.parse_args()
    prints = [fingerprint(r) for r in args.results]
    for name in SAME:
        if len({json.dumps(p[name]) for p in prints}) > 1:
            parser.error(
                f"the results differ in {name}: pool runs of one model, judge, guidance and label sets"
            )
    seeds = [seed for record in args.results for seed in record["config"].get("seeds", [])]
    if len(seeds) != len(set(seeds)):
        parser.error(f"a seed appears in two results (seeds {seeds}); each seed is counted once")
    rows = pooled(args.results)
    splits = list(dict.fromkeys(split for row in rows.values() for split in row))  # in the results' order
    print("| backend | sampler | steps | seeds | " + " | ".join(splits) + " |")
    print("|---|---|---|---|" + "---|" * len(splits))
    for (backend, sampler, steps), row in rows.items():
        cells = ["{:.3f} ± {:.3f}".format(*mean_spread(row[s])) if s in row else "-" for s in splits]
        seeds = max(len(v) for v in row.values())
        print(f"| {backend} | {sampler} | {steps} | {seeds} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
