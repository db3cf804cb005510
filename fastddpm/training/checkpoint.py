"""Training state on disk: one safetensors file holding model, EMA, optimizer moments and RNG states, with the
step, elapsed time, optimizer hyper-parameters and the run's config as JSON metadata. No pickles, no code."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from fastddpm import atomic
from fastddpm.errors import UsageError

CHECKPOINT_NAME = "checkpoint.safetensors"


@dataclass
class TrainCounters:
    """How far a run has come; saved in every checkpoint."""

    step: int = 0
    images_seen: int = 0
    train_seconds: float = 0.0  # wall time spent training (compile included, evaluation excluded)


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors = {f"optim/{i}/{name}": v for i, slots in state["state"].items() for name, v in slots.items()}
    return tensors, {"param_groups": state["param_groups"]}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            _, index, name = key.split("/", 2)
            slots.setdefault(int(index), {})[name] = value
    return {"state": slots, "param_groups": meta["param_groups"]}


def save_training_state(
    path: str | Path,
    model: nn.Module,
    ema: nn.Module | None,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    counters: TrainCounters,
    config: dict,
) -> None:
    tensors = {f"model/{k}": v.detach() for k, v in model.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema/{k}": v.detach() for k, v in ema.state_dict().items()})
    optim_tensors, optim_meta = _flatten_optimizer(optimizer)
    tensors.update(optim_tensors)
    tensors["rng/torch"] = torch.get_rng_state()
    tensors["rng/generator"] = generator.get_state()
    tensors = {k: v.cpu() for k, v in tensors.items()}
    meta = {
        "progress": counters.__dict__,
        "optimizer": optim_meta,
        "config": config,
        "format": "fastddpm-train-1",
    }
    atomic.save_safetensors(path, tensors, metadata={"state": json.dumps(meta)})


def read_training_state(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, metadata) of a checkpoint, or a UsageError if it is missing, corrupt or not ours."""
    from safetensors.torch import load_file, safe_open

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no checkpoint at {str(path)!r} to resume from")
    try:
        with safe_open(str(path), "pt") as f:
            meta = json.loads((f.metadata() or {})["state"])
        tensors = load_file(str(path))
    except Exception as err:  # noqa: BLE001 - truncated file, bad header, foreign file: one clear message
        raise UsageError(
            f"{str(path)!r} is not a readable fastddpm checkpoint ({type(err).__name__}: {err})"
        ) from None
    if meta.get("format") != "fastddpm-train-1":
        raise UsageError(f"{str(path)!r} is not a fastddpm training checkpoint")
    return tensors, meta


def restore_training_state(
    tensors: dict[str, torch.Tensor],
    meta: dict,
    model: nn.Module,
    ema: nn.Module | None,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> TrainCounters:
    def part(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

    try:
        model.load_state_dict(part("model/"))
        if ema is not None:
            ema.load_state_dict(part("ema/"))
        optimizer.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))
    except (RuntimeError, KeyError, ValueError) as err:
        raise UsageError(f"checkpoint does not fit this model: {str(err)[:300]}") from None
    torch.set_rng_state(tensors["rng/torch"])
    generator.set_state(tensors["rng/generator"])
    return TrainCounters(**meta["progress"])
