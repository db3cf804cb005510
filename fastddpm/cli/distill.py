"""`fastddpm distill`: options -> DistillConfig -> fastddpm.distill.loop.distill."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from fastddpm.cli import options
from fastddpm.cli.common import (
    ProgressBar,
    clean_errors,
    exit_if_stopped,
    option,
    refuse_options_with_resume,
    say,
)
from fastddpm.cli.options import DeviceOption, ModelDir
from fastddpm.choices import Device, Weighting
from fastddpm.distill.config import DistillConfig
from fastddpm.errors import UsageError

Out = options.out("Run", "Run folder: config.json, metrics.jsonl, checkpoint, students/, model/.")
Data = options.data(
    "Run", "Images the noisy inputs are made from.", optional=True, show_default="the teacher's training set"
)
ToSteps = Annotated[int, option("Run", "DDIM steps of the final student.", min=1)]
FromSteps = Annotated[
    Optional[int],
    option(
        "Run",
        "DDIM steps of the guidance-folded teacher at the first halving (at most its schedule's timesteps).",
        min=2,
        show_default=f"{DistillConfig.from_steps}; a student teacher's own steps",
    ),
]
Guidance = options.guidance(
    "Run",
    "Guidance scale folded into the student (which samples with 1).",
    1.0,
    "the teacher card's (2 unless tuned on validation sets); a student teacher's folded scale",
)
Minutes = options.minutes("Wall-clock budget, shared evenly by the stages.")
Resume = options.resume(
    "Continue the run in --out where it stopped, as its config.json says (no other option)."
)
StageSteps = Annotated[int, option("Optimisation", "Optimisation steps per stage.", min=1)]
BatchSize = options.batch_size("Optimisation", "Images per step.")
Lr = options.lr("Optimisation", "Learning rate (AdamW, constant), > 0.")
WeightingOpt = Annotated[
    Weighting, option("Optimisation", "Loss weight per timestep (see `fastddpm.distill.method`).")
]
Seed = options.seed("Optimisation", "Seed of batches, timesteps and noise.")


@clean_errors
def distill(
    ctx: typer.Context,
    out: Out,
    model: ModelDir = None,
    data: Data = None,
    to_steps: ToSteps = DistillConfig.to_steps,
    from_steps: FromSteps = None,
    guidance: Guidance = None,
    minutes: Minutes = DistillConfig.minutes,
    resume: Resume = False,
    stage_steps: StageSteps = DistillConfig.stage_steps,
    batch_size: BatchSize = DistillConfig.batch_size,
    lr: Lr = DistillConfig.lr,
    weighting: WeightingOpt = Weighting(DistillConfig.weighting),
    seed: Seed = DistillConfig.seed,
    device: DeviceOption = Device.auto,
) -> None:
    """Distill a guided model into a few-step student: fold the guidance in, then halve the DDIM steps
    from-steps -> ... -> to-steps. The student is an ordinary model folder (OUT/model) that sample, bench and
    export take as they are, at its own step count by default. Stops and resumes like train."""
    if resume:
        refuse_options_with_resume(ctx, out, frozenset({"out", "resume"}))
    from fastddpm.distill.loop import distill as run_distill
    from fastddpm.distill.run import teacher_settings
    from fastddpm.model import load_card
    from fastddpm.paths import default_model_dir

    teacher = model or default_model_dir()
    card = load_card(teacher)
    from_steps, guidance, fold_guidance = teacher_settings(card, from_steps, guidance)
    if data is None and not card.info.data:
        raise UsageError(
            f"{teacher}'s card names no training set; pass --data DIR (the images to distill on)"
        )
    config = DistillConfig(
        model=str(teacher),
        data=str(data) if data else card.info.data,
        out=str(out),
        to_steps=to_steps,
        from_steps=from_steps,
        guidance=guidance,
        fold_guidance=fold_guidance,
        stage_steps=stage_steps,
        minutes=minutes,
        batch_size=batch_size,
        lr=lr,
        weighting=weighting.value,
        seed=seed,
        device=device.value,
    )
    with ProgressBar("distill") as bar:
        result = run_distill(config, resume=resume, progress=bar)
    exit_if_stopped(result, out)
    say(f"the {to_steps}-step student is in {result.model_dir} (every stage's in {out / 'students'})")
