"""Runtime backends: each turns a network into the one callable samplers and the bench use,

    eps = backend(x, t, cond)    x (B, 3, 64, 64) float32, t (B,) int64, cond (B, 24) float32 -> eps float32

so torch eager, torch.compile, ONNX Runtime and TensorRT are interchangeable. Heavy imports stay inside each
backend's module, so importing fastddpm never needs onnxruntime or tensorrt."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch

from fastddpm.backends.contract import UNetIO
from fastddpm.errors import UsageError

BACKENDS = ("torch", "compile", "ort", "trt")


class Backend(Protocol):
    device: torch.device  # where x, t and cond should live
    provider: str  # what runs it, for reports: "torch", "torch.compile", an ONNX Runtime provider, "TensorRT"
    capturable: bool  # may run inside a torch CUDA-graph capture (torch, compile, trt: yes; ort: no)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor: ...


def check_backend(name: str) -> None:
    if name not in BACKENDS:
        raise UsageError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


def make_backend(
    name: str,
    model_dir: str | Path,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    export_file: str | Path | None = None,
    io: UNetIO | None = None,
) -> Backend:
    """Build a backend for the model in `model_dir`; ort / trt run `export_file` (made from it: export.open_backend
    finds it), trt with its contract `io` from the engine's sidecar."""
    from fastddpm.model import checkpoint_sha256

    check_backend(name)
    if name in ("torch", "compile"):
        from fastddpm.backends.torch_backend import TorchBackend
        from fastddpm.model import EpsilonModel, load_model

        net, card = load_model(model_dir, device)
        return TorchBackend(EpsilonModel(net, card.diffusion), device, dtype, compile=name == "compile")
    if export_file is None or (name == "trt" and io is None):
        raise UsageError(f"--backend {name} runs an export: open it with fastddpm.export.open_backend")
    if name == "ort":
        from fastddpm.backends.onnxruntime_backend import OrtBackend

        return OrtBackend(export_file, device, checkpoint_sha256(model_dir))
    from fastddpm.backends.tensorrt_backend import TrtBackend

    return TrtBackend(export_file, device, io)
