"""The bookkeeping of a `fastddpm distill` run (the method is in method.py, the loop in loop.py): its folder,
data, counters, per-stage optimiser, check-ins (log, checkpoint), stop and resume bit for bit, and each stage's
student folder."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from fastddpm.training.checkpoint import (
    TrainCounters,
    read_training_state,
    restore_training_state,
    save_training_state,
)
from fastddpm.card import StudentInfo
from fastddpm.distill.config import DistillConfig
from fastddpm.data.reader import load_dataset, to_model_range
from fastddpm.distill.method import Stage, stage_folder, stage_teacher
from fastddpm.errors import UsageError
from fastddpm.model import EpsilonModel, ModelCard, checkpoint_sha256, load_card, load_model, save_model
from fastddpm.runtime import resolve_device
from fastddpm.schedule import NoiseSchedule
from fastddpm.evaluator.quick import QuickEval
from fastddpm.training.run_folder import RunFolder


def teacher_settings(
    card: ModelCard, from_steps: int | None, guidance: float | None
) -> tuple[int, float, bool]:
    """(from_steps, guidance, fold_guidance) for distilling the model of `card`, filling what was not given: a
    teacher that is itself a student halves from its own steps with its folded scale (other values are refused);
    any other teacher folds `guidance` (default: its card's) and halves from `from_steps`."""
    student = card.info.student
    if not student:
        steps = DistillConfig.from_steps if from_steps is None else from_steps
        return steps, card.sampling.guidance if guidance is None else guidance, True
    if guidance not in (None, student.guidance_folded):
        raise UsageError(
            f"--guidance {guidance}: this teacher is a student with guidance {student.guidance_folded} folded "
            "in; leave --guidance out"
        )
    if from_steps not in (None, student.steps):
        raise UsageError(
            f"--from-steps {from_steps}: this teacher is a student that samples with {student.steps} steps, "
            "where the halving starts; leave --from-steps out"
        )
    return student.steps, student.guidance_folded, False


def saved_config(out: Path) -> DistillConfig:
    """The config of the distillation in `out` (that folder, wherever it was made), or one line saying why not."""
    hint = "; a training run continues with `fastddpm train --resume`"
    config = RunFolder(out, "distillation").saved_config(lambda fields: DistillConfig(**fields), hint)
    config.validate()
    return dataclasses.replace(config, out=str(out))


class DistillRun:
    def __init__(self, config: DistillConfig, meta: dict | None, tensors: dict | None) -> None:
        self.config, self.out = config, Path(config.out)
        self.folder = RunFolder(config.out, "distillation")
        self.device = resolve_device(config.device)
        self.card = load_card(config.model)
        self.teacher_sha256 = checkpoint_sha256(config.model)
        # one quick evaluation per stage, made first: a bad test split in the data folder stops the run before any work
        self.quick_evals = {
            steps: QuickEval(
                config.data, self.card.diffusion, self.device, steps or config.from_steps, 1.0, None
            )
            for steps in config.stages()
        }
        data = load_dataset(config.data)
        self.images, self.labels = data.images.to(self.device), data.labels.to(self.device)
        self.schedule = NoiseSchedule.from_config(self.card.diffusion).to(self.device)
        self.generator = torch.Generator(self.device).manual_seed(config.seed)
        self.counters = TrainCounters(**meta["progress"]) if meta else TrainCounters()
        state = (meta or {}).get("config", {})
        self.stage_index, self.stage_step = state.get("stage", 0), state.get("stage_step", 0)
        self.stage_seconds = state.get("stage_seconds", 0.0)
        self.resume_state = (tensors, meta) if tensors is not None else None
        self.optimizer: torch.optim.Optimizer | None = None
        self.last_checkpoint = time.perf_counter()

    @staticmethod
    def check(config: DistillConfig, resume: bool) -> DistillConfig:
        """Before the run folder's lock (whose file stays beside the folder, so every refusal comes first),
        reading only: on --resume the saved config, which rules (but for where the run lives); else `config`,
        once the folder holds no run and the teacher's weights load and fit its values."""
        folder = RunFolder(config.out, "distillation")
        if resume:
            return saved_config(folder.path)
        folder.claim_new()
        _, card = load_model(config.model)
        config.validate(card.diffusion.timesteps)
        return config

    @classmethod
    def start(cls, config: DistillConfig, resume: bool) -> DistillRun:
        """With the run folder owned and `config` from check(): resume from the checkpoint, or write the run's
        config.json and start its log."""
        folder = RunFolder(config.out, "distillation")
        if resume:
            tensors, meta = read_training_state(folder.checkpoint_path)
            return cls(config, meta, tensors)
        folder.claim_new()  # again, under the lock: a run may have started there since check()
        run = cls(config, None, None)
        folder.write_config(dataclasses.asdict(config))
        folder.restart_log()
        run.log(
            event="start", teacher=config.model, teacher_sha256=run.teacher_sha256, stages=config.stages()
        )
        return run

    def log(self, **fields) -> None:
        self.folder.log(self.counters, **fields)

    def open_stage(self, index: int):
        """The stage's teacher, and its student initialised from that teacher (or from the checkpoint)."""

        steps = self.config.stages()
        init = Path(self.config.model) if index == 0 else stage_folder(self.out, steps[index - 1])
        net, card = load_model(init, self.device)
        student = EpsilonModel(net, card.diffusion).train()
        self.optimizer = torch.optim.AdamW(net.parameters(), lr=self.config.lr, weight_decay=0.0)
        if self.resume_state is not None and self.stage_step > 0:  # stopped inside this stage
            restore_training_state(*self.resume_state, net, None, self.optimizer, self.generator)
        elif self.resume_state is not None:  # stopped between stages: only the batch stream carries over
            self.generator.set_state(self.resume_state[0]["rng/generator"])
        self.resume_state = None
        return Stage(index, steps[index], stage_teacher(self.config, index, steps, self.device), student)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.randint(
            len(self.images), (self.config.batch_size,), device=self.device, generator=self.generator
        )
        return to_model_range(self.images[index]), self.labels[index]

    def stage_done(self) -> bool:
        budget = self.config.minutes * 60 / len(self.config.stages()) if self.config.minutes else None
        return self.stage_step >= self.config.stage_steps or (
            budget is not None and self.stage_seconds >= budget
        )

    def save(self, stage) -> None:
        state = {**dataclasses.asdict(self.config), "stage": self.stage_index, "stage_step": self.stage_step}
        state["stage_seconds"] = self.stage_seconds
        save_training_state(
            self.folder.checkpoint_path,
            stage.student.net,
            None,
            self.optimizer,
            self.generator,
            self.counters,
            state,
        )
        self.last_checkpoint = time.perf_counter()

    def finish_stage(self, stage) -> None:
        """Save the student (fp32 in students/, and fp16 in model/ after the last stage), evaluate it, move on."""

        steps = stage.steps or self.config.from_steps  # the folded model samples at the first teacher's steps
        student = StudentInfo(
            steps=steps,
            sampler="ddim",
            guidance_folded=self.config.guidance,
            teacher=self.config.model,
            teacher_sha256=self.teacher_sha256,
            stage=stage.index,
            weighting=self.config.weighting,
            optimisation_steps=self.stage_step,
            stage_seconds=round(self.stage_seconds, 1),
        )
        info = dataclasses.replace(self.card.info, student=student)
        card = ModelCard(self.card.model, self.card.diffusion, info)
        save_model(stage_folder(self.out, stage.steps), stage.student.net, card, dtype=torch.float32)
        quick = self.quick_evals[stage.steps]
        self.log(
            stage=stage.index,
            student_steps=steps,
            stage_seconds=round(self.stage_seconds, 1),
            **quick(stage.student.net),
        )
        if stage.index + 1 == len(self.config.stages()):
            save_model(self.out / "model", stage.student.net, card)
        self.stage_index, self.stage_step, self.stage_seconds = stage.index + 1, 0, 0.0
