"""`fastddpm evaluator train`: the stand-in for the course's evaluator.

Same architecture, input and checkpoint format as the course's; trained on rendered scenes (1-3 objects as the
model sees them, 1-5 as the course's evaluator was trained), each image seen at 64x64 or blurred through 32x32 (as
the course's evaluator was), with a validation render scored after every epoch. Writes a run folder:

    OUT/evaluator.pth    {"model": state_dict} in fp16, loadable by the course's own code
    OUT/evaluator.json   the config, data, wall time, machine and final validation accuracy
    OUT/metrics.jsonl    loss and validation accuracy per epoch

Ship it by copying OUT/evaluator.pth to checkpoints/evaluator.pth (the card says how it was made).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from fastddpm import atomic
from fastddpm.evaluator.config import EvaluatorTrainConfig
from fastddpm.data.reader import Dataset, load_dataset, to_model_range
from fastddpm.errors import UsageError
from fastddpm.evaluator.network import SCORE_BATCH, Evaluator, build_resnet18, topk_hits
from fastddpm.runtime import autocast, device_name, resolve_device

WEIGHTS_FILE, RECORD_FILE, METRICS_FILE = "evaluator.pth", "evaluator.json", "metrics.jsonl"


def blur_through_32(x: torch.Tensor) -> torch.Tensor:
    """64 -> 32 -> 64: how the course's evaluator saw its training images."""
    small = F.interpolate(x, size=32, mode="bilinear", antialias=True, align_corners=False)
    return F.interpolate(small, size=64, mode="bilinear", align_corners=False)


def augment(x: torch.Tensor, blur_prob: float, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flip (labels are mirror-invariant) and, for a share of images, the 64->32->64 blur."""
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    blur = torch.rand(x.shape[0], generator=generator) < blur_prob
    return torch.where(blur[:, None, None, None], blur_through_32(x), x)


@torch.no_grad()
def heldout_accuracy(model: torch.nn.Module, data: Dataset, blur: bool = False) -> dict[str, float]:
    """Micro top-k accuracy (course formula) over a whole held-out set, and per object count."""
    model.eval()
    device = next(model.parameters()).device
    chunks = []
    for chunk in data.images.split(SCORE_BATCH):
        x = to_model_range(chunk.to(device))
        chunks.append(model(blur_through_32(x) if blur else x).float().cpu())
    scores = torch.cat(chunks)
    counts = data.labels.sum(1).long()
    result = {}
    for n in [0, *sorted(set(counts.tolist()))]:
        rows = counts == n if n else torch.ones_like(counts, dtype=torch.bool)
        hits, total = topk_hits(scores[rows], data.labels[rows])
        result["all" if n == 0 else f"{n}_objects"] = hits / total
    return result


def check_out(out: Path, force: bool) -> None:
    """A run folder, never a file; an existing evaluator in it is replaced only with --force."""
    if out.suffix == ".pth":
        raise UsageError(f"--out {str(out)!r} must be a run folder (it will hold {WEIGHTS_FILE}), not a file")
    atomic.check_output_folder(out)
    if (out / WEIGHTS_FILE).exists() and not force:
        raise UsageError(
            f"{str(out / WEIGHTS_FILE)!r} exists; choose another --out or pass --force to replace it"
        )


def _combined(folders: tuple[str, ...]) -> Dataset:
    parts = [load_dataset(folder) for folder in folders]
    return Dataset(
        torch.cat([p.images for p in parts]),
        torch.cat([p.labels for p in parts]),
        [n for p in parts for n in p.names],
    )


def train_evaluator(
    config: EvaluatorTrainConfig,
    out: str | Path,
    force: bool = False,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict:
    """Train, score the validation render after every epoch, and write the run folder; returns its record."""
    out = Path(out)
    config.validate()
    check_out(out, force)
    with atomic.owned_folder(out):
        return _train_into(out, config, progress)


def _train_into(
    out: Path, config: EvaluatorTrainConfig, progress: Callable[[int, int, str], None] | None
) -> dict:
    device = resolve_device(config.device)
    # the starting network is loaded (a clear message if it is not an evaluator) before the data loads
    start = Evaluator(config.init, option="--init").model if config.init else None
    train = _combined(config.data)
    if len(train.names) < config.batch_size:  # an epoch would hold no step
        raise UsageError(
            f"--batch-size {config.batch_size} is more than the {len(train.names)} images in --data; give "
            f"--batch-size {len(train.names)} or less"
        )
    validation = load_dataset(config.validation) if config.validation else None
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = (build_resnet18() if start is None else start).to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = len(train.names) // config.batch_size
    total = steps_per_epoch * config.epochs
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=total, pct_start=0.1)
    out.mkdir(parents=True, exist_ok=True)
    (out / METRICS_FILE).unlink(missing_ok=True)
    start, accuracy = time.perf_counter(), None
    for epoch in range(1, config.epochs + 1):
        order = torch.randperm(len(train.names), generator=generator)[: steps_per_epoch * config.batch_size]
        losses = []
        for batch in order.view(steps_per_epoch, -1):
            losses.append(_step(model, optimizer, train, batch, config, generator, device))
            schedule.step()
            if progress:
                progress((epoch - 1) * steps_per_epoch + len(losses), total, f"epoch {epoch}")
        accuracy = heldout_accuracy(model, validation) if validation else None
        record = {
            "epoch": epoch,
            "step": epoch * steps_per_epoch,
            "seconds": round(time.perf_counter() - start, 1),
        }
        record |= {"loss": torch.stack(losses).mean().item(), "validation": accuracy}
        with open(out / METRICS_FILE, "a") as f:
            f.write(json.dumps(record) + "\n")
    save_course_format(model, out / WEIGHTS_FILE, config.half)
    report = {
        "config": dataclasses.asdict(config),
        "train_images": len(train.names),
        "renders": {folder: _render_manifest(folder) for folder in config.data},
        "steps": total,
        "train_seconds": round(time.perf_counter() - start, 1),
        "machine": device_name(device),
        "validation_accuracy": accuracy,
        "torch": torch.__version__,
    }
    atomic.write_json(out / RECORD_FILE, report)
    return report


def _step(model, optimizer, train: Dataset, batch, config, generator, device) -> torch.Tensor:
    """One step on the images `batch` indexes, augmented; returns the loss (not synchronised)."""
    model.train()
    x = augment(to_model_range(train.images[batch]), config.blur_prob, generator)
    with autocast(device, torch.bfloat16 if config.bf16 else None):
        scores = model(x.to(device, memory_format=torch.channels_last))
    loss = F.binary_cross_entropy(scores.float(), train.labels[batch].to(device))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def save_course_format(model: torch.nn.Module, path: Path, half: bool) -> None:
    """{"model": state_dict}, contiguous, in fp16 when `half`: what the course's own code loads."""
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    with atomic.atomic_path(path) as tmp:
        torch.save({"model": {k: v.cpu().contiguous() for k, v in state.items()}}, tmp)


def _render_manifest(folder: str) -> dict | None:
    path = Path(folder) / "render.json"
    return json.loads(path.read_text()) if path.is_file() else None
