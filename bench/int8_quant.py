"""The int8 pieces of bench/int8_openvino.py: recording the network's inputs while sampling, cutting them into
calibration feeds, quantising with NNCF (one model or one per timestep band), compiling like the fp32 OpenVINO
backend, routing calls by timestep between int8 and fp32, the eps error against fp32 and OpenVINO's op counters."""

from __future__ import annotations

import collections
import statistics

from fastddpm.backends.openvino_backend import OpenVinoBackend, import_openvino
from fastddpm.sampling.batch import generate_split

PROFILED_CALL = 5  # the held-out call whose ops are timed (t=500 at 10 steps)
COMPILE_KEYS = ("PERFORMANCE_HINT", "INFERENCE_NUM_THREADS", "INFERENCE_PRECISION_HINT")
# Ops kept in fp32 by the "keep-norms" variant: attention's softmax and the normalisations.
NORM_TYPES = ["Softmax", "MVN", "GroupNormalization", "NormalizeL2", "ReduceMean", "Power", "Sqrt", "Divide"]
# performance: nncf's default; transformer: its model type (SmoothQuant, attention kept in fp32 where it can)
VARIANTS = ("performance", "mixed", "transformer", "keep-norms", "transformer-norms")


def compile_config(like: OpenVinoBackend) -> dict:
    return {key: like.compiled.get_property(key) for key in COMPILE_KEYS}


def op_times(model, like: OpenVinoBackend, call: tuple) -> dict:
    """Milliseconds per op type and precision of one network call by OpenVINO's own counters (the second of two
    runs; the counters add some overhead), the 8 largest and the total."""
    ov = import_openvino()
    request = ov.Core().compile_model(model, "CPU", {**compile_config(like), "PERF_COUNT": True})
    request = request.create_infer_request()
    x, t, cond = call
    feed = {like.io.x: x.numpy(), like.io.t: t.numpy(), like.io.cond: cond.numpy()}
    request.infer(feed)
    request.infer(feed)
    totals = collections.Counter()
    for op in request.profiling_info:
        totals[f"{op.node_type} {op.exec_type.split('_')[-1]}"] += op.real_time.total_seconds() * 1000
    return {
        "t": int(t[0]),
        **{k: round(v, 1) for k, v in totals.most_common(8)},
        "total": round(sum(totals.values()), 1),
    }


class CompiledModelBackend(OpenVinoBackend):
    """An OpenVINO model already in memory (the int8 one), compiled with the fp32 backend's settings and fed
    through its __call__."""

    def __init__(self, model, like: OpenVinoBackend, provider: str) -> None:
        ov = import_openvino()
        self.device, self.io, self.provider = like.device, like.io, provider
        self.compiled = ov.Core().compile_model(model, "CPU", compile_config(like))
        self.request = self.compiled.create_infer_request()


class TimestepRouter:
    """Each call to the first int8 band whose lowest timestep it reaches ((t_min, backend), highest first), and to
    fp32 below `fp32_below`: at low t the eps is the network's output plus the linear skip, two large terms that
    nearly cancel, so the network's int8 error is amplified there."""

    capturable = False

    def __init__(self, bands: list[tuple], fp32, fp32_below: int = 0) -> None:
        self.bands, self.fp32, self.fp32_below, self.device = bands, fp32, fp32_below, fp32.device
        self.provider = f"OpenVINO CPU int8 bands {[t for t, _ in bands]}, fp32 below t={fp32_below}"

    def __call__(self, x, t, cond):
        step = int(t.max())
        chosen = next((b for t_min, b in self.bands if step >= t_min), self.fp32)
        return (self.fp32 if step < self.fp32_below else chosen)(x, t, cond)


def int8_down_to(per_t: dict, max_error: float) -> int | None:
    """The lowest visited timestep from which up every held-out guided eps error is within max_error (None: even
    the highest is not)."""
    lowest = None
    for t in sorted(per_t, key=int, reverse=True):
        if per_t[t] > max_error:
            break
        lowest = int(t)
    return lowest


class Recorder:
    """An eps_fn that forwards to a backend and keeps every call's inputs."""

    def __init__(self, backend) -> None:
        self.backend, self.device, self.calls = backend, backend.device, []

    def __call__(self, x, t, cond):
        self.calls.append((x.clone(), t.clone(), cond.clone()))
        return self.backend(x, t, cond)


def record_calls(backend, schedule, label_sets, settings, seed) -> list[tuple]:
    recorder = Recorder(backend)
    for labels in label_sets:
        generate_split(recorder, schedule, labels, settings, seed, backend.device)
    return recorder.calls


def feeds(io, calls, rows: int) -> list[dict]:
    """Calibration items of `rows` rows (numpy, by input name), each a stride through one call so that it holds
    conditional and null rows alike, ordered so that any prefix (nncf calibrates on the first subset_size)
    spans every recorded call and timestep."""
    out = []
    count = max(1, calls[0][0].shape[0] // rows)
    for j in range(count):
        for x, t, cond in calls:
            part = slice(j, None, count)
            out.append({io.x: x[part].numpy(), io.t: t[part].numpy(), io.cond: cond[part].numpy()})
    return out


def quantize(ov_model, items: list[dict], variant: str, subset_size: int):
    import nncf

    options = {"subset_size": min(subset_size, len(items))}
    if variant == "mixed":
        options["preset"] = nncf.QuantizationPreset.MIXED
    if variant.startswith("transformer"):
        options["model_type"] = nncf.ModelType.TRANSFORMER
    if variant.endswith("norms"):
        options["ignored_scope"] = nncf.IgnoredScope(types=NORM_TYPES, validate=False)
    return nncf.quantize(ov_model, nncf.Dataset(items), **options)


def relative_eps_error(backend, reference, calls, guidance: float) -> dict:
    """||eps - eps_fp32|| / ||eps_fp32|| per held-out call, raw and guided (what the sampler steps with)."""
    raw, guided = [], []
    for x, t, cond in calls:
        got, want = backend(x, t, cond), reference(x, t, cond)
        raw.append(((got - want).norm() / want.norm()).item())
        (gc, gn), (wc, wn) = got.chunk(2), want.chunk(2)
        g, w = gn + guidance * (gc - gn), wn + guidance * (wc - wn)
        guided.append(((g - w).norm() / w.norm()).item())
    per_t = {int(c[1][0]): round(e, 5) for c, e in zip(calls, guided, strict=True)}
    return {
        "median": statistics.median(raw),
        "max": max(raw),
        "guided_median": statistics.median(guided),
        "guided_max": max(guided),
        "guided_per_t": per_t,
    }


def quantise_bands(args, ov_model, fp32, calls, variant: str, edges: list[int]) -> list[tuple]:
    """(t_min, backend, model) per timestep band (edges: the bands' lower ends, highest first, the last 0), each
    model calibrated on the recorded calls that fall in its band."""
    bands, upper = [], None
    for t_min in edges:
        inside = [c for c in calls if t_min <= int(c[1][0]) < (upper or args.num_timesteps)]
        model = quantize(ov_model.clone(), feeds(fp32.io, inside, args.rows), variant, args.subset_size)
        bands.append((t_min, CompiledModelBackend(model, fp32, "OpenVINO CPU int8"), model))
        upper = t_min
    return bands
