"""The course's evaluator: a torchvision ResNet-18 whose fc is Linear(512, 24) + Sigmoid, scoring (B, 3, 64, 64)
images in [-1, 1] with a micro top-k accuracy.

`Evaluator` loads the course's checkpoint.pth unchanged (`torch.load(path)["model"]`, the whole ResNet-18's state
dict) and runs on CPU or GPU. The project ships a stand-in with the same architecture, input and format, trained on
rendered scenes (checkpoints/evaluator.pth; see evaluator_train.py).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from fastddpm.conditions import NUM_CLASSES
from fastddpm.errors import UsageError
from fastddpm.paths import default_evaluator_path

SCORE_BATCH = 256  # images per forward pass; eval-mode BatchNorm makes the result independent of it


def build_resnet18() -> nn.Module:
    """torchvision ResNet-18, no pretrained weights, fc = Linear(512, 24) followed by Sigmoid."""
    import torchvision

    model = torchvision.models.resnet18(weights=None)
    model.fc = nn.Sequential(nn.Linear(512, NUM_CLASSES), nn.Sigmoid())
    return model


def topk_hits(scores: torch.Tensor, targets: torch.Tensor) -> tuple[int, int]:
    """(hits, labels) of the course formula: for image i with k_i true labels, count how many of its k_i
    highest scores are true labels. scores (B, 24); targets (B, 24) multi-hot."""
    hits, total = 0, 0
    for score, target in zip(scores.float().cpu(), targets.cpu(), strict=True):
        k = int(target.sum().item())
        if k == 0:
            continue
        top = score.topk(k).indices
        hits += int(target[top].bool().sum().item())
        total += k
    return hits, total


def micro_topk_accuracy(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """accuracy = (sum of hits over the batch) / (sum of k_i): a micro-average over labels."""
    hits, total = topk_hits(scores, targets)
    if total == 0:
        raise ValueError("no true labels to score")
    return hits / total


class Evaluator:
    """Scores images with a course-format ResNet-18 checkpoint."""

    def __init__(
        self, path: str | Path | None = None, device: str | torch.device = "cpu", option: str = "--evaluator"
    ) -> None:
        """`option` names the command-line option the path came from, for the messages."""
        self.path = Path(path) if path else default_evaluator_path()
        expected = (
            "a .pth file holding {'model': state_dict}: the course's checkpoint.pth or a run's evaluator.pth"
        )
        if self.path.is_dir():
            raise UsageError(f"{option} {str(self.path)!r} is a folder; it takes {expected}")
        if not self.path.is_file():
            raise UsageError(f"evaluator checkpoint {str(self.path)!r} not found; {option} takes {expected}")
        try:
            checkpoint = torch.load(self.path, map_location="cpu", weights_only=True)
            state = checkpoint["model"]
        except Exception:  # noqa: BLE001 - any load failure is one clear message (torch's own text confuses)
            raise UsageError(
                f"{str(self.path)!r} is not a course evaluator checkpoint: expected {expected}"
            ) from None
        self.device = torch.device(device)
        self.model = build_resnet18()
        try:
            self.model.load_state_dict({k: v.float() for k, v in state.items()})
        except (RuntimeError, AttributeError):
            raise UsageError(
                f"{str(self.path)!r} does not hold a ResNet-18 with a 24-way fc (the course's evaluator)"
            ) from None
        self.model.to(self.device).eval()

    @torch.no_grad()
    def scores(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, 64, 64) in [-1, 1] -> (B, 24) sigmoid scores."""
        out = [self.model(chunk.to(self.device, torch.float32)) for chunk in images.split(SCORE_BATCH)]
        return torch.cat(out).cpu()

    def accuracy(self, images: torch.Tensor, targets: torch.Tensor) -> float:
        """The course's accuracy of one split: images (B, 3, 64, 64) in [-1, 1], targets (B, 24) multi-hot."""
        return micro_topk_accuracy(self.scores(images), targets)
