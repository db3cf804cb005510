"""Runtime backends: each turns a network into the one callable samplers and the bench use,

    eps = backend(x, t, cond)    x (B, 3, 64, 64) float32, t (B,) int64, cond (B, 24) float32 -> eps float32

so torch eager, torch.compile, ONNX Runtime, OpenVINO and TensorRT are interchangeable. Heavy imports stay inside each
backend's module, so importing fastddpm never needs onnxruntime or tensorrt."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch

from fastddpm.backends.contract import UNetIO
from fastddpm.choices import BackendName
from fastddpm.errors import UsageError

EXPORT_SUFFIX = {"ort": ".onnx", "openvino": ".onnx", "trt": ".plan"}  # backends that run an export


class Backend(Protocol):
    device: torch.device  # where x, t and cond should live
    provider: str  # what runs it, for reports: "torch", "torch.compile", an ONNX Runtime provider, "TensorRT"
    capturable: bool  # may run inside a torch CUDA-graph capture (torch, compile, trt: yes; ort: no)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor: ...


def check_backend(name: str) -> None:
    BackendName.check(name, "--backend")


def make_backend(
    name: str,
    model_dir: str | Path,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    export_file: str | Path | None = None,
    io: UNetIO | None = None,
) -> Backend:
    """Build a backend for the model in `model_dir`; ort / openvino / trt run `export_file`, an export made from
    it (trt also needs the engine's contract `io`). `fastddpm.export.open_backend` finds both in an export folder."""
    from fastddpm.model import checkpoint_sha256

    check_backend(name)
    if name in ("torch", "compile"):
        from fastddpm.backends.torch_backend import TorchBackend
        from fastddpm.model import EpsilonModel, load_model

        net, card = load_model(model_dir, device)
        return TorchBackend(EpsilonModel(net, card.diffusion), device, dtype, compile=name == "compile")
    if export_file is None:
        raise UsageError(f"--backend {name} runs an export; none was given")
    if name == "ort":
        from fastddpm.backends.onnxruntime_backend import OrtBackend

        return OrtBackend(export_file, device, checkpoint_sha256(model_dir))
    if name == "openvino":
        from fastddpm.backends.openvino_backend import OpenVinoBackend

        return OpenVinoBackend(export_file, device)
    from fastddpm.backends.tensorrt_backend import TrtBackend

    if io is None:
        raise UsageError("--backend trt needs the engine's contract from its sidecar")
    return TrtBackend(export_file, device, io)
