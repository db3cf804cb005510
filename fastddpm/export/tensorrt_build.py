"""TensorRT engine from the exported ONNX, with the TensorRT Python API (TensorRT 10): precision flags,
normalisation and softmax pinned to float32 in reduced precision, one optimisation profile over the batch axis,
a workspace limit and a persistent timing cache. Written against the documented API; TensorRT cannot be installed
on the project's own machines, so this path has not been run there (README: what was run where)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from fastddpm import atomic
from fastddpm.errors import UsageError
from fastddpm.atomic import file_sha256
from fastddpm.export.artifacts import read_sidecar, sidecar_path
from fastddpm.backends.contract import UNetIO
from fastddpm.backends.tensorrt_backend import import_tensorrt


def build_engine(
    onnx_path: str | Path, workspace_gib: float = 4.0, timing_cache: str | Path | None = None
) -> Path:
    """Build export/<stem>.plan beside the ONNX (same precision and batch profile, read from the ONNX's sidecar)
    with its own sidecar; returns the plan's path."""
    trt = import_tensorrt()
    onnx_path = Path(onnx_path)
    onnx_record = read_sidecar(onnx_path)
    precision = onnx_record["precision"]
    io = UNetIO(**onnx_record["io"])
    start = time.perf_counter()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UsageError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if precision in ("fp16", "bf16"):
        config.set_flag(trt.BuilderFlag.FP16 if precision == "fp16" else trt.BuilderFlag.BF16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        pinned = (trt.LayerType.NORMALIZATION, trt.LayerType.SOFTMAX, trt.LayerType.REDUCE)
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if layer.type in pinned:
                layer.precision = trt.float32
                for j in range(layer.num_outputs):
                    layer.set_output_type(j, trt.float32)
    profile = builder.create_optimization_profile()
    for name in io.input_names:
        profile.set_shape(
            name, io.shapes(io.batch_min)[name], io.shapes(io.batch_opt)[name], io.shapes(io.batch_max)[name]
        )
    config.add_optimization_profile(profile)
    cache_path = Path(timing_cache) if timing_cache else onnx_path.parent / "timing.cache"
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise UsageError(f"TensorRT failed to build an engine from {onnx_path} (see the log above)")
    target = onnx_path.with_suffix(".plan")
    atomic.write_bytes(target, bytes(plan))
    atomic.write_bytes(cache_path, bytes(config.get_timing_cache().serialize()))
    sidecar = dict(
        onnx=str(onnx_path),
        checkpoint_sha256=onnx_record["checkpoint_sha256"],
        file_sha256=file_sha256(target),
        precision=precision,
        tensorrt=trt.__version__,
        gpu=torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        io=dataclasses.asdict(io),
        workspace_gib=workspace_gib,
        seconds=round(time.perf_counter() - start, 1),
    )
    atomic.write_json(sidecar_path(target), sidecar)
    return target
