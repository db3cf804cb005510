"""`fastddpm evaluator train`: the stand-in for the course's evaluator.

Same architecture, input and checkpoint format as the course's; trained on rendered scenes of 1-5 objects, each
image seen at 64x64 or blurred through 32x32 (as the course's evaluator was), and scored on held-out renders.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from fastddpm import atomic
from fastddpm.data.reader import Dataset, load_dataset, to_model_range
from fastddpm.errors import UsageError
from fastddpm.evaluator import SCORE_BATCH, build_resnet18, topk_hits


@dataclass(frozen=True)
class EvaluatorTrainConfig:
    data: tuple[str, ...]  # rendered folders (1-5 object scenes), used together
    holdout: str | None  # rendered 1-3 object scenes of another seed, never trained on
    epochs: int = 4
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    blur_prob: float = 0.5  # share of images seen through 32x32
    seed: int = 0
    half: bool = True  # save fp16 weights (22 MB instead of 45 MB)


def augment(x: torch.Tensor, blur_prob: float, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flip (labels are mirror-invariant) and, for a share of images, the 64->32->64 blur."""
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    blur = torch.rand(x.shape[0], generator=generator) < blur_prob
    small = F.interpolate(x, size=32, mode="bilinear", antialias=True, align_corners=False)
    blurred = F.interpolate(small, size=64, mode="bilinear", align_corners=False)
    return torch.where(blur[:, None, None, None], blurred, x)


@torch.no_grad()
def holdout_accuracy(model: torch.nn.Module, data: Dataset) -> dict[str, float]:
    """Micro top-k accuracy over the whole held-out set, and per object count."""
    model.eval()
    scores = torch.cat([model(to_model_range(chunk)) for chunk in data.images.split(SCORE_BATCH)])
    counts = data.labels.sum(1).long()
    result = {}
    for n in [0, *sorted(set(counts.tolist()))]:
        rows = counts == n if n else torch.ones_like(counts, dtype=torch.bool)
        hits, total = topk_hits(scores[rows], data.labels[rows])
        result["all" if n == 0 else f"{n}_objects"] = hits / total
    return result


def train_evaluator(
    config: EvaluatorTrainConfig,
    out: str | Path,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict:
    """Train, score on the held-out set, and save `out` (course format) plus `out`.json (config and results)."""
    out = Path(out)
    if config.epochs < 1 or config.batch_size < 1:
        raise UsageError(
            f"--epochs and --batch-size must be positive; got {config.epochs}, {config.batch_size}"
        )
    if out.suffix != ".pth":
        raise UsageError(f"--out must name a .pth file like checkpoints/evaluator.pth; got {str(out)!r}")
    parts = [load_dataset(folder) for folder in config.data]
    train = Dataset(
        torch.cat([p.images for p in parts]),
        torch.cat([p.labels for p in parts]),
        [n for p in parts for n in p.names],
    )
    holdout = load_dataset(config.holdout) if config.holdout else None
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = build_resnet18()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = len(train.names) // config.batch_size
    total = steps_per_epoch * config.epochs
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=total, pct_start=0.1)
    start, step = time.perf_counter(), 0
    for _ in range(config.epochs):
        model.train()
        order = torch.randperm(len(train.names), generator=generator)
        for batch in order[: steps_per_epoch * config.batch_size].view(steps_per_epoch, -1):
            x = augment(to_model_range(train.images[batch]), config.blur_prob, generator)
            loss = F.binary_cross_entropy(model(x), train.labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            if progress:
                progress(step, total, f"loss {loss.item():.4f}")
    seconds = time.perf_counter() - start
    state = {
        k: (v.half() if config.half and v.is_floating_point() else v) for k, v in model.state_dict().items()
    }
    with atomic.atomic_path(out) as tmp:
        torch.save({"model": state}, tmp)
    report = {
        "config": dataclasses.asdict(config),
        "train_images": len(train.names),
        "steps": step,
        "train_seconds": round(seconds, 1),
        "holdout_images": len(holdout.names) if holdout else 0,
        "holdout_accuracy": holdout_accuracy(model, holdout) if holdout else None,
        "torch": torch.__version__,
    }
    atomic.write_text(out.with_suffix(".json"), json.dumps(report, indent=2) + "\n")
    return report
