"""The arithmetic behind a bench row: the network's FLOPs per image and call (torch's FLOP counter on the torch
model: convolutions, matrix products and attention; norms and pointwise ops are not counted) and this machine's
practical fp32 ceiling, a large matrix multiply timed on the bench's threads."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from fastddpm.conditions import NUM_CLASSES
from fastddpm.sampling.batch import IMAGE_SHAPE
from fastddpm.sampling.samplers import EpsFn

SGEMM_SIZE = 2048  # 17 GFLOP: a few tenths of a second on one core, long enough to reach the peak
SGEMM_REPEATS = 3


def gflop_per_image_call(eps_fn: EpsFn) -> float:
    """GFLOP of one network call on a batch of one image (convolutions and matmuls scale with the rows)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, *IMAGE_SHAPE)
    t = torch.zeros(1, dtype=torch.long)
    cond = torch.zeros(1, NUM_CLASSES)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        eps_fn(x, t, cond)
    return counter.get_total_flops() / 1e9


def model_gflop_per_image_call(model_dir: str | Path) -> float:
    """`gflop_per_image_call` of the torch fp32 model in `model_dir`, on the CPU (every backend runs that network)."""
    from fastddpm.model import EpsilonModel, load_model

    net, card = load_model(model_dir, torch.device("cpu"))
    return gflop_per_image_call(EpsilonModel(net, card.diffusion).eval())


def sgemm_gflops(size: int = SGEMM_SIZE, repeats: int = SGEMM_REPEATS) -> float:
    """The best fp32 GFLOP/s of torch.matmul on two size x size matrices on the CPU, after a warm-up."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9
