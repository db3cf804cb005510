"""ONNX Runtime backend: CPU provider with numpy buffers, or (with onnxruntime-gpu) the CUDA provider with
io-binding on torch CUDA tensors, so no host copies happen inside the sampling loop."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from fastddpm.backends.io_spec import UNetIO
from fastddpm.errors import UsageError


class OrtBackend:
    capturable = False  # ONNX Runtime launches on its own stream: no torch CUDA-graph capture

    def __init__(self, path: str | Path, device: torch.device) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise UsageError(f"ONNX file {str(path)!r} not found")
        available = ort.get_available_providers()
        self.device = device
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in available:
                raise UsageError("--backend ort on cuda needs onnxruntime-gpu: pip install 'fastddpm[gpu]'")
            providers = [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.provider = self.session.get_providers()[0]
        meta = self.session.get_modelmeta().custom_metadata_map
        self.io = UNetIO(**json.loads(meta["io"])) if "io" in meta else UNetIO()
        self.checkpoint_sha256 = meta.get("checkpoint_sha256")

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        io = self.io
        io.check_batch(x.shape[0], "ONNX export")
        x, t, cond = x.float().contiguous(), t.long().contiguous(), cond.float().contiguous()
        if self.device.type != "cuda":
            feeds = {io.x: x.numpy(), io.t: t.numpy(), io.cond: cond.numpy()}
            return torch.from_numpy(self.session.run([io.eps], feeds)[0])
        out = torch.empty_like(x)
        binding = self.session.io_binding()
        for name, tensor, dtype in ((io.x, x, np.float32), (io.t, t, np.int64), (io.cond, cond, np.float32)):
            binding.bind_input(
                name, "cuda", self.device.index or 0, dtype, tuple(tensor.shape), tensor.data_ptr()
            )
        binding.bind_output(
            io.eps, "cuda", self.device.index or 0, np.float32, tuple(out.shape), out.data_ptr()
        )
        torch.cuda.current_stream(self.device).synchronize()  # inputs were written on torch's stream
        self.session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return out
