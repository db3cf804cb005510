"""The course-style baseline: a ~64M-parameter diffusers UNet2DModel at 64x64 (4 levels 64-128-256-512, two ResNet
layers per level, attention on the three lower levels), conditioned by a Linear(24 -> 256) class embedding, run the
way course reports run it: eager fp32, one scheduler step at a time."""

from __future__ import annotations

import torch
from diffusers import UNet2DModel
from torch import nn


COURSE_CHANNELS = (64, 128, 256, 512)


class CourseUNet(nn.Module):
    def __init__(self, channels: tuple[int, ...] = COURSE_CHANNELS) -> None:
        """`channels` other than the course's only for smoke runs (multiples of 32: GroupNorm's 32 groups)."""
        super().__init__()
        self.unet = UNet2DModel(
            sample_size=64,
            layers_per_block=2,
            block_out_channels=channels,
            down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
            class_embed_type="identity",
        )
        self.label_embed = nn.Linear(24, 4 * channels[0])  # the size of its time embedding

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t, class_labels=self.label_embed(cond)).sample
