"""`fastddpm train`: the conditional DDPM's training loop.

The whole data set sits on the device as uint8 and batches are drawn there (no DataLoader). On CUDA the model is
compiled and runs under bf16 autocast; on CPU it is plain eager fp32. EMA, cosine LR with warm-up, gradient
clipping, timed checkpoints (atomic, resumable bit for bit), timed quick evaluations logged to metrics.jsonl,
and DistributedDataParallel when launched by torchrun.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from fastddpm import atomic
from fastddpm.checkpoint import (
    CHECKPOINT_NAME,
    Progress,
    read_training_state,
    restore_training_state,
    save_training_state,
)
from fastddpm.data.reader import load_dataset, split_labels, to_model_range
from fastddpm.errors import UsageError
from fastddpm.defaults import DEFAULT_GUIDANCE
from fastddpm.loss import diffusion_loss
from fastddpm.model import ConditionalUNet, EpsilonModel, ModelCard, ModelConfig, count_parameters, save_model
from fastddpm.schedule import DiffusionConfig, NoiseSchedule

AMP_CHOICES = ("auto", "bf16", "fp16", "off")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run needs; saved as runs/NAME/config.json."""

    data: str  # i-CLEVR folder (course layout)
    out: str  # run folder
    epochs: float = 60.0  # length of the LR schedule, in passes over the data
    minutes: float | None = None  # wall-clock budget; when set, the LR schedule follows time too
    batch_size: int | None = None  # per process; None: 256 on CUDA, 32 on CPU (the shipped CPU run)
    lr: float = 4e-4
    warmup_steps: int = 200
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema: bool = True
    ema_decay: float = 0.999
    cond_drop: float = 0.1  # share of null conditions, for classifier-free guidance
    min_snr_gamma: float | None = 5.0
    amp: str = "auto"  # auto (bf16 on CUDA, off on CPU) | bf16 | fp16 | off
    compile: bool | None = None  # None: on CUDA only
    device: str = "auto"  # auto | cpu | cuda
    seed: int = 0
    checkpoint_minutes: float = 5.0
    eval_minutes: float = 10.0  # 0 disables the quick evaluation
    eval_steps: int = 20  # DDIM steps of the quick evaluation
    eval_guidance: float = DEFAULT_GUIDANCE
    evaluator: str | None = None  # None: the shipped checkpoints/evaluator.pth
    log_every: int = 25  # steps between loss readouts (each one synchronises the device)
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(data: dict) -> TrainConfig:
        data = dict(data)
        data["model"] = ModelConfig(**data["model"])
        data["diffusion"] = DiffusionConfig(**data["diffusion"])
        return TrainConfig(**data)

    def validate(self) -> None:
        if self.amp not in AMP_CHOICES:
            raise UsageError(f"--amp {self.amp!r} is not one of {', '.join(AMP_CHOICES)}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise UsageError(f"--device {self.device!r} is not one of auto, cpu, cuda")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise UsageError("--device cuda was asked for, but no CUDA device is available")
        if (
            (self.batch_size is not None and self.batch_size < 1)
            or self.epochs <= 0
            or (self.minutes is not None and self.minutes <= 0)
        ):
            raise UsageError("--batch-size, --epochs and --minutes must be positive")
        if not 0 <= self.cond_drop < 1:
            raise UsageError(f"--cond-drop must be in [0, 1); got {self.cond_drop}")


def lr_at(config: TrainConfig, step: int, fraction: float) -> float:
    """Linear warm-up, then cosine from lr to lr * min_lr_ratio over the run's fraction done."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    cosine = 0.5 * (1 + math.cos(math.pi * min(fraction, 1.0)))
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine)


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, for every parameter and floating buffer."""
    ema_params = [p for p in ema.parameters()]
    torch._foreach_lerp_(ema_params, [p.detach() for p in model.parameters()], 1 - decay)


def ema_decay_at(config: TrainConfig, step: int) -> float:
    """Short warm-up of the EMA so early snapshots are not dominated by the random init."""
    return min(config.ema_decay, (1 + step) / (10 + step))


class StopRequest:
    """SIGINT / SIGTERM set a flag; the loop saves a checkpoint and returns cleanly."""

    def __init__(self) -> None:
        self.requested = False
        self.previous = {}

    def __enter__(self) -> StopRequest:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def resolve_device(config: TrainConfig) -> torch.device:
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if config.device == "cpu" or (config.device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def training_module(net: ConditionalUNet, diffusion: DiffusionConfig) -> torch.nn.Module:
    """What the loss sees: the network in its training parameterisation, eps (EpsilonModel adds the skip) or v."""
    return EpsilonModel(net, diffusion) if diffusion.prediction == "epsilon" else net


def default_batch_size(device: torch.device) -> int:
    """Per-process batch when --batch-size is not given: 256 on CUDA, 32 on a CPU (the shipped CPU run)."""
    return 256 if device.type == "cuda" else 32


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    if config.amp == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[config.amp]


def load_run_config(out: Path, config: TrainConfig) -> TrainConfig:
    """On resume the saved config rules; only the run length (epochs, minutes) may change."""
    saved_path = out / "config.json"
    if not saved_path.is_file():
        raise UsageError(f"--resume: {str(out)!r} holds no config.json of an earlier run")
    saved = TrainConfig.from_dict(json.loads(saved_path.read_text()))
    if saved.model != config.model or saved.diffusion != config.diffusion:
        raise UsageError(
            f"--resume: {out} was trained with model {saved.model} and diffusion {saved.diffusion}; "
            f"this call asks for {config.model} and {config.diffusion}"
        )
    return dataclasses.replace(saved, epochs=config.epochs, minutes=config.minutes)


class QuickEval:
    """Every `eval_minutes`: DDIM-`eval_steps` samples of the data set's test splits from the EMA weights,
    scored by the evaluator (loaded lazily; skipped with a note when there is none)."""

    def __init__(self, config: TrainConfig, schedule: NoiseSchedule, device: torch.device) -> None:
        self.config, self.schedule, self.device = config, schedule, device
        self.splits = split_labels(config.data)
        self.evaluator = None
        self.note = ""

    def __call__(self, ema: torch.nn.Module) -> dict[str, float]:
        from fastddpm.evaluator import Evaluator
        from fastddpm.generate import SampleSettings
        from fastddpm.scoring import score_splits

        if not self.splits:
            self.note = "no test.json / new_test.json in the data folder"
            return {}
        if self.evaluator is None:
            try:
                self.evaluator = Evaluator(self.config.evaluator, self.device)
            except UsageError as err:
                self.note = str(err)
                return {}
        settings = SampleSettings("ddim", self.config.eval_steps, guidance=self.config.eval_guidance)
        eps = EpsilonModel(ema, self.config.diffusion).to(self.device).eval()
        with (
            torch.no_grad(),
            torch.autocast(self.device.type, torch.bfloat16, enabled=self.device.type == "cuda"),
        ):
            scores = score_splits(eps, self.schedule, self.splits, settings, [0], self.evaluator, self.device)
        return {f"acc_{name}": values[0] for name, values in scores.items()}


def train(
    config: TrainConfig,
    resume: bool = False,
    progress: Callable[[int, int, str], None] | None = None,
    max_steps: int | None = None,  # stop early after this many steps (tests, smoke runs)
) -> Path:
    """Train (or resume) a run; returns the folder of the final EMA model."""
    config.validate()
    out = Path(config.out)
    if resume:
        config = load_run_config(out, config)
    elif (out / CHECKPOINT_NAME).exists():
        raise UsageError(
            f"{str(out)!r} already holds a run; pass --resume to continue it or choose another --out"
        )
    distributed = int(os.environ.get("WORLD_SIZE", 1)) > 1
    device = resolve_device(config)
    if config.batch_size is None:
        config = dataclasses.replace(config, batch_size=default_batch_size(device))
    if distributed:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    try:
        return _train(config, resume, progress if rank == 0 else None, max_steps, device, rank, world)
    except torch.cuda.OutOfMemoryError:
        raise UsageError(
            f"out of GPU memory at --batch-size {config.batch_size} (per process); try --batch-size "
            f"{max(1, config.batch_size // 2)} or a smaller model (--channels)"
        ) from None
    finally:
        if distributed:
            dist.destroy_process_group()


def _train(config, resume, progress, max_steps, device, rank, world) -> Path:
    out = Path(config.out)
    if rank == 0:
        data = load_dataset(config.data)  # builds the cache once
        atomic.write_json(out / "config.json", config.to_dict())
    if world > 1:
        dist.barrier()
    if rank:
        data = load_dataset(config.data)
    images, labels = data.images.to(device), data.labels.to(device)  # (N, 3, 64, 64) uint8, (N, 24)
    torch.manual_seed(config.seed)
    net = ConditionalUNet(config.model).to(device)
    ema = copy.deepcopy(net).requires_grad_(False) if config.ema else None
    optimizer = torch.optim.AdamW(
        net.parameters(), lr=config.lr, betas=(0.9, 0.99), weight_decay=config.weight_decay
    )
    generator = torch.Generator(device).manual_seed(config.seed * 1000 + rank)
    state = Progress()
    if resume:
        tensors, meta = read_training_state(out / CHECKPOINT_NAME)
        state = restore_training_state(tensors, meta, net, ema, optimizer, generator)
        if rank:  # the checkpoint holds rank 0's stream; other ranks continue on fresh, distinct streams
            generator.manual_seed(config.seed * 1000 + rank + world * state.step)
    trained = training_module(net, config.diffusion).to(device)
    model = torch.nn.parallel.DistributedDataParallel(trained) if world > 1 else trained
    if config.compile if config.compile is not None else device.type == "cuda":
        model = torch.compile(model)
    schedule = NoiseSchedule.from_config(config.diffusion).to(device)
    amp = autocast_dtype(config, device)
    total_steps = max(1, math.ceil(config.epochs * len(data.names) / (config.batch_size * world)))
    quick_eval = QuickEval(config, schedule, device) if rank == 0 and config.eval_minutes > 0 else None
    metrics_path = out / "metrics.jsonl"

    def fraction_done() -> float:
        by_time = state.train_seconds / (config.minutes * 60) if config.minutes else 0.0
        return max(state.step / total_steps, by_time)

    def save() -> None:
        if rank == 0:
            save_training_state(
                out / CHECKPOINT_NAME, net, ema, optimizer, generator, state, config.to_dict()
            )

    def log(record: dict) -> None:
        with open(metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    if rank == 0 and not resume:
        metrics_path.unlink(missing_ok=True)
        log(
            {
                "event": "start",
                "parameters": count_parameters(net),
                "images": len(data.names),
                "device": str(device),
            }
        )
    last_ckpt = last_eval = time.perf_counter()
    window_start, window_images, running_loss = time.perf_counter(), 0, torch.zeros((), device=device)
    steps_this_call = 0
    with StopRequest() as stop:
        while fraction_done() < 1.0 and not (max_steps is not None and steps_this_call >= max_steps):
            tick = time.perf_counter()
            for group in optimizer.param_groups:
                group["lr"] = lr_at(config, state.step, fraction_done())
            index = torch.randint(len(data.names), (config.batch_size,), device=device, generator=generator)
            x0 = to_model_range(images[index])
            with torch.autocast(device.type, amp, enabled=amp is not None):
                loss = diffusion_loss(
                    model,
                    schedule,
                    x0,
                    labels[index],
                    prediction=config.diffusion.prediction,
                    cond_drop=config.cond_drop,
                    min_snr_gamma=config.min_snr_gamma,
                    generator=generator,
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
            optimizer.step()
            if ema is not None:
                ema_update(ema, net, ema_decay_at(config, state.step))
            state.step += 1
            steps_this_call += 1
            state.images_seen += config.batch_size * world
            window_images += config.batch_size * world
            running_loss += loss.detach()
            state.train_seconds += time.perf_counter() - tick
            if state.step % config.log_every:
                continue
            # Every log_every steps: read the loss (a device sync), then agree across ranks on stop / checkpoint.
            now = time.perf_counter()
            rate = window_images / (now - window_start)
            mean_loss = (running_loss / config.log_every).item()
            state.train_seconds += time.perf_counter() - now
            if progress:  # with a time budget the total is the step count the budget is heading for
                estimate = max(state.step, round(state.step / max(fraction_done(), 1e-9)))
                progress(state.step, estimate, f"loss {mean_loss:.4f}  {rate:,.0f} img/s")
            if rank == 0:
                log(
                    {
                        "step": state.step,
                        "train_seconds": round(state.train_seconds, 2),
                        "loss": mean_loss,
                        "lr": optimizer.param_groups[0]["lr"],
                        "images_per_second": round(rate, 1),
                    }
                )
            flags = torch.tensor(
                [stop.requested, now - last_ckpt > config.checkpoint_minutes * 60], dtype=torch.float32
            )
            if world > 1:
                flags = flags.to(device)
                dist.all_reduce(flags, op=dist.ReduceOp.MAX)
            if flags[0]:
                break
            if flags[1]:
                save()
                last_ckpt = time.perf_counter()
            if quick_eval and now - last_eval > config.eval_minutes * 60:
                log(
                    {
                        "step": state.step,
                        "train_seconds": round(state.train_seconds, 2),
                        **_timed(quick_eval, ema or net),
                    }
                )
                last_eval = time.perf_counter()
            window_start, window_images, running_loss = time.perf_counter(), 0, torch.zeros((), device=device)
    save()
    final = out / "model"
    if rank == 0:
        if quick_eval and not stop.requested:
            log(
                {
                    "step": state.step,
                    "train_seconds": round(state.train_seconds, 2),
                    **_timed(quick_eval, ema or net),
                }
            )
        info = {
            "data": config.data,
            "steps": state.step,
            "images_seen": state.images_seen,
            "train_seconds": round(state.train_seconds, 1),
            "world_size": world,
            "device": str(device),
            "render": _render_manifest(config.data),
            "parameters": count_parameters(net),
        }
        save_model(final, ema or net, ModelCard(config.model, config.diffusion, info))
    return final


def _timed(quick_eval: QuickEval, net: torch.nn.Module) -> dict:
    start = time.perf_counter()
    result = quick_eval(net)
    return {
        **result,
        "eval_seconds": round(time.perf_counter() - start, 1),
        **({"note": quick_eval.note} if not result else {}),
    }


def _render_manifest(data: str) -> dict | None:
    path = Path(data) / "render.json"
    return json.loads(path.read_text()) if path.is_file() else None


def launch_torchrun(gpus: int, argv: list[str]) -> int:
    """`fastddpm train --gpus N ...` -> `torchrun --nproc-per-node N -m fastddpm train ...` (without --gpus)."""
    import subprocess
    import sys

    args, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--gpus":
            skip = True
            continue
        if not arg.startswith("--gpus="):
            args.append(arg)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={gpus}",
        "-m",
        "fastddpm",
        *args,
    ]
    return subprocess.call(cmd)
