"""CUDA-only checks; skipped with a reason on CPU-only machines (conftest)."""

import pytest
import torch

from fastddpm.export import open_backend
from fastddpm.configs import SampleSettings
from fastddpm.sampling.batch import generate, image_seeds
from fastddpm.schedule import NoiseSchedule, linear_betas


@pytest.mark.gpu
@pytest.mark.parametrize("sampler, steps", [("ddim", 10), ("dpmpp", 10), ("ddpm", 1000)])
def test_captured_run_equals_eager(tiny_model, sampler, steps):
    cuda = torch.device("cuda")
    backend = open_backend("torch", tiny_model, cuda, torch.float32)
    schedule = NoiseSchedule(linear_betas())
    cond = torch.eye(24)[:5]
    settings = SampleSettings(sampler, steps, guidance=2.0, batch_size=4)
    eager = generate(backend, schedule, cond, image_seeds(0, 5), settings, cuda, capture=False)
    captured = generate(backend, schedule, cond, image_seeds(0, 5), settings, cuda, capture=True)
    assert torch.allclose(eager, captured, atol=1e-4)
