"""PyTorch backends: eager, or torch.compile'd (default mode: fused kernels without CUDA graphs of its own, so
the sampler's whole-run graph can capture them)."""

from __future__ import annotations

import torch

from fastddpm.model import EpsilonModel


class TorchBackend:
    capturable = True

    def __init__(
        self,
        model: EpsilonModel,
        device: torch.device,
        dtype: torch.dtype = torch.float32,
        compile: bool = False,
    ) -> None:
        model.net.to(device, dtype)  # the schedule buffer stays float32
        self.model = model.to(device).eval()
        self.device, self.dtype = device, dtype
        self.provider = "torch.compile" if compile else "torch"
        self.fn = torch.compile(self.model, dynamic=False) if compile else self.model

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.fn(x.to(self.dtype), t, cond.to(self.dtype)).float()
