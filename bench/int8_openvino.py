"""Issue 27, past the fp32 cap: does int8 post-training quantisation (OpenVINO NNCF) make one 32-image split at
DPM-Solver++-10 much faster on this CPU than fp32 OpenVINO / ONNX Runtime, and what does it cost in accuracy?

Calibration inputs are the network's real inputs (x_t, t, cond), recorded from the fp32 OpenVINO backend while it
samples the validation label sets (synth.test_splits(1000), seed 1000), never the test splits. Each variant is
quantised with nncf.quantize, compiled like the fp32 backend (same threads, latency hint, f32 for what stays
unquantised) and timed beside fp32 in this process: one warm-up, then the median of --repeats split runs on the
test labels. Every backend is scored by the shipped evaluator on both test splits, and each int8 variant's eps is
compared with fp32 on held-out recorded inputs (the validation labels at seed 1001). Where that error stays within
--max-error down to some t, a timestep split (int8 there, fp32 below) is a row too; --bands adds one int8 model
per timestep band, each calibrated on its band's calls. The int8 pieces live in int8_quant.py.

    taskset -c 0 env OMP_NUM_THREADS=1 PYTHONPATH=$PWD python bench/int8_openvino.py \\
        --test /work/shared/iclevr/course/test.json --new-test /work/shared/iclevr/course/new_test.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, save  # noqa: E402

from fastddpm.backends import EXPORT_SUFFIX  # noqa: E402
from fastddpm.backends.openvino_backend import import_openvino  # noqa: E402
from fastddpm.conditions import multi_hot, read_test_labels  # noqa: E402
from fastddpm.data import synth  # noqa: E402
from fastddpm.errors import UsageError  # noqa: E402
from fastddpm.evaluator.network import Evaluator  # noqa: E402
from fastddpm.export.artifacts import find_export  # noqa: E402
from fastddpm.paths import default_model_dir  # noqa: E402
from fastddpm.pipeline import Pipeline  # noqa: E402
from fastddpm.runtime import cpu_model, timed_call  # noqa: E402
from fastddpm.sampling.batch import generate_split  # noqa: E402
from int8_quant import (  # noqa: E402
    PROFILED_CALL,
    VARIANTS,
    TimestepRouter,
    feeds,
    int8_down_to,
    op_times,
    quantise_bands,
    record_calls,
    relative_eps_error,
)

CALIBRATION_DRAW, CALIBRATION_SEED, HELD_OUT_SEED = 1000, 1000, 1001  # validation only, never the test splits


def bench_backend(backend, schedule, splits, settings, seeds, evaluator, repeats: int) -> dict:
    """Median ms of `repeats` runs of the first split at seeds[0] after one warm-up, and accuracy per split and
    seed (the timed runs are deterministic: their last images are the first split's seeds[0] score)."""
    first = next(iter(splits))
    run = lambda labels, seed: generate_split(backend, schedule, labels, settings, seed, backend.device)  # noqa: E731
    run(splits[first], seeds[0])
    times = []
    for _ in range(repeats):
        images, ms = timed_call(lambda: run(splits[first], seeds[0]), backend.device)
        times.append(ms)
    accuracy = {}
    for name, labels in splits.items():
        per_seed = []
        for seed in seeds:
            if not (name == first and seed == seeds[0]):
                images = run(labels, seed)
            per_seed.append(evaluator.accuracy(images, multi_hot(labels)))
        accuracy[name] = {"mean": statistics.mean(per_seed), "per_seed": per_seed}
    return {"median_ms": statistics.median(times), "times_ms": times, "accuracy": accuracy}


def int8_backends(args, ov_model, fp32, calls, held_out, settings) -> dict[str, tuple]:
    """{name: (backend, record)} for every variant, calibrated over all timesteps and (--bands) per band, and where
    the held-out error allows, its timestep split (int8 down to the lowest t within --max-error, fp32 below)."""
    out = {}
    for variant, edges in [
        (v, e) for v in args.variants for e in ([0], [*args.bands, 0])[: 1 + bool(args.bands)]
    ]:
        start = time.perf_counter()
        bands = quantise_bands(args, ov_model, fp32, calls, variant, edges)
        router = TimestepRouter([(t, b) for t, b, _ in bands], fp32)
        name = f"openvino int8 {variant}" + (f" bands@{edges[:-1]}" if len(edges) > 1 else "")
        record = {
            "variant": variant,
            "band_edges": edges,
            "quantise_seconds": round(time.perf_counter() - start, 1),
        }
        if len(edges) == 1:
            record["op_ms"] = op_times(bands[0][2], fp32, held_out[PROFILED_CALL])
        error = relative_eps_error(router, fp32, held_out, settings.guidance)
        out[name] = (router, {**record, "eps_error": error})
        print(f"{name}: quantised in {record['quantise_seconds']} s", flush=True)
        lowest = int8_down_to(error["guided_per_t"], args.max_error)
        if lowest is not None and lowest > min(map(int, error["guided_per_t"])):
            split = TimestepRouter(router.bands, fp32, lowest)
            record = {
                "variant": variant,
                "band_edges": edges,
                "int8_down_to_t": lowest,
                "max_error": args.max_error,
            }
            out[f"{name} t>={lowest}"] = (
                split,
                {**record, "eps_error": relative_eps_error(split, fp32, held_out, settings.guidance)},
            )
    return out


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=default_model_dir())
    parser.add_argument(
        "--export", type=Path, default=Path("export"), help="folder holding the fp32 ONNX export"
    )
    parser.add_argument("--test", type=Path, required=True, help="the course's test.json (timed and scored)")
    parser.add_argument("--new-test", type=Path, required=True, help="the course's new_test.json (scored)")
    parser.add_argument("--evaluator", type=Path, default=None, help="default: the shipped evaluator")
    parser.add_argument("--seeds", default="0", help="sampling seeds to score, comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--variants", default="performance", help=f"comma-separated, of {', '.join(VARIANTS)}"
    )
    parser.add_argument("--subset-size", type=int, default=160, help="calibration feeds nncf uses")
    parser.add_argument("--rows", type=int, default=8, help="rows per calibration feed")
    parser.add_argument(
        "--max-error",
        type=float,
        default=0.02,
        help="held-out guided eps error up to which a timestep split runs int8 (fixed before any test score)",
    )
    parser.add_argument(
        "--profile-only", action="store_true", help="quantise and profile; no timing or scores"
    )
    parser.add_argument(
        "--bands", default="", help="comma-separated timesteps: also one int8 model per band, e.g. 500"
    )
    parser.add_argument("--ort", action="store_true", help="time fp32 ONNX Runtime too")
    parser.add_argument("--out", type=Path, default=RESULTS / "int8")
    args = parser.parse_args()
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for variant in args.variants:
        if variant not in VARIANTS:
            parser.error(f"--variants {variant!r}; choose from {', '.join(VARIANTS)}")
    try:
        args.seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        parser.error(f"--seeds {args.seeds!r}: give comma-separated integers such as 0,1,2")
    try:
        args.bands = sorted({int(b) for b in args.bands.split(",") if b.strip()}, reverse=True)
    except ValueError:
        parser.error(f"--bands {args.bands!r}: give comma-separated timesteps such as 500")
    if any(not 0 < b < 1000 for b in args.bands):
        parser.error(f"--bands {args.bands}: each edge lies in 1..999")
    if args.repeats < 1 or args.subset_size < 1 or args.rows < 1:
        parser.error("--repeats, --subset-size and --rows take positive integers")
    return args


def main() -> None:
    args = parse_args()
    try:
        splits = {"test": read_test_labels(args.test), "new_test": read_test_labels(args.new_test)}
        evaluator = Evaluator(args.evaluator, "cpu")
        pipe = Pipeline.from_pretrained(args.model, "cpu", "openvino", "fp32", args.export)
        onnx_path = find_export(args.export, args.model, EXPORT_SUFFIX["openvino"])
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    fp32 = pipe.backend
    settings = pipe.settings("dpmpp", 10, batch_size=max(len(s) for s in splits.values()))
    val, new_val = synth.test_splits(CALIBRATION_DRAW)
    start = time.perf_counter()
    calibration = record_calls(fp32, pipe.schedule, (val, new_val), settings, CALIBRATION_SEED)
    held_out = record_calls(fp32, pipe.schedule, (val,), settings, HELD_OUT_SEED)
    items = feeds(fp32.io, calibration, args.rows)
    print(f"recorded {len(calibration)} calls ({len(items)} feeds) in {time.perf_counter() - start:.1f} s")

    ov = import_openvino()
    backends = {"openvino fp32": fp32}
    if args.ort:
        backends["ort fp32"] = Pipeline.from_pretrained(args.model, "cpu", "ort", "fp32", args.export).backend
    args.num_timesteps = pipe.schedule.num_timesteps
    quantised = int8_backends(
        args, ov.Core().read_model(str(onnx_path)), fp32, calibration, held_out, settings
    )
    backends.update({name: backend for name, (backend, _) in quantised.items()})
    quantised = {name: record for name, (_, record) in quantised.items()}
    quantised["openvino fp32"] = {"op_ms": op_times(str(onnx_path), fp32, held_out[PROFILED_CALL])}
    rows = {name: dict(record) for name, record in quantised.items()} if args.profile_only else {}
    for name, backend in {} if args.profile_only else backends.items():
        rows[name] = {
            **bench_backend(backend, pipe.schedule, splits, settings, args.seeds, evaluator, args.repeats),
            **quantised.get(name, {}),
        }
        print(f"{name}: {rows[name]['median_ms']:.0f} ms", flush=True)
    print_table(rows)
    save(
        "int8_openvino",
        result_record(args, settings, calibration, items, onnx_path, evaluator, rows),
        args.out,
    )


def result_record(args, settings, calibration, items, onnx_path, evaluator, rows) -> dict:
    """The saved JSON: settings, calibration, environment (versions, export, evaluator) and every row."""
    import nncf

    ov = import_openvino()
    return {
        "settings": {
            "sampler": settings.sampler,
            "steps": settings.steps,
            "guidance": settings.guidance,
            "batch_size": settings.batch_size,
            "seeds": args.seeds,
            "repeats": args.repeats,
        },
        "calibration": {
            "draw": CALIBRATION_DRAW,
            "seed": CALIBRATION_SEED,
            "held_out_seed": HELD_OUT_SEED,
            "calls": len(calibration),
            "feeds": len(items),
            "rows_per_feed": args.rows,
            "max_error": args.max_error,
            "bands": args.bands,
            "subset_size": min(args.subset_size, len(items)),
        },
        "environment": {
            "cpu": cpu_model(),
            "cores": len(os.sched_getaffinity(0)),
            "openvino": ov.__version__,
            "nncf": nncf.__version__,
            "export": str(onnx_path),
            "evaluator": str(evaluator.path),
        },
        "rows": rows,
    }


def print_table(rows: dict) -> None:
    """backend, median ms per split, mean accuracies, eps errors (raw, guided) and the profiled ms of one call."""
    print(
        f"{'backend':<40} {'ms/split':>9} {'test':>6} {'new_test':>8} {'eps err':>8} {'guided':>8} {'ms/call':>8}"
    )
    for name, row in rows.items():
        err, acc, ops = row.get("eps_error"), row.get("accuracy"), row.get("op_ms")
        cells = [
            f"{row['median_ms']:.0f}" if "median_ms" in row else "-",
            f"{acc['test']['mean']:.3f}" if acc else "-",
            f"{acc['new_test']['mean']:.3f}" if acc else "-",
            f"{err['median']:.4f}" if err else "-",
            f"{err['guided_median']:.4f}" if err else "-",
            f"{ops['total']:.0f}" if ops else "-",
        ]
        print(f"{name:<40} " + " ".join(f"{c:>{w}}" for c, w in zip(cells, (9, 6, 8, 8, 8, 8), strict=True)))


if __name__ == "__main__":
    main()
