"""Export: artifacts on disk (artifacts.py: hashes, sidecars, finding an export, `open_backend`), ONNX
(onnx_export.py) and TensorRT (tensorrt_build.py). Export sits above backends: it imports them (to check parity
and to open a backend from an export); no backend imports export."""

from fastddpm.export.artifacts import open_backend

__all__ = ["open_backend"]
