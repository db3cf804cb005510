"""Export: artifacts on disk (artifacts.py: hashes, sidecars, finding an export, and `open_backend`, which opens any
backend by name for a model, finding the export that ort / openvino / trt run), ONNX (onnx_export.py) and TensorRT
(tensorrt_build.py), all reading the I/O contract of backends/contract.py. Export sits above backends: its parity
checks run the exported graph through them; no backend imports from here."""

from fastddpm.export.artifacts import open_backend

__all__ = ["open_backend"]
