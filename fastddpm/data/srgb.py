"""sRGB <-> linear RGB: the renderer shades in linear light, label colours and PNGs are sRGB."""

from __future__ import annotations

import torch


def srgb_to_linear(c: torch.Tensor) -> torch.Tensor:
    return torch.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: torch.Tensor) -> torch.Tensor:
    c = c.clamp(0.0, 1.0)
    return torch.where(c <= 0.0031308, c * 12.92, 1.055 * c.clamp_min(1e-8) ** (1 / 2.4) - 0.055)


_SRGB_LUT_SIZE = 1 << 14
_srgb_lut: dict[torch.device, torch.Tensor] = {}


def srgb_bytes(linear: torch.Tensor) -> torch.Tensor:
    """Linear RGB -> sRGB uint8 through a 16k-entry table (a gather instead of a pow per channel; the table is
    fine enough that no output byte differs from the exact curve by more than one level)."""
    lut = _srgb_lut.get(linear.device)
    if lut is None:
        grid = torch.linspace(0, 1, _SRGB_LUT_SIZE, device=linear.device, dtype=torch.float64)
        lut = _srgb_lut[linear.device] = (linear_to_srgb(grid) * 255 + 0.5).to(torch.uint8)
    index = (linear.clamp(0, 1) * (_SRGB_LUT_SIZE - 1) + 0.5).long()
    return lut[index]
