"""Where and how tensors run, said once: the device and dtype a user names, autocast, and the timing every
measurement shares (one clock per device, one median, one p90)."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import TypeVar

import torch

from fastddpm.choices import Device, Dtype, Precision
from fastddpm.errors import UsageError

DTYPES = dict(zip(Precision.names(), (torch.float32, torch.float16, torch.bfloat16), strict=True))
T = TypeVar("T")


def resolve_device(name: str, index: int | None = None) -> torch.device:
    """'auto' | 'cpu' | 'cuda' -> a torch device; 'auto' takes the GPU when there is one."""
    Device.check(name, "--device")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but no CUDA device is available; use --device cpu")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", index) if index is not None else torch.device("cuda")


def memory_bytes(device: torch.device) -> int | None:
    """The memory a run on `device` can use at most: the GPU's, else this machine's (None where unknown)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not a POSIX system
        return None


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """'auto' (bf16 on CUDA, fp32 on a CPU) | 'fp32' | 'bf16' | 'fp16' -> a torch dtype."""
    if Dtype.check(name, "--dtype") == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return DTYPES[name]


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Mixed precision in `dtype` on `device`; None or float32 is a no-op."""
    enabled = dtype is not None and dtype != torch.float32
    return torch.autocast(device.type, dtype or torch.bfloat16, enabled=enabled)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX-512 BF16 or AMX tiles): there bf16 autocast trains faster
    than fp32 (bench/train_speed.py --compare); elsewhere bf16 is emulated."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def cpu_model() -> str:
    """The processor's model name (what `lscpu` calls it), e.g. 'AMD EPYC'; the architecture where unknown."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    """What a result's environment records: the GPU's name, or the CPU's model and thread count (CPU figures
    differ several-fold between processors of one cloud)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({cpu_model()}, {torch.get_num_threads()} threads)"


def timed_call(fn: Callable[[], T], device: torch.device) -> tuple[T, float]:
    """(result, wall milliseconds) of one call: CUDA events on a GPU (synchronised at the end), else the clock."""
    if device.type != "cuda":
        start = time.perf_counter()
        out = fn()
        return out, (time.perf_counter() - start) * 1000
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    out = fn()
    end.record()
    torch.cuda.synchronize()
    return out, begin.elapsed_time(end)


def time_ms(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1) -> list[float]:
    """Milliseconds of `repeats` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    return [timed_call(fn, device)[1] for _ in range(repeats)]


def percentile(values: list[float], q: float) -> float:
    """The q-quantile with linear interpolation between order statistics (numpy's default)."""
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def latency_stats(times_ms: list[float]) -> dict:
    """{median, p90, runs}: the latency record of every bench table."""
    return {"median": statistics.median(times_ms), "p90": percentile(times_ms, 0.9), "runs": len(times_ms)}
