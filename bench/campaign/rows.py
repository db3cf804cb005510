"""The GPU campaign's bench stages: one model's rows (samplers x steps x backends x precisions) on the course's
label files, saved row by row, and the check that the GPU agrees with the CPU bench of the same weights.

The CPU reference is a bench JSON in this repository (same weights, seeds 0, 1, 2, guidance 2.5, the course's
files); the agreement rule is written in bench/results/gpu/CAMPAIGN.md and applied in `cpu_agreement`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from campaign.context import BudgetStop

ROOT = Path(__file__).resolve().parents[2]
CPU_REFERENCE = ROOT / "bench" / "results" / "default-v5" / "grid-course-20261207-110514.json"
SHIPPED_ROWS = (("dpmpp", 10), ("ddim", 10), ("unipc", 10), ("dpmpp", 20), ("ddim", 50), ("ddpm", 1000))
NEW_MODEL_ROWS = COMPILE_ROWS = (("dpmpp", 10), ("ddim", 50), ("ddpm", 1000))
# the dry run's rows: a few steps each (DDPM's 1000 network calls per split take minutes on a CPU)
DRY_ROWS = {True: (("dpmpp", 2), ("ddim", 3), ("unipc", 2)), False: (("dpmpp", 2), ("ddim", 3))}
AGREEMENT_FLOOR = 0.03  # accuracy points below which a GPU-CPU difference is never called a disagreement


def course_splits(ctx, files: list[Path]) -> dict[str, list]:
    """The course's test.json / new_test.json (dry run: their first two label sets, or two drawn ones)."""
    from fastddpm.conditions import read_test_labels
    from fastddpm.data import synth

    if files:
        splits = {f.stem: read_test_labels(f) for f in files}
    elif ctx.dry_run:
        test, new_test = synth.test_splits(1000)
        splits = {"test": test, "new_test": new_test}
    else:
        raise RuntimeError(f"the course's label files are not in {ctx.labels_dir}")
    return {name: labels[:2] for name, labels in splits.items()} if ctx.dry_run else splits


def row_plan(cuda: bool, shipped: bool, dry_run: bool) -> list[tuple[str, str, int]]:
    """(backend, sampler, steps) in order of value, so a budget cut drops the least useful rows; precision is
    bf16 on CUDA (the fp32 row of the fastest configuration is added after the others)."""
    rows = DRY_ROWS[shipped] if dry_run else (SHIPPED_ROWS if shipped else NEW_MODEL_ROWS)
    plan = [("torch", sampler, steps) for sampler, steps in rows]
    # compile changes speed, not samples: its rows are the three the goals name
    return plan + ([("compile", s, n) for s, n in COMPILE_ROWS] if cuda and shipped and not dry_run else [])


def bench_model(ctx, model_dir: Path, splits: dict[str, list], shipped: bool) -> dict:
    import torch

    from fastddpm.configs import BenchConfig
    from fastddpm.evaluator.network import Evaluator
    from fastddpm.model import checkpoint_sha256, load_card
    from fastddpm.sampling.batch import model_defaults

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    reference = json.loads(CPU_REFERENCE.read_text()) if shipped else None
    guidance = (
        reference["config"]["guidance"]
        if shipped
        else model_defaults(load_card(model_dir), None, None, None)[2]
    )
    config = BenchConfig(
        splits=splits, seeds=(0,) if ctx.dry_run else (0, 1, 2), guidance=guidance, model_dir=str(model_dir)
    )
    skipped = [] if cuda else ["compile, capture and bf16: no CUDA (rows run eager fp32 on the CPU)"]
    skipped += ["DDPM-1000: left out of the dry run (1000 network calls per split)"] if ctx.dry_run else []
    sizes = {k: len(v) for k, v in splits.items()}
    ctx.save(model=str(model_dir), checkpoint_sha256=checkpoint_sha256(model_dir), guidance=guidance)
    ctx.save(seeds=list(config.seeds), splits=sizes, skipped=skipped, rows=[])
    runner, rows = RowRunner.open(ctx, config, Evaluator(None, device), device), []
    plan = [
        (b, torch.bfloat16 if cuda else torch.float32, s, n)
        for b, s, n in row_plan(cuda, shipped, ctx.dry_run)
    ]
    done = runner.run(plan, rows)
    if cuda and done == len(plan):
        # the fastest eager-backend row: an fp32 compile row would spend the budget on a second compilation
        fastest = min((r for r in rows if r["backend"] == "torch"), key=lambda r: r["latency_ms"]["median"])
        plan.append((fastest["backend"], torch.float32, fastest["sampler"], fastest["steps"]))
        done += runner.run(plan[done:], rows)
    if reference:
        ctx.save(cpu_agreement=cpu_agreement(rows, reference, checkpoint_sha256(model_dir)))
    if done < len(plan):
        raise BudgetStop(f"{done} of {len(plan)} rows before the budget ran out")
    return ctx.result


@dataclass
class RowRunner:
    """What every row of one model's bench shares: the schedule, the arithmetic columns' divisors (counted once)
    and the backends opened so far, one per (name, dtype)."""

    ctx: object
    config: object
    evaluator: object
    device: object
    schedule: object
    arithmetic: dict
    backends: dict = field(default_factory=dict)

    @classmethod
    def open(cls, ctx, config, evaluator, device) -> RowRunner:
        from fastddpm.bench.run import run_arithmetic
        from fastddpm.model import load_card
        from fastddpm.schedule import NoiseSchedule

        schedule = NoiseSchedule.from_config(load_card(config.model_dir).diffusion)
        return cls(ctx, config, evaluator, device, schedule, run_arithmetic(config.model_dir, device))

    def run(self, plan, rows: list[dict]) -> int:
        """Run the rows of `plan` while the budget lasts (each saved as it ends); returns how many ran."""
        from fastddpm.bench.run import bench_row, row_settings
        from fastddpm.export import open_backend
        from fastddpm.sampling.job import save_grid

        ctx, config, done = self.ctx, self.config, 0
        grid_folder = ctx.work / "results" / "grids"
        grid_folder.mkdir(parents=True, exist_ok=True)
        for backend_name, dtype, sampler, steps in plan:
            if ctx.time_left() < (3 if ctx.dry_run else 10):
                break
            key = (backend_name, dtype)
            if key not in self.backends:
                self.backends[key] = open_backend(backend_name, config.model_dir, self.device, dtype)
            grids, start = {}, time.perf_counter()
            settings = row_settings(config, sampler, steps)
            row = bench_row(self.backends[key], backend_name, self.schedule, settings, config, self.evaluator,
                            grids, self.arithmetic)  # fmt: skip
            name = str(dtype).removeprefix("torch.")
            rows.append(
                {
                    **dataclasses.asdict(row),
                    "dtype": name,
                    "row_seconds": round(time.perf_counter() - start, 1),
                }
            )
            for key_name, images in grids.items():
                save_grid(grid_folder / f"{ctx.name}-{key_name}-{name}.png", images)
            ctx.save(rows=rows)
            done += 1
        return done


def cpu_agreement(rows: list[dict], reference: dict, sha: str) -> dict:
    """Each GPU row with a CPU row of the same sampler and steps: do the accuracy means agree within the noise of
    the seeds? |GPU - CPU| <= max(AGREEMENT_FLOOR, 2 * sqrt((sd_gpu^2 + sd_cpu^2) / seeds)), per split."""
    if reference["environment"]["checkpoint_sha256"] != sha:
        return {"agree": None, "why": "the CPU reference was made with other weights", "cells": []}
    cpu = {(r["sampler"], r["steps"]): r["accuracy"] for r in reference["rows"]}
    cells = []
    for row in rows:
        for split, gpu in row["accuracy"].items():
            ref = cpu.get((row["sampler"], row["steps"]), {}).get(split)
            if ref is None:
                continue
            seeds = min(len(gpu["per_seed"]), len(ref["per_seed"]))
            allowed = max(AGREEMENT_FLOOR, 2 * math.sqrt((gpu["std"] ** 2 + ref["std"] ** 2) / seeds))
            cells.append({
                "backend": row["backend"], "dtype": row["dtype"], "sampler": row["sampler"], "steps": row["steps"],
                "split": split, "gpu": round(gpu["mean"], 4), "cpu": round(ref["mean"], 4),
                "allowed": round(allowed, 4), "agree": abs(gpu["mean"] - ref["mean"]) <= allowed,
            })  # fmt: skip
    return {
        "reference": str(CPU_REFERENCE.relative_to(ROOT)),
        "rule": f"|gpu - cpu| <= max({AGREEMENT_FLOOR}, 2 * sqrt((sd_gpu^2 + sd_cpu^2) / seeds)) per split",
        "agree": all(c["agree"] for c in cells) if cells else None,
        "cells": cells,
    }
