"""`fastddpm bench`: samplers x steps x backends side by side, on both test splits.

Each configuration is warmed up once (compilation and CUDA-graph capture happen there), then every split is
sampled with every seed; each such run generates one whole split and is timed (CUDA events on GPU), so the latency
columns are medians / p90 over (splits x seeds) runs and the accuracy columns are mean and spread over the seeds,
scored by the evaluator in one call per split as the course does. Each row also gives the network's GFLOP per
image and call, the GFLOP/s it achieved and, on a CPU, that rate as a fraction of a 2048-cubed fp32 sgemm timed
once in the same run (the practical roofline). The DDPM-1000 reference row is always included
unless skipped. Results: a rich table, bench/results/<stamp>.json (+ .md, accuracy-vs-latency plot, sample grids).
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from fastddpm.atomic import file_sha256
from fastddpm.backends import Backend, check_backend
from fastddpm.bench.flops import SGEMM_SIZE, model_gflop_per_image_call, sgemm_gflops
from fastddpm.conditions import LabelList, multi_hot, read_test_labels
from fastddpm.configs import BenchConfig
from fastddpm.errors import UsageError
from fastddpm.evaluator.network import Evaluator
from fastddpm.configs import SampleSettings
from fastddpm.sampling.batch import check_settings, generate_split
from fastddpm.model import checkpoint_sha256, load_card
from fastddpm.pipeline import Pipeline
from fastddpm.runtime import device_name, latency_stats, resolve_device, resolve_dtype, timed_call
from fastddpm.sampling.samplers import SAMPLERS, rows_per_image, sampler_spec
from fastddpm.schedule import NoiseSchedule
from fastddpm.evaluator.score import mean_spread

GPU_SEEDS, CPU_SEEDS = (0, 1, 2), (0,)  # sampling seeds when none are given, fixed before any score is seen


@dataclass
class BenchRow:
    backend: str
    sampler: str
    steps: int
    latency_ms: dict  # median, p90, runs
    images_per_second: float
    peak_memory_mib: float | None
    accuracy: dict  # split -> {mean, std, per_seed}
    warmup_seconds: float
    network_calls: int  # per split run
    rows_per_call: int  # the chunk's images, twice under guidance
    gflop_per_image_call: float  # the network on one row (torch's FLOP counter)
    achieved_gflops: float  # network_calls * rows_per_call * gflop_per_image_call / median latency
    sgemm_fraction: float | None  # achieved / the run's sgemm GFLOP/s (CPU only)


def bench_rows(config: BenchConfig) -> list[tuple[str, str, int]]:
    """(backend, sampler, steps) rows, the reference first; every name, count and setting checked (the step
    counts' upper bounds once the schedule is known, in run_bench)."""
    specs = [sampler_spec(name) for name in config.samplers]
    for name in config.backends:
        check_backend(name)
    if not config.splits:
        raise UsageError(
            "no splits to score: give --labels-file or a --data folder with test.json / new_test.json"
        )
    if not config.seeds:
        raise UsageError("--seeds needs at least one seed")
    reference = next(s for s in SAMPLERS.values() if s.reference)
    rows = (
        [(b, reference.name, reference.default_steps) for b in config.backends[:1]]
        if config.reference
        else []
    )
    grid = [
        (b, s.name, n)
        for b in config.backends
        for s in specs
        for n in ((s.default_steps,) if s.reference else config.steps)
    ]
    rows = list(dict.fromkeys(rows + grid))
    for _, sampler, steps in rows:
        check_settings(row_settings(config, sampler, steps))
    return rows


def row_settings(config: BenchConfig, sampler: str, steps: int) -> SampleSettings:
    """A row's settings: --eta applies to the samplers that take it (DDIM); one chunk holds the largest split."""
    eta = config.eta if sampler_spec(sampler).uses_eta else 0.0
    return SampleSettings(
        sampler,
        steps,
        eta,
        config.guidance,
        batch_size=max(len(s) for s in config.splits.values()),
        guidance_interval=config.guidance_interval,
        spacing=config.spacing,
    )


def resolve_splits(
    labels_files: list[Path] | None, data: Path | None, model_dir: str | Path
) -> dict[str, list[LabelList]]:
    """The splits to score: label files (named by their stem), a data folder's test.json / new_test.json, or by
    default the test splits of the data set the model was trained on, re-drawn from the render seed in its card."""
    if labels_files:
        stems = [f.stem for f in labels_files]
        if len(set(stems)) < len(stems):
            raise UsageError(f"--labels-file names must differ (each names a split); got {stems}")
        return {f.stem: read_test_labels(f) for f in labels_files}
    if data:
        return {n: read_test_labels(data / f"{n}.json") for n in ("test", "new_test")}
    from fastddpm.data import synth

    render = load_card(model_dir).info.render
    if render is None or render.seed is None or render.labels_sha256:
        raise UsageError(
            f"{model_dir}'s card names no rendered data set; pass --labels-file FILE (repeatable) or --data DIR"
        )
    test, new_test = synth.test_splits(render.seed)
    return {"test": test, "new_test": new_test}


def default_seeds(device: str) -> tuple[int, ...]:
    """0, 1, 2 on a GPU; 0 on a CPU (a split takes seconds there, not milliseconds)."""
    on_gpu = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    return GPU_SEEDS if on_gpu else CPU_SEEDS


def bench_row(
    backend,
    backend_name: str,
    schedule: NoiseSchedule,
    settings: SampleSettings,
    config: BenchConfig,
    evaluator: Evaluator,
    grids: dict,
    arithmetic: dict,
) -> BenchRow:
    device = backend.device
    first = next(iter(config.splits.values()))
    capture = config.capture and backend.capturable and device.type == "cuda"
    start = time.perf_counter()
    # Warm-up: with capture it records the graph (and compiles), so it runs the configuration itself; without,
    # one DDIM step is enough to initialise everything and saves minutes of DDPM-1000 on a CPU.
    warm = settings if capture else dataclasses.replace(settings, sampler="ddim", steps=1, eta=0.0)
    generate_split(backend, schedule, first, warm, config.seeds[0], device, capture)
    warmup = time.perf_counter() - start
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times, accuracy = [], {}
    for split, labels in config.splits.items():
        per_seed = []
        for seed in config.seeds:
            run = functools.partial(
                generate_split, backend, schedule, labels, settings, seed, device, capture
            )
            images, ms = timed_call(run, device)
            times.append(ms)
            per_seed.append(evaluator.accuracy(images, multi_hot(labels)))
            if seed == config.seeds[0]:
                grids[f"{backend_name}-{settings.sampler}-{settings.steps}-{split}"] = images
        mean, std = mean_spread(per_seed)
        accuracy[split] = {"mean": mean, "std": std, "per_seed": per_seed}
    latency = latency_stats(times)
    return BenchRow(
        backend=backend_name,
        sampler=settings.sampler,
        steps=settings.steps,
        latency_ms=latency,
        images_per_second=len(first) / (latency["median"] / 1000),
        peak_memory_mib=torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        accuracy=accuracy,
        warmup_seconds=round(warmup, 2),
        **row_arithmetic(settings, latency["median"], **arithmetic),
    )


def run_arithmetic(model_dir: str | Path, device: torch.device) -> dict:
    """What every row's arithmetic columns divide by, measured once per run: the network's GFLOP per image call
    and, on a CPU, the sgemm roofline (None elsewhere)."""
    return {
        "gflop_per_image_call": model_gflop_per_image_call(model_dir),
        "sgemm_gflops": sgemm_gflops() if device.type == "cpu" else None,
    }


def row_arithmetic(
    settings: SampleSettings, median_ms: float, gflop_per_image_call: float, sgemm_gflops: float | None
) -> dict:
    """A row's network work per split run and the rate it reached: every chunk is padded to batch_size rows
    (one chunk holds the largest split), and guidance doubles them."""
    calls = sampler_spec(settings.sampler).network_calls(settings.steps)
    rows = settings.batch_size * rows_per_image(settings.guidance)
    achieved = calls * rows * gflop_per_image_call / (median_ms / 1000)
    return {
        "network_calls": calls,
        "rows_per_call": rows,
        "gflop_per_image_call": gflop_per_image_call,
        "achieved_gflops": achieved,
        "sgemm_fraction": achieved / sgemm_gflops if sgemm_gflops else None,
    }


def environment(config: BenchConfig, device: torch.device, evaluator: Evaluator, arithmetic: dict) -> dict:
    import platform

    return {
        "threads": torch.get_num_threads(),
        "gflop_per_image_call": arithmetic["gflop_per_image_call"],
        # the practical fp32 roofline of this CPU, measured in this run (None on a GPU)
        "sgemm_gflops": arithmetic["sgemm_gflops"],
        "sgemm_size": SGEMM_SIZE,
        "device": device_name(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "checkpoint": config.model_dir,
        "checkpoint_sha256": checkpoint_sha256(config.model_dir),
        "evaluator": config.evaluator or "checkpoints/evaluator.pth (stand-in)",
        # the judge changes the numbers: its hash says which one scored them
        "evaluator_sha256": file_sha256(evaluator.path),
    }


@dataclass
class BenchPlan:
    """A bench run with everything it needs checked and opened: the rows, the device, the evaluator, the
    schedule and every backend."""

    config: BenchConfig
    rows: list[tuple[str, str, int]]
    device: torch.device
    evaluator: Evaluator
    schedule: NoiseSchedule
    backends: dict[str, Backend]


def plan_bench(config: BenchConfig) -> BenchPlan:
    """Check every row's settings and step count, the device, dtype and evaluator, and open every backend (its
    package, device and export), so that nothing is refused after the first row has run."""
    rows = bench_rows(config)
    device = resolve_device(config.device)
    resolve_dtype(config.dtype, device)
    evaluator = Evaluator(config.evaluator, device)
    schedule = NoiseSchedule.from_config(load_card(config.model_dir).diffusion)
    for _, sampler, steps in rows:  # step counts and the guidance interval against the schedule's length
        check_settings(row_settings(config, sampler, steps), schedule)
    backends = {
        name: Pipeline.from_pretrained(
            config.model_dir, config.device, name, config.dtype, config.export_dir
        ).backend
        for name in config.backends
    }
    return BenchPlan(config, rows, device, evaluator, schedule, backends)


def run_bench(plan: BenchPlan, command: str, progress: Callable[[int, int, str], None] | None = None) -> dict:
    """Run every configuration; returns the stamped report (config, environment, rows, command) and the seed-0
    sample grids."""
    config, rows_todo = plan.config, plan.rows
    rows, grids = [], {}
    arithmetic = run_arithmetic(config.model_dir, plan.device)
    for i, (backend_name, sampler, steps) in enumerate(rows_todo):
        if progress:
            progress(i, len(rows_todo), f"{backend_name} {sampler}-{steps}")
        settings = row_settings(config, sampler, steps)
        backend = plan.backends[backend_name]
        rows.append(
            bench_row(
                backend, backend_name, plan.schedule, settings, config, plan.evaluator, grids, arithmetic
            )
        )
    if progress:
        progress(len(rows_todo), len(rows_todo), "done")
    return {
        "config": dataclasses.asdict(config),
        "environment": environment(config, plan.device, plan.evaluator, arithmetic),
        "rows": [dataclasses.asdict(r) for r in rows],
        "grids": grids,
        "default_steps": {name: spec.default_steps for name, spec in SAMPLERS.items()},
        "stamp": datetime.datetime.now().strftime("%Y%m%d-%H%M%S"),
        "command": command,
        "split_size": max(len(v) for v in config.splits.values()),
    }
