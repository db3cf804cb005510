"""Export: the I/O contract (contract.py), artifacts on disk (artifacts.py: hashes, sidecars, finding an
export), ONNX (onnx_export.py) and TensorRT (tensorrt_build.py). Backends import from here; nothing here imports
a backend."""
