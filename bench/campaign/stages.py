"""The GPU campaign's stages (bench/gpu_campaign.py runs each in its own process, with a hard time limit).

Each stage is a function of a StageContext; it saves its result dict as it goes (so a stage killed at its limit
still says how far it got), returns it when done, raises Skipped for a stage this machine cannot run, and
raises BudgetStop to end early and cleanly with what it has. Work files go under the context's `work` folder;
only the train stage writes into the output folder (the model's parts), since at most 8 files come back.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from campaign.context import (
    BudgetStop,
    Skipped,
    StageContext,
    cuda_available,
    fastddpm_cli,
    log_tail,
    run_child,
)
from campaign.parts import pack_model
from campaign.preflight import course_label_files, preflight
from campaign.rows import bench_model, course_splits

ROOT = Path(__file__).resolve().parents[2]


def default_bench(ctx: StageContext) -> dict:
    """The shipped default on the GPU, checked against its CPU bench (same weights, seeds and guidance)."""
    from fastddpm.paths import default_model_dir

    return bench_model(ctx, default_model_dir(), course_splits(ctx, course_label_files(ctx)), shipped=True)


def sampling_speed(ctx: StageContext) -> dict:
    """bench/sampling_speed.py: the course-style baseline the course way beside ours, and 4,096-image throughput."""
    folder = ctx.work / "results" / "sampling_speed"
    argv = [sys.executable, str(ROOT / "bench" / "sampling_speed.py"), "--out", str(folder)]
    argv += ["--quick", "--repeats", "1"] if ctx.dry_run else ["--repeats", "2"]
    code, stopped = run_child(ctx, argv, "sampling_speed", grace_s=3)
    saved = sorted(folder.glob("sampling_speed-*.json"))
    if code != 0 or not saved:
        why = "stopped at its time limit" if stopped else f"exit {code}"
        raise RuntimeError(f"bench/sampling_speed.py {why}: {log_tail(ctx, 'sampling_speed')}")
    record = json.loads(saved[-1].read_text())
    ctx.save(**record)
    return record


def gpu_tests(ctx: StageContext) -> dict:
    """`pytest -m gpu`: captured == eager and the other CUDA-only checks."""
    if not cuda_available():
        raise Skipped("no CUDA")
    junit = ctx.work / "results" / "gpu-tests.xml"
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "-m",
        "gpu",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--junitxml={junit}",
    ]
    code, stopped = run_child(ctx, argv + ["tests"], "gpu_tests", grace_s=3)
    summary = {"exit_status": code, "summary_line": log_tail(ctx, "gpu_tests"), "stopped_for_time": stopped}
    if junit.is_file():
        import xml.etree.ElementTree as ElementTree

        suite = ElementTree.parse(junit).getroot()
        suite = suite if suite.tag == "testsuite" else suite[0]
        summary |= {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    ctx.save(**summary)
    if code not in (0, 5) or stopped:  # 5: nothing collected
        raise RuntimeError(f"pytest -m gpu: {summary['summary_line']}")
    return summary


def data_folder(ctx: StageContext) -> Path:
    """Shared by the campaigns of one machine: a rerun on a still-held machine resumes the render."""
    return ctx.work.parent / "data" / "iclevr"


def rendered_scenes(folder: Path) -> int:
    path = folder / "train.json"
    return len({name.split("_")[2] for name in json.loads(path.read_text())}) if path.is_file() else 0


def render(ctx: StageContext) -> dict:
    """The look-alike data set on the GPU: a first slice measures the rate, then as many scenes as fit."""
    target, first = (8, 8) if ctx.dry_run else (6003, 300)
    device = "cuda" if cuda_available() else "cpu"
    start = time.perf_counter()
    scenes, chunks = 0, []
    while scenes < target:
        seconds = time.perf_counter() - start
        rate = scenes / seconds if scenes else None
        want = first if not scenes else min(target, int(scenes + rate * max(0.0, ctx.time_left() - 8) * 0.9))
        if want <= scenes:
            break
        argv = fastddpm_cli("data", "render", "--out", str(data_folder(ctx)), "--scenes", str(want))
        code, stopped = run_child(ctx, argv + ["--device", device], "render", grace_s=3)
        scenes = rendered_scenes(data_folder(ctx))
        chunks.append({"asked": want, "scenes": scenes, "exit_status": code, "stopped_for_time": stopped})
        ctx.save(device=device, scenes=scenes, target=target, chunks=chunks)
        if code != 0:
            break
    seconds = time.perf_counter() - start
    result = {
        "scenes": scenes,
        "images": 3 * scenes,
        "seconds": round(seconds, 1),
        "complete": scenes >= target,
    }
    result["images_per_second"] = round(3 * scenes / seconds, 1) if seconds else None
    ctx.save(**result)
    if not scenes:
        raise RuntimeError(f"nothing rendered: {log_tail(ctx, 'render')}")
    if scenes < target:
        raise BudgetStop(f"{scenes} of {target} scenes rendered in {seconds:.0f} s")
    return ctx.result


def run_folder(ctx: StageContext) -> Path:
    return ctx.work / "run"


def trained_model(ctx: StageContext) -> Path:
    """The model folder the train stage wrote; the later stages need it."""
    from fastddpm.model import WEIGHTS_NAME

    model = run_folder(ctx) / "model"
    if not (model / WEIGHTS_NAME).is_file():
        raise RuntimeError(f"no trained model in {model}")
    return model


def train(ctx: StageContext) -> dict:
    """From scratch with the `gpu` preset for what the budget leaves; the EMA model comes back in parts."""
    if not (data_folder(ctx) / "train.json").is_file():
        raise RuntimeError(
            f"no rendered data in {data_folder(ctx)} (the render stage did not finish a slice)"
        )
    # what the run needs besides its training minutes: compile, data load, the last evaluation, the model's write
    minutes = 0.15 if ctx.dry_run else max(0.5, (ctx.time_left() - 75) / 60)
    tiny = ["--channels", "32,32", "--attention", "", "--batch-size", "8", "--eval-minutes", "0"]
    argv = fastddpm_cli("train", "--data", str(data_folder(ctx)), "--out", str(run_folder(ctx)))
    argv += ["--minutes", f"{minutes:.2f}", "--preset", "cpu" if ctx.dry_run else "gpu"] + (
        tiny if ctx.dry_run else []
    )
    ctx.save(command=" ".join(argv[2:]), planned_minutes=round(minutes, 2))
    code, stopped = run_child(ctx, argv, "train", grace_s=25)
    from fastddpm.model import load_card

    ctx.save(exit_status=code, stopped_for_time=stopped, **read_metrics(run_folder(ctx) / "metrics.jsonl"))
    try:
        model = trained_model(ctx)
    except RuntimeError:
        raise RuntimeError(f"no model written (exit {code}): {log_tail(ctx, 'train')}") from None
    card = load_card(model)
    info = card.info
    rate = info.images_seen / info.train_seconds if info.images_seen and info.train_seconds else None
    ctx.save(steps=info.steps, images_seen=info.images_seen, train_seconds=info.train_seconds)
    ctx.save(images_per_second=rate and round(rate, 1), model_card=json.loads(card.to_json()))
    ctx.save(parts=pack_model(model, ctx.out))
    return ctx.result


def read_metrics(path: Path) -> dict:
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
    rates = sorted(r["images_per_second"] for r in rows if "images_per_second" in r)
    return {
        "images_per_second_median": rates[len(rates) // 2] if rates else None,
        "quick_evals": [r for r in rows if any(k.startswith("acc_") for k in r)],
        "events": [r for r in rows if "event" in r],
    }


def new_model_bench(ctx: StageContext) -> dict:
    """The model the train stage wrote, on the course files, with capture."""
    return bench_model(ctx, trained_model(ctx), course_splits(ctx, course_label_files(ctx)), shipped=False)


def export(ctx: StageContext) -> dict:
    """ONNX at fp16 and bf16 with the parity and blank / NaN checks, on onnxruntime's CPU provider."""
    import onnxruntime

    from fastddpm.export.onnx_export import PrecisionUnavailable, export_onnx

    model = trained_model(ctx)
    providers = onnxruntime.get_available_providers()
    ctx.save(
        ort_providers=providers, note="parity runs on onnxruntime's CPU provider: no onnxruntime-gpu here"
    )
    device, exports = ("cuda" if cuda_available() else "cpu"), {}
    for precision in ("fp16", "bf16"):
        if ctx.time_left() < 10:
            raise BudgetStop(f"exported {list(exports) or 'nothing'} before the budget ran out")
        try:
            path, record = export_onnx(model, ctx.work / "export", precision, (1, 8, 32), device)
            exports[precision] = {"file": path.name, **dataclasses.asdict(record)}
        except PrecisionUnavailable as err:  # refused before any work: this machine cannot check it
            exports[precision] = {"skipped": str(err)}
        except Exception as err:  # noqa: BLE001 - one precision failing must not hide the other's result
            exports[precision] = {"error": f"{type(err).__name__}: {str(err)[:300]}"}
        ctx.save(exports=exports)
    failed = [p for p, r in exports.items() if "error" in r]
    if failed:
        raise RuntimeError(f"export failed for {failed}: {exports[failed[0]]['error'][:150]}")
    return ctx.result


@dataclass(frozen=True)
class Stage:
    letter: str
    name: str
    run: Callable[[StageContext], dict]
    budget_s: float | None  # None: what is left after the later stages' budgets (the train stage)


STAGES = (
    Stage("a", "preflight", preflight, 20),
    Stage("b", "default_bench", default_bench, 80),
    Stage("c", "sampling_speed", sampling_speed, 75),
    Stage("d", "gpu_tests", gpu_tests, 40),
    Stage("e", "render", render, 45),
    Stage("f", "train", train, None),
    Stage("g", "new_model_bench", new_model_bench, 50),
    Stage("h", "export", export, 40),
)
