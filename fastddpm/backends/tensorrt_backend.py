"""TensorRT backend: the engine runs on torch CUDA tensors (their pointers bound as I/O addresses) on torch's
current stream, so it composes with CUDA-graph capture and needs no host copies."""

from __future__ import annotations

from pathlib import Path

import torch

from fastddpm.errors import UsageError
from fastddpm.backends.contract import UNetIO


TRT_MISSING = (
    "TensorRT is not installed: pip install 'fastddpm[trt]' (needs an NVIDIA GPU, driver and CUDA 12+)"
)


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise UsageError(TRT_MISSING) from None
    return trt


class TrtBackend:
    capturable = True  # enqueues on torch's current stream, so a whole-run graph can record it
    provider = "TensorRT"

    def __init__(self, path: str | Path, device: torch.device, io: UNetIO) -> None:
        """`io`: the contract the engine was built for (its sidecar records it)."""
        trt = import_tensorrt()
        path = Path(path)
        if device.type != "cuda":
            raise UsageError("--backend trt runs on a CUDA device only")
        if not path.is_file():
            raise UsageError(f"TensorRT engine {str(path)!r} not found; run `fastddpm export --onnx --trt`")
        self.io = io
        self.device = device
        self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise UsageError(
                f"{str(path)!r} is not a TensorRT engine for this TensorRT version and GPU; rebuild it"
            )
        self.context = self.engine.create_execution_context()
        to_torch = {
            trt.float32: torch.float32,
            trt.float16: torch.float16,
            trt.int32: torch.int32,
            trt.int64: torch.int64,
        }
        self.dtypes = {
            name: to_torch[self.engine.get_tensor_dtype(name)] for name in (*self.io.input_names, self.io.eps)
        }

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        io = self.io
        io.check_batch(x.shape[0], "TensorRT engine")
        inputs = {io.x: x, io.t: t, io.cond: cond}
        inputs = {
            name: tensor.to(self.device, self.dtypes[name]).contiguous() for name, tensor in inputs.items()
        }
        for name, tensor in inputs.items():
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        out = torch.empty(tuple(x.shape), device=self.device, dtype=self.dtypes[io.eps])
        self.context.set_tensor_address(io.eps, out.data_ptr())
        if not self.context.execute_async_v3(torch.cuda.current_stream(self.device).cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        return out.float()
