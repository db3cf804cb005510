"""Label statistics of a data set, to compare with the real i-CLEVR numbers (shared README)."""

from __future__ import annotations

import torch

from fastddpm.conditions import COLORS, SHAPES


def label_statistics(labels: torch.Tensor) -> dict[str, object]:
    """labels (N, 24) multi-hot -> objects per image, per-class count range, and, among 2-object images, the share
    whose two objects have the same color / the same shape (real train.json: ~8% and ~33%)."""
    per_shape_color = labels.view(-1, len(SHAPES), len(COLORS))  # (N, shape, color)
    counts = labels.sum(1).long()
    two = per_shape_color[counts == 2]
    same_color = (two.sum(1) == 2).any(-1).float().mean().item() if len(two) else float("nan")
    same_shape = (two.sum(2) == 2).any(-1).float().mean().item() if len(two) else float("nan")
    per_class = labels.sum(0)
    return {
        "objects per image": {
            int(k): int(v) for k, v in zip(*counts.unique(return_counts=True), strict=True)
        },
        "instances per class (min-max)": f"{int(per_class.min())}-{int(per_class.max())}",
        "2-object images sharing a color": round(same_color, 4),
        "2-object images sharing a shape": round(same_shape, 4),
    }
