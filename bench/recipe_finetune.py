"""Fine-tunes of the shipped default (issue 23, bench/results/recipe/PLAN.md): score model folders with the recipe
ablation's scoring (bench/recipe_scoring.py: validation draws 1000-1002, DPM-Solver++-10 and DDIM-10, guidance
2.5, seeds 0-2) and apply the plan's rule against the shipped default.

    python bench/recipe_finetune.py score --model default=checkpoints/default --out /tmp/default.json
    python bench/recipe_finetune.py score --model ft-uniform=/work/runs/ft-uniform/model --out /tmp/ft-uniform.json
    python bench/recipe_finetune.py report /tmp/default.json /tmp/ft-uniform.json --out bench/results/recipe/finetune

`score` can run once per core, each writing its own file; `report` merges them into finetune.json / finetune.md.
The rule: the better fine-tune replaces the default only if ahead of it by max(0.02, the larger of the two
spreads), a spread being the std over sampling seeds of the per-seed mean over all cells.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipe_scoring import SAMPLERS, Scorer, summary  # noqa: E402

from fastddpm import atomic  # noqa: E402
from fastddpm.model import checkpoint_sha256, load_card  # noqa: E402

DEFAULT_NAME = "default"
MARGIN = 0.02


def named_model(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(
            f"--model {text!r} must be NAME=FOLDER, e.g. default=checkpoints/default"
        )
    return name, Path(path)


def score(models: list[tuple[str, Path]], out: Path, evaluator: Path | None) -> None:
    scorer = Scorer(evaluator, "cpu")
    record = {}
    for name, folder in models:
        info = load_card(folder).info
        result = scorer.full(folder)
        record[name] = {
            "folder": str(folder),
            "sha256": checkpoint_sha256(folder),
            "images_seen": info.images_seen if info else None,
            "init": info.init if info else None,
            "summary": summary(result["cells"]),
            **result,
        }
        print(f"{name}: {record[name]['summary']['all']} in {result['seconds']} s", flush=True)
    atomic.write_json(out, record)


def verdict(record: dict) -> str:
    """The plan's rule, applied to the merged record."""
    base_mean, base_spread = record[DEFAULT_NAME]["summary"]["all"]
    tunes = {name: entry["summary"]["all"] for name, entry in record.items() if name != DEFAULT_NAME}
    best = max(tunes, key=lambda name: tunes[name][0])
    mean, spread = tunes[best]
    margin = max(MARGIN, base_spread, spread)
    lead = mean - base_mean
    outcome = (
        "replaces the shipped default" if lead > margin else "does not replace the shipped default (a tie)"
    )
    return f"best fine-tune: {best}, {lead:+.3f} against the shipped default, margin {margin:.3f}: {outcome}"


def report(files: list[Path], out: Path) -> None:
    record = {}
    for path in files:
        record.update(json.loads(path.read_text()))
    if DEFAULT_NAME not in record or len(record) < 2:
        raise SystemExit(f"report needs an entry named {DEFAULT_NAME!r} and at least one fine-tune")
    lines = [
        "# Fine-tunes of the shipped default: validation scores",
        "",
        "Draws 1000-1002 (val / new_val), 10 steps, guidance 2.5, sampling seeds 0-2, shipped evaluator; "
        "mean ± std over seeds of the per-seed mean. Made by `python bench/recipe_finetune.py report ...` "
        "(commands in the script's docstring).",
        "",
        "| model | images seen | all | " + " | ".join(f"{s}-10" for s in SAMPLERS) + " | scoring s |",
        "|---|---|---|" + "---|" * len(SAMPLERS) + "---|",
    ]
    for name, entry in record.items():
        cols = [f"{m:.3f} ± {s:.3f}" for m, s in (entry["summary"][k] for k in ("all", *SAMPLERS))]
        lines.append(f"| {name} | {entry['images_seen']} | " + " | ".join(cols) + f" | {entry['seconds']} |")
    lines += ["", verdict(record), ""]
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_json(out / "finetune.json", record)
    atomic.write_text(out / "finetune.md", "\n".join(lines))
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    score_parser = commands.add_parser("score")
    score_parser.add_argument("--model", type=named_model, action="append", required=True)
    score_parser.add_argument("--out", type=Path, required=True)
    score_parser.add_argument("--evaluator", type=Path, default=None, help="default: the shipped stand-in")
    report_parser = commands.add_parser("report")
    report_parser.add_argument("files", type=Path, nargs="+")
    report_parser.add_argument("--out", type=Path, required=True, help="folder for finetune.json / .md")
    args = parser.parse_args()
    if args.command == "score" and (args.out.is_dir() or not args.out.parent.is_dir()):
        parser.error(f"--out {str(args.out)!r} must be a file name in an existing folder")
    if args.command == "score":
        score(args.model, args.out, args.evaluator)
    else:
        report(args.files, args.out)


if __name__ == "__main__":
    main()
