"""Export: artifacts on disk (artifacts.py: hashes, sidecars, finding an export), ONNX (onnx_export.py) and
TensorRT (tensorrt_build.py), all reading the I/O contract of backends/contract.py; and `open_backend`, which opens
any backend by name for a model, finding the export that ort / trt run. Export sits above backends: its parity
checks run the exported graph through them; no backend imports from here."""

from __future__ import annotations

from pathlib import Path

import torch

from fastddpm.backends import Backend, check_backend, make_backend
from fastddpm.backends.contract import UNetIO
from fastddpm.export.artifacts import find_export, read_sidecar

EXPORT_SUFFIX = {"ort": ".onnx", "trt": ".plan"}


def open_backend(
    name: str,
    model_dir: str | Path,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    export_dir: str | Path = "export",
) -> Backend:
    """The backend `name` for the model in `model_dir`; ort / trt load the export of its weights in `export_dir`
    (a folder of exports, or the file itself)."""
    check_backend(name)
    if name not in EXPORT_SUFFIX:
        return make_backend(name, model_dir, device, dtype)
    path = find_export(export_dir, model_dir, EXPORT_SUFFIX[name])
    io = UNetIO(**read_sidecar(path)["io"]) if name == "trt" else None
    return make_backend(name, model_dir, device, dtype, path, io)
