"""Phase 1 of `fastddpm train`: build the run. Check the config (on --resume, take the saved one), then
data, network, EMA, optimiser and generator, restored from the checkpoint on --resume. The loop is in loop.py,
the run folder's files in run_folder.py."""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from fastddpm.training.checkpoint import (
    TrainCounters,
    read_training_state,
    restore_training_state,
    save_training_state,
)
from fastddpm.training.init_model import load_init_weights
from fastddpm.training.run_folder import RunFolder
from fastddpm.card import RenderInfo
from fastddpm.configs import TrainConfig
from fastddpm.data.reader import load_dataset
from fastddpm.errors import UsageError
from fastddpm.model import (
    ConditionalUNet,
    EpsilonModel,
    TrainingForm,
    count_parameters,
    load_model,
)
from fastddpm.runtime import DTYPES, cpu_has_native_bf16, memory_bytes, resolve_device
from fastddpm.schedule import NoiseSchedule
from fastddpm.evaluator.network import Evaluator
from fastddpm.evaluator.quick import QuickEval


def default_batch_size(device: torch.device) -> int:
    """Per-process batch when --batch-size is not given: 256 on CUDA, 32 on a CPU (the shipped CPU run)."""
    return 256 if device.type == "cuda" else 32


@dataclass
class Run:
    """One training process: its data, networks, optimiser state and bookkeeping."""

    config: TrainConfig
    device: torch.device
    rank: int
    world: int
    images: torch.Tensor  # (N, 3, 64, 64) uint8 on the device
    labels: torch.Tensor  # (N, 24) multi-hot on the device
    net: ConditionalUNet  # the weights being trained
    ema: torch.nn.Module | None
    eps_model: EpsilonModel  # net with its parameterisation: the loss's targets and weights
    model: torch.nn.Module  # what the loss calls: eps_model's TrainingForm, maybe DDP-wrapped and compiled
    autocast: torch.dtype | None  # every step's autocast dtype (amp_dtype), None: fp32
    optimizer: torch.optim.Optimizer
    generator: torch.Generator  # batches, timesteps, noise and condition dropout
    schedule: NoiseSchedule
    render: RenderInfo | None  # the data set's render.json, for the model card
    counters: TrainCounters
    total_steps: int  # the LR schedule's length in steps
    quick_eval: QuickEval | None

    @property
    def out(self) -> Path:
        return Path(self.config.out)

    @property
    def folder(self) -> RunFolder:
        return RunFolder(self.config.out)

    def fraction_done(self) -> float:
        """How far along the LR schedule: by steps, or by wall time when --minutes is set (whichever is ahead)."""
        minutes = self.config.minutes
        by_time = self.counters.train_seconds / (minutes * 60) if minutes else 0.0
        return max(self.counters.step / self.total_steps, by_time)

    def log(self, **fields) -> None:
        """Append one metrics.jsonl record (rank 0 only): step and training seconds, then `fields`."""
        if self.rank == 0:
            self.folder.log(self.counters, **fields)

    def save(self) -> None:
        if self.rank == 0:
            save_training_state(
                self.folder.checkpoint_path,
                self.net,
                self.ema,
                self.optimizer,
                self.generator,
                self.counters,
                self.config.to_dict(),
            )


def check_config(config: TrainConfig) -> None:
    """Before any work, and before the run folder's lock (which creates the folder's parent): valid values, and
    --out a folder that can be written."""
    config.validate()
    RunFolder(config.out).check_writable()


def check_fits_in_memory(config: TrainConfig) -> None:
    """Before the lock: a network whose fp32 weights, gradients, AdamW moments and EMA alone outgrow the device's
    memory is refused in one line rather than failing at allocation (activations come on top)."""
    have = memory_bytes(resolve_device(config.device))
    with torch.device("meta"):  # shapes only, no memory
        parameters = count_parameters(ConditionalUNet(config.model))
    need = parameters * 4 * (5 if config.ema else 4)
    if have is not None and need > have:
        raise UsageError(
            f"the model asked for (--channels {','.join(map(str, config.model.block_channels))}, --refine "
            f"{config.model.refine_channels}) has {parameters:,} parameters; training it needs at least "
            f"{need / 2**30:,.1f} GiB, more than the {have / 2**30:,.1f} GiB here: choose fewer channels"
        )


def claim_run(config: TrainConfig, resume: bool) -> TrainConfig:
    """Before the run folder's lock, reading only: on --resume the saved config of the run in `config.out` rules,
    but for where the run and its data live (a copied run continues in the copy, on data wherever it now is) and
    its length; else refuse a folder that already holds a run."""
    folder = RunFolder(config.out)
    saved = folder.saved_config(TrainConfig.from_dict) if resume else None
    if saved is None:
        folder.claim_new()
    evaluator = (saved or config).evaluator
    if evaluator is not None:  # checked now, even with the quick evaluation off
        Evaluator(evaluator, option="--evaluator")
    if saved is None:
        return config
    if saved.model != config.model or saved.diffusion != config.diffusion:
        raise UsageError(
            f"--resume: {folder.path} was trained with model {saved.model} and diffusion {saved.diffusion}; "
            f"this call asks for {config.model} and {config.diffusion}"
        )
    return dataclasses.replace(
        saved, out=str(folder.path), data=config.data, epochs=config.epochs, minutes=config.minutes
    )


def build_run(config: TrainConfig, resume: bool, device: torch.device, rank: int, world: int) -> Run:
    """Data, network, EMA, optimiser and generator, restored from the checkpoint on --resume."""
    folder = RunFolder(config.out)
    render = RenderInfo.read(Path(config.data) / "render.json")  # checked before the data is decoded
    # Data: rank 0 builds the decode cache once; the others wait for it.
    if rank == 0:
        data = load_dataset(config.data)
        folder.write_config(config.to_dict())
    if world > 1:
        dist.barrier()
    if rank:
        data = load_dataset(config.data)
    net, ema, optimizer = _networks(config, resume, device)
    generator = torch.Generator(device).manual_seed(config.seed * 1000 + rank)
    counters = TrainCounters()
    # Resume: weights, moments, RNG states and counters from the checkpoint.
    if resume:
        tensors, meta = read_training_state(folder.checkpoint_path)
        counters = restore_training_state(tensors, meta, net, ema, optimizer, generator)
        if rank:  # the checkpoint holds rank 0's stream; other ranks continue on fresh, distinct streams
            generator.manual_seed(config.seed * 1000 + rank + world * counters.step)
    # The module the loss calls: training form, DDP, compiled.
    eps_model = EpsilonModel(net, config.diffusion).to(device)
    model = TrainingForm(eps_model)
    model = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    if config.compile if config.compile is not None else device.type == "cuda":
        model = torch.compile(model)
    run = Run(
        config=config,
        device=device,
        rank=rank,
        world=world,
        images=data.images.to(device),
        labels=data.labels.to(device),
        net=net,
        ema=ema,
        eps_model=eps_model,
        model=model,
        autocast=amp_dtype(config, device),
        optimizer=optimizer,
        generator=generator,
        schedule=NoiseSchedule.from_config(config.diffusion).to(device),
        render=render,
        counters=counters,
        total_steps=max(1, math.ceil(config.epochs * len(data.names) / (config.batch_size * world))),
        quick_eval=_quick_eval(config, device) if rank == 0 and config.eval_minutes > 0 else None,
    )
    if not resume:
        _log_start(run, len(data.names))
    return run


def _networks(
    config: TrainConfig, resume: bool, device: torch.device
) -> tuple[ConditionalUNet, torch.nn.Module | None, torch.optim.Optimizer]:
    """The network from the seed (or from --init's weights on a fresh fine-tune), its EMA, and the optimiser of
    the parameters that train: all of them, or with --freeze-body the refinement head's alone."""
    torch.manual_seed(config.seed)
    net = ConditionalUNet(config.model).to(device)
    if config.init is not None and not resume:  # before the EMA's copy, so both start from the init weights
        load_init_weights(net, load_model(config.init, device, option="--init")[0])
    ema = copy.deepcopy(net).requires_grad_(False) if config.ema else None
    # Frozen: no parameter before the head needs a gradient, so the body's forward keeps no activations.
    if config.freeze_body:
        net.requires_grad_(False)
        net.refine.requires_grad_(True)
    trainable = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        trainable, lr=config.lr, betas=(0.9, 0.99), weight_decay=config.weight_decay
    )
    return net, ema, optimizer


def amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a step: 'auto' is bf16 on CUDA and on a CPU with native bf16 arithmetic (faster than
    fp32 there, docs/training.md), else none."""
    if config.amp == "auto":
        return torch.bfloat16 if device.type == "cuda" or cpu_has_native_bf16() else None
    return None if config.amp == "off" else DTYPES[config.amp]


def _log_start(run: Run, images: int) -> None:
    """A fresh run's first metrics line, with the precision 'auto' chose on this machine ('off': fp32)."""
    if run.rank == 0:
        run.folder.restart_log()
    autocast = str(run.autocast).removeprefix("torch.") if run.autocast else "off"
    run.log(
        event="start",
        parameters=count_parameters(run.net),
        images=images,
        device=str(run.device),
        autocast=autocast,
    )


def _quick_eval(config: TrainConfig, device: torch.device) -> QuickEval:
    return QuickEval(
        config.data, config.diffusion, device, config.eval_steps, config.eval_guidance, config.evaluator
    )
