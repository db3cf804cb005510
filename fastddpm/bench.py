"""`fastddpm bench`: samplers x steps x backends side by side, on both test splits.

Each configuration is warmed up once (compilation and CUDA-graph capture happen there), then every split is
sampled with every seed; each such run generates one whole split and is timed (CUDA events on GPU), so the latency
columns are medians / p90 over (splits x seeds) runs and the accuracy columns are mean and spread over the seeds,
scored by the evaluator in one call per split as the course does. The DDPM-1000 reference row is always included
unless skipped. Results: a rich table, bench/results/<stamp>.json (+ .md, accuracy-vs-latency plot, sample grids).
"""

from __future__ import annotations

import dataclasses
import functools
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fastddpm.backends import check_backend, make_backend
from fastddpm.conditions import LabelList, multi_hot
from fastddpm.errors import UsageError
from fastddpm.evaluator import Evaluator
from fastddpm.export import checkpoint_sha256
from fastddpm.defaults import DEFAULT_GUIDANCE
from fastddpm.generate import SampleSettings
from fastddpm.model import load_card
from fastddpm.samplers import DEFAULT_STEPS, check_sampler
from fastddpm.schedule import NoiseSchedule
from fastddpm.scoring import mean_spread, sample_split


@dataclass(frozen=True)
class BenchConfig:
    samplers: tuple[str, ...] = ("ddim",)
    steps: tuple[int, ...] = (50,)
    backends: tuple[str, ...] = ("torch",)
    splits: dict[str, list] = field(default_factory=dict)  # split name -> label lists
    seeds: tuple[int, ...] = (0, 1, 2)  # sampling seeds, fixed before any score is seen
    guidance: float = DEFAULT_GUIDANCE
    eta: float = 0.0
    reference: bool = True  # include the DDPM-1000 row
    model_dir: str = "checkpoints/default"
    evaluator: str | None = None  # None: the shipped stand-in
    device: str = "auto"
    dtype: str = "auto"
    capture: bool = True  # CUDA only: one graph per denoising run
    export_dir: str = "export"

    def configurations(self) -> list[tuple[str, str, int]]:
        """(backend, sampler, steps) rows, the reference first."""
        for name in self.samplers:
            check_sampler(name)
        for name in self.backends:
            check_backend(name)
        if not self.splits:
            raise UsageError(
                "no splits to score: give --labels-file or a --data folder with test.json / new_test.json"
            )
        rows = [(b, "ddpm", 1000) for b in self.backends[:1]] if self.reference else []
        rows += [
            (b, s, n)
            for b in self.backends
            for s in self.samplers
            for n in ((1000,) if s == "ddpm" else self.steps)
        ]
        return list(dict.fromkeys(rows))


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


class Timer:
    """Wall time of one call, with CUDA events on a GPU (the device is synchronised at the end)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def __call__(self, fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float]:
        if not self.cuda:
            start = time.perf_counter()
            out = fn()
            return out, (time.perf_counter() - start) * 1000
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        out = fn()
        end.record()
        torch.cuda.synchronize()
        return out, begin.elapsed_time(end)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def bench_row(
    backend,
    backend_name: str,
    schedule,
    splits: dict[str, list[LabelList]],
    settings: SampleSettings,
    config: BenchConfig,
    evaluator: Evaluator,
    device: torch.device,
    grids: dict,
) -> BenchRow:
    timer = Timer(device)
    first = next(iter(splits.values()))
    capture = config.capture and device.type == "cuda"
    start = time.perf_counter()
    # Warm-up: with capture it records the graph (and compiles), so it runs the configuration itself; without,
    # one DDIM step is enough to initialise everything and saves minutes of DDPM-1000 on a CPU.
    warm = settings if capture else dataclasses.replace(settings, sampler="ddim", steps=1, eta=0.0)
    sample_split(backend, schedule, first, warm, config.seeds[0], device, capture)
    warmup = time.perf_counter() - start
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times, accuracy = [], {}
    for split, labels in splits.items():
        per_seed = []
        for seed in config.seeds:
            run = functools.partial(sample_split, backend, schedule, labels, settings, seed, device, capture)
            images, ms = timer(run)
            times.append(ms)
            per_seed.append(evaluator.accuracy(images, multi_hot(labels)))
            if seed == config.seeds[0]:
                grids[f"{backend_name}-{settings.sampler}-{settings.steps}-{split}"] = images
        mean, std = mean_spread(per_seed)
        accuracy[split] = {"mean": mean, "std": std, "per_seed": per_seed}
    median = statistics.median(times)
    return BenchRow(
        backend=backend_name,
        sampler=settings.sampler,
        steps=settings.steps,
        latency_ms={"median": median, "p90": percentile(times, 0.9), "runs": len(times)},
        images_per_second=len(first) / (median / 1000),
        peak_memory_mib=torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        accuracy=accuracy,
        warmup_seconds=round(warmup, 2),
    )


def default_splits(model_dir: str | Path) -> dict[str, list[LabelList]]:
    """The test splits of the data set the model was trained on, re-drawn from the render seed in its card."""
    from fastddpm.data import synth

    card = load_card(model_dir)
    render = card.info.get("render") or {}
    if "seed" not in render or render.get("labels_sha256"):
        raise UsageError(
            f"{model_dir}'s card names no rendered data set; pass --labels-file FILE (repeatable) or --data DIR"
        )
    test, new_test = synth.test_splits(int(render["seed"]))
    return {"test": test, "new_test": new_test}


def environment(config: BenchConfig, device: torch.device) -> dict:
    return {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "checkpoint": config.model_dir,
        "checkpoint_sha256": checkpoint_sha256(config.model_dir),
        "evaluator": config.evaluator or "checkpoints/evaluator.pth (stand-in)",
    }


def run_bench(config: BenchConfig, progress: Callable[[int, int, str], None] | None = None) -> dict:
    """Run every configuration; returns the report (config, environment, rows) and the seed-0 sample grids."""
    from fastddpm.sample import resolve_device, resolve_dtype

    rows_todo = config.configurations()
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    splits = config.splits
    evaluator = Evaluator(config.evaluator, device)
    card = load_card(config.model_dir)
    schedule = NoiseSchedule.from_config(card.diffusion)
    backends, rows, grids = {}, [], {}
    for i, (backend_name, sampler, steps) in enumerate(rows_todo):
        if progress:
            progress(i, len(rows_todo), f"{backend_name} {sampler}-{steps}")
        if backend_name not in backends:
            backends[backend_name] = make_backend(
                backend_name, config.model_dir, device, dtype, config.export_dir
            )
        settings = SampleSettings(
            sampler, steps, config.eta, config.guidance, batch_size=max(len(s) for s in splits.values())
        )
        rows.append(
            bench_row(
                backends[backend_name],
                backend_name,
                schedule,
                splits,
                settings,
                config,
                evaluator,
                device,
                grids,
            )
        )
    if progress:
        progress(len(rows_todo), len(rows_todo), "done")
    return {
        "config": dataclasses.asdict(config),
        "environment": environment(config, device),
        "rows": [dataclasses.asdict(r) for r in rows],
        "grids": grids,
        "default_steps": DEFAULT_STEPS,
    }
