"""How faithful is a distilled student to its teacher? On validation label sets (drawn like the test splits from
seed 1000, never the test splits), sample the same seeds with the teacher (DDIM, twice the student's steps, guidance
1: the teacher is itself a guidance-folded student) and the student (DDIM, its own steps), and report the mean
squared difference of the images and both evaluator accuracies. Used to choose the loss weighting of a halving
without looking at test scores.

python bench/distill_fidelity.py --teacher runs/d/students/8-step --student runs/d4/model --seeds 0,1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

from fastddpm.export import open_backend  # noqa: E402
from fastddpm.conditions import multi_hot  # noqa: E402
from fastddpm.configs import SampleSettings  # noqa: E402
from fastddpm.data import synth  # noqa: E402
from fastddpm.evaluator.network import Evaluator  # noqa: E402
from fastddpm.sampling.batch import generate_split, model_defaults  # noqa: E402
from fastddpm.model import load_card  # noqa: E402
from fastddpm.runtime import device_name, resolve_device  # noqa: E402
from fastddpm.schedule import NoiseSchedule  # noqa: E402

VALIDATION_SEED = 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--teacher", type=Path, required=True)
    parser.add_argument("--student", type=Path, required=True)
    parser.add_argument("--seeds", default="0")
    args = parser.parse_args()
    device = resolve_device("auto")
    evaluator = Evaluator(None, device)
    splits = dict(zip(("val_test", "val_new_test"), synth.test_splits(VALIDATION_SEED), strict=True))
    record = {
        "teacher": str(args.teacher),
        "student": str(args.student),
        "device": device_name(device),
        "rows": [],
    }
    images = {}
    seeds = [int(seed) for seed in args.seeds.split(",")]
    student_steps = model_defaults(load_card(args.student), "ddim", None, None)[1]
    for role, folder in (("teacher", args.teacher), ("student", args.student)):
        card = load_card(folder)
        guidance = model_defaults(card, "ddim", None, None)[2]  # 1 for a guidance-folded teacher
        steps = 2 * student_steps if role == "teacher" else student_steps
        backend = open_backend("torch", folder, device)
        schedule = NoiseSchedule.from_config(card.diffusion)
        settings = SampleSettings("ddim", steps, guidance=guidance, batch_size=32)
        for split, labels in splits.items():
            for seed in seeds:
                out = generate_split(backend, schedule, labels, settings, seed, device)
                images[role, split, seed] = out
                accuracy = evaluator.accuracy(out, multi_hot(labels))
                record["rows"].append(
                    {"model": role, "steps": steps, "split": split, "seed": seed, "accuracy": accuracy}
                )
    pairs = [(split, seed) for role, split, seed in images if role == "student"]
    mse = [float((images["student", *p] - images["teacher", *p]).pow(2).mean()) for p in pairs]
    record["image_mse_student_vs_teacher"] = sum(mse) / len(mse)
    for role in ("teacher", "student"):
        rows = [r["accuracy"] for r in record["rows"] if r["model"] == role]
        record[f"{role}_accuracy_mean"] = sum(rows) / len(rows)
    print({k: v for k, v in record.items() if k != "rows"})
    save("distill_fidelity", record)


if __name__ == "__main__":
    main()
