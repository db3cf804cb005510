"""`fastddpm train`: the conditional DDPM's training loop, in phases: build the run (train_setup.py), step,
check in periodically (log, checkpoint, quick evaluation), finish.

The whole data set sits on the device as uint8 and batches are drawn there (no DataLoader). On CUDA the model is
compiled and runs under bf16 autocast; on a CPU it runs eager, under bf16 autocast where the CPU has native bf16
arithmetic (AVX-512 BF16 or AMX) and in fp32 elsewhere. EMA, cosine LR with warm-up, gradient
clipping, timed checkpoints (atomic, resumable bit for bit), timed quick evaluations logged to metrics.jsonl,
and DistributedDataParallel when launched by torchrun.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from fastddpm.card import ModelInfo
from fastddpm.training.run_folder import RunFolder
from fastddpm.configs import TrainConfig
from fastddpm.data.reader import to_model_range
from fastddpm.errors import UsageError
from fastddpm.training.loss import diffusion_loss
from fastddpm.model import ModelCard, count_parameters, save_model
from fastddpm.runtime import autocast, resolve_device
from fastddpm.training.init_model import with_init
from fastddpm.training.setup import (
    Run,
    build_run,
    check_config,
    check_fits_in_memory,
    claim_run,
    default_batch_size,
)

ProgressFn = Callable[[int, int, str], None]  # (steps done, steps expected, info)


def lr_at(config: TrainConfig, step: int, fraction: float) -> float:
    """Linear warm-up, then cosine from lr to lr * min_lr_ratio over the run's fraction done."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    cosine = 0.5 * (1 + math.cos(math.pi * min(fraction, 1.0)))
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine)


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, for every trained parameter (frozen ones already equal their
    EMA; buffers are not averaged: the UNet's GroupNorms keep none)."""
    pairs = [
        (e, p.detach()) for e, p in zip(ema.parameters(), model.parameters(), strict=True) if p.requires_grad
    ]
    torch._foreach_lerp_([e for e, _ in pairs], [p for _, p in pairs], 1 - decay)


def ema_decay_at(config: TrainConfig, step: int) -> float:
    """Short warm-up of the EMA so early snapshots are not dominated by the random init."""
    return min(config.ema_decay, (1 + step) / (10 + step))


class StopRequest:
    """SIGINT / SIGTERM set `signum`; the loop notices within a step, saves a checkpoint and returns."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.previous: dict = {}

    def __enter__(self) -> StopRequest:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


@dataclass(frozen=True)
class TrainResult:
    model_dir: Path | None  # the model folder, usable as --model anywhere (distill: None when stopped early)
    step: int
    stopped_by: int | None  # the signal that stopped the run early, None when it ran to the end


def train(
    config: TrainConfig,
    resume: bool = False,
    progress: ProgressFn | None = None,
    max_steps: int | None = None,  # stop early after this many steps (tests, smoke runs)
) -> TrainResult:
    """Train (or resume) the run in `config.out`, owning that folder while it runs (rank 0 holds the lock; the
    other ranks of a torchrun launch share the folder)."""
    check_config(config)
    # Every refusal before the lock, whose file stays beside the folder. A resume takes its weights from the
    # checkpoint, so its --init folder is not read again (it may be gone).
    config = claim_run(config if resume else with_init(config), resume)
    check_fits_in_memory(config)
    owner = os.environ.get("RANK", "0") == "0"
    with RunFolder(config.out).owned() if owner else contextlib.nullcontext():
        if owner and not resume:
            RunFolder(config.out).claim_new()  # again, under the lock: a run may have started there since
        return _train(config, resume, progress, max_steps)


def _train(
    config: TrainConfig, resume: bool, progress: ProgressFn | None, max_steps: int | None
) -> TrainResult:
    distributed = int(os.environ.get("WORLD_SIZE", 1)) > 1
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = resolve_device(config.device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if config.batch_size is None:
        config = dataclasses.replace(config, batch_size=default_batch_size(device))
    if distributed:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    try:
        run = build_run(config, resume, device, rank, world)
        with StopRequest() as stop:
            train_loop(run, stop, progress if rank == 0 else None, max_steps)
        return finish(run, stop.signum)
    except torch.cuda.OutOfMemoryError:
        raise UsageError(
            f"out of GPU memory at --batch-size {config.batch_size} (per process); try --batch-size "
            f"{max(1, config.batch_size // 2)} or a smaller model (--channels)"
        ) from None
    finally:
        if distributed:
            dist.destroy_process_group()


def random_hflip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each (B, C, H, W) image mirrored left-right with probability 1/2 (one draw per image from `generator`)."""
    flip = torch.rand(images.shape[0], device=images.device, generator=generator) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)


def train_step(run: Run) -> torch.Tensor:
    """One optimisation step on a fresh batch; returns the loss (not synchronised)."""
    config, counters = run.config, run.counters
    for group in run.optimizer.param_groups:
        group["lr"] = lr_at(config, counters.step, run.fraction_done())
    index = torch.randint(len(run.images), (config.batch_size,), device=run.device, generator=run.generator)
    images = run.images[index]
    if config.hflip:  # drawn only when on, so runs without it keep their random stream
        images = random_hflip(images, run.generator)
    with autocast(run.device, run.autocast):
        loss = diffusion_loss(
            run.eps_model,
            run.schedule,
            to_model_range(images),
            run.labels[index],
            cond_drop=config.cond_drop,
            min_snr_gamma=config.min_snr_gamma,
            min_snr_floor=config.min_snr_floor,
            generator=run.generator,
            forward=run.model,
        )
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(run.net.parameters(), config.grad_clip)
    run.optimizer.step()
    if run.ema is not None:
        ema_update(run.ema, run.net, ema_decay_at(config, counters.step))
    counters.step += 1
    counters.images_seen += config.batch_size * run.world
    return loss.detach()


def train_loop(run: Run, stop: StopRequest, progress: ProgressFn | None, max_steps: int | None) -> None:
    """Step until the schedule ends, `max_steps` is reached or a signal arrives; check in every log_every steps."""
    config, counters = run.config, run.counters
    window = _Window(run.device)
    last_checkpoint = last_eval = time.perf_counter()
    steps_this_call = 0
    while run.fraction_done() < 1.0 and (max_steps is None or steps_this_call < max_steps):
        if stop.signum is not None and run.world == 1:  # one process stops at once; ranks agree at check-ins
            break
        steps_this_call += 1
        tick = time.perf_counter()
        window.add(train_step(run), config.batch_size * run.world)
        counters.train_seconds += time.perf_counter() - tick
        if counters.step % config.log_every:
            continue
        # Check in: read the loss (a device sync), log, then agree across ranks on stop / checkpoint.
        now = time.perf_counter()
        loss, rate = window.read(config.log_every)
        counters.train_seconds += time.perf_counter() - now
        if progress:  # with a time budget the total is the step count the budget is heading for
            estimate = max(counters.step, round(counters.step / max(run.fraction_done(), 1e-9)))
            progress(counters.step, estimate, f"loss {loss:.4f}  {rate:,.0f} img/s")
        run.log(loss=loss, lr=run.optimizer.param_groups[0]["lr"], images_per_second=round(rate, 1))
        stopping, checkpoint_due = _agree(run, stop.signum is not None, now - last_checkpoint)
        if stopping:
            break
        if checkpoint_due:
            run.save()
            last_checkpoint = time.perf_counter()
        if run.quick_eval and now - last_eval > config.eval_minutes * 60:
            run.log(**run.quick_eval(run.ema or run.net))
            last_eval = time.perf_counter()
        window = _Window(run.device)


class _Window:
    """Loss and throughput since the last check-in."""

    def __init__(self, device: torch.device) -> None:
        self.start, self.images, self.loss = time.perf_counter(), 0, torch.zeros((), device=device)

    def add(self, loss: torch.Tensor, images: int) -> None:
        self.loss += loss
        self.images += images

    def read(self, steps: int) -> tuple[float, float]:
        """(mean loss over `steps`, images per second)."""
        return (self.loss / steps).item(), self.images / (time.perf_counter() - self.start)


def _agree(run: Run, stop: bool, since_checkpoint: float) -> tuple[bool, bool]:
    """(stop now, checkpoint now), the same on every rank."""
    flags = torch.tensor([stop, since_checkpoint > run.config.checkpoint_minutes * 60], dtype=torch.float32)
    if run.world > 1:
        flags = flags.to(run.device)
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    return bool(flags[0]), bool(flags[1])


def finish(run: Run, stopped_by: int | None) -> TrainResult:
    """Save the checkpoint; on a full run also evaluate; write the EMA model folder."""
    run.save()
    final = run.out / "model"
    if stopped_by is not None:
        run.log(event="stop", signal=signal.Signals(stopped_by).name)
    elif run.quick_eval:
        run.log(**run.quick_eval(run.ema or run.net))
    if run.rank == 0:
        info = ModelInfo(
            data=run.config.data,
            steps=run.counters.step,
            images_seen=run.counters.images_seen,
            train_seconds=round(run.counters.train_seconds, 1),
            world_size=run.world,
            device=str(run.device),
            render=run.render,
            parameters=count_parameters(run.net),
            init=run.config.init,
            init_sha256=run.config.init_sha256,
        )
        save_model(final, run.ema or run.net, ModelCard(run.config.model, run.config.diffusion, info))
    return TrainResult(final, run.counters.step, stopped_by)
