"""ONNX Runtime backend: CPU provider with numpy feeds, or (with onnxruntime-gpu) the CUDA provider with
io-binding on torch CUDA tensors, so no host copies happen inside the sampling loop."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from fastddpm.backends.contract import UNetIO
from fastddpm.errors import UsageError


def open_session(path: str | Path, device: torch.device):
    """An ONNX Runtime session on `device` (CUDA provider when asked for and installed), or a UsageError."""
    import onnxruntime as ort

    if device.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise UsageError("ONNX Runtime on cuda needs onnxruntime-gpu: pip install 'fastddpm[gpu]'")
        providers = [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
    else:
        providers = ["CPUExecutionProvider"]
    options = ort.SessionOptions()
    options.log_severity_level = 3
    # Full graph fusion, one op at a time over every core this process may use (taskset is honoured).
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = len(os.sched_getaffinity(0))
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as err:  # noqa: BLE001 - a corrupt or foreign file: one clear message
        raise UsageError(f"{str(path)!r} is not a loadable ONNX model ({type(err).__name__})") from None


def session_contract(session) -> UNetIO:
    """The contract recorded in an export's metadata (every fastddpm export has one)."""
    meta = session.get_modelmeta().custom_metadata_map
    if "io" not in meta:
        raise UsageError("this ONNX file was not made by `fastddpm export`: its metadata records no contract")
    return UNetIO(**json.loads(meta["io"]))


def run_session(session, io: UNetIO, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """eps from host tensors through numpy feeds (any provider; ONNX Runtime copies to the device itself)."""
    feeds = {
        io.x: x.float().cpu().contiguous().numpy(),
        io.t: t.long().cpu().contiguous().numpy(),
        io.cond: cond.float().cpu().contiguous().numpy(),
    }
    return torch.from_numpy(np.asarray(session.run([io.eps], feeds)[0]))


class OrtBackend:
    capturable = False  # ONNX Runtime launches on its own stream: no torch CUDA-graph capture

    def __init__(self, path: str | Path, device: torch.device, checkpoint_sha256: str | None = None) -> None:
        self.device = device
        self.session = open_session(path, device)
        self.provider = self.session.get_providers()[0]
        self.io = session_contract(self.session)
        recorded = self.session.get_modelmeta().custom_metadata_map.get("checkpoint_sha256")
        if (
            checkpoint_sha256 is not None and recorded != checkpoint_sha256
        ):  # the graph's own record, not a name
            raise UsageError(
                f"{str(path)!r} holds a graph exported from checkpoint {str(recorded)[:12]}, "
                f"not {checkpoint_sha256[:12]}"
            )

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        io = self.io
        io.check_batch(x.shape[0], "ONNX export")
        if self.device.type != "cuda":
            return run_session(self.session, io, x, t, cond)
        x, t, cond = x.float().contiguous(), t.long().contiguous(), cond.float().contiguous()
        out = torch.empty_like(x)
        binding = self.session.io_binding()
        index = self.device.index or 0
        for name, tensor, dtype in ((io.x, x, np.float32), (io.t, t, np.int64), (io.cond, cond, np.float32)):
            binding.bind_input(name, "cuda", index, dtype, tuple(tensor.shape), tensor.data_ptr())
        binding.bind_output(io.eps, "cuda", index, np.float32, tuple(out.shape), out.data_ptr())
        torch.cuda.current_stream(self.device).synchronize()  # inputs were written on torch's stream
        self.session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return out
