"""Shared tiny fixtures: a rendered 3-scene data set, a tiny UNet folder, and a course-format evaluator."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

COURSE = Path(__file__).resolve().parents[2] / "shared" / "iclevr" / "course"
TINY_MODEL = dict(
    block_channels=(32, 32), attention_levels=(1,), norm_groups=8, patch_size=4, attention_head_dim=16
)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none on this machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    from fastddpm.data.writer import render_dataset

    root = tmp_path_factory.mktemp("data") / "iclevr"
    render_dataset(root, scenes=3, seed=5)
    return root


def make_tiny_model(
    folder: Path, seed: int = 0, render_seed: int | None = 5, conditioning: str = "multihot", refine: int = 0
) -> Path:
    from fastddpm.card import ModelInfo, RenderInfo
    from fastddpm.configs import DiffusionConfig, ModelConfig
    from fastddpm.model import ConditionalUNet, ModelCard, save_model

    torch.manual_seed(seed)
    config = ModelConfig(**TINY_MODEL, conditioning=conditioning, refine_channels=refine)
    net = ConditionalUNet(config)
    if refine:  # off its zero start, so that the head's output counts in a comparison
        torch.nn.init.normal_(net.refine.layers[-1].weight, std=0.1)
    render = RenderInfo(render_seed, 3, None, "cpu") if render_seed is not None else None
    save_model(
        folder, net, ModelCard(config, DiffusionConfig(), ModelInfo(render=render)), dtype=torch.float32
    )
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="session")
def tiny_evaluator(tmp_path_factory) -> Path:
    """A randomly initialised ResNet-18 evaluator saved exactly in the course's format."""
    from fastddpm.evaluator.network import build_resnet18

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("evaluator") / "checkpoint.pth"
    torch.save({"model": build_resnet18().state_dict()}, path)
    return path
