"""OpenVINO backend on the CPU: the same ONNX export as `ort`, compiled by OpenVINO for latency on every core
this process may use."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from fastddpm.backends.onnxruntime_backend import open_session, session_contract
from fastddpm.errors import UsageError

OPENVINO_MISSING = "OpenVINO is not installed: pip install 'fastddpm[openvino]'"


def import_openvino():
    try:
        import openvino
    except ImportError:
        raise UsageError(OPENVINO_MISSING) from None
    return openvino


class OpenVinoBackend:
    capturable = False
    provider = "OpenVINO CPU"

    def __init__(self, path: str | Path, device: torch.device) -> None:
        ov = import_openvino()
        if device.type != "cpu":
            raise UsageError("--backend openvino runs on the CPU only; use --device cpu")
        self.device = device
        self.io = session_contract(open_session(path, device))  # the contract lives in the ONNX metadata
        config = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": len(os.sched_getaffinity(0)),
            "INFERENCE_PRECISION_HINT": "f32",  # keep fp32: parity with torch, not bf16 where the CPU has it
        }
        self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        self.request = self.compiled.create_infer_request()

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        io = self.io
        io.check_batch(x.shape[0], "ONNX export")
        feeds = {
            io.x: x.float().cpu().contiguous().numpy(),
            io.t: t.long().cpu().contiguous().numpy(),
            io.cond: cond.float().cpu().contiguous().numpy(),
        }
        out = self.request.infer(feeds)
        return torch.from_numpy(np.array(out[self.compiled.output(io.eps)]))
