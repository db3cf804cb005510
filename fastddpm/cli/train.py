"""`fastddpm train`: options -> TrainConfig -> fastddpm.training.loop.train; `--gpus N` relaunches under torchrun."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from fastddpm.cli import options
from fastddpm.cli.common import (
    ProgressBar,
    clean_errors,
    exit_if_stopped,
    given_options,
    int_tuple,
    option,
    refuse_given_options,
    refuse_options_with_resume,
    say,
)
from fastddpm.choices import Amp, Conditioning, Device, Prediction, Schedule
from fastddpm.configs import DiffusionConfig, ModelConfig, TrainConfig
from fastddpm.presets import TRAIN_PRESETS, apply_preset

Data = options.data("Run", "i-CLEVR folder in the course layout (`data render` makes one).")
Out = options.out("Run", "Run folder: config.json, metrics.jsonl, checkpoint, model/.")
Epochs = Annotated[float, option("Run", "Length of the LR schedule in passes over the data.")]
Minutes = options.minutes("Wall-clock budget; the LR schedule follows it.")
Resume = options.resume(
    "Continue the run in --out (that folder, even if copied or moved) as its config.json says; beside it only "
    "--data, --gpus and a longer --epochs or --minutes. Ctrl-C or SIGTERM checkpoints a run within a step "
    "(exit 130 / 143)."
)
Init = Annotated[
    Optional[Path],
    option(
        "Run",
        "Model folder whose weights start the run (a fine-tune, fresh optimiser); its model and diffusion configs "
        "replace the preset's and the model options'.",
    ),
]
Preset = Annotated[
    str,
    option(
        "Run",
        f"Named starting configuration ({', '.join(TRAIN_PRESETS)}; see fastddpm.presets.TRAIN_PRESETS); "
        "options given explicitly override it.",
    ),
]
Gpus = Annotated[int, option("Run", "Launch torchrun with this many processes (DDP).", min=1)]
DeviceOpt = options.device("Run")
BatchSize = options.batch_size(
    "Optimisation", "Images per step per process.", optional=True, show_default="256 on CUDA, 32 on a CPU"
)
Lr = options.lr("Optimisation", "Peak learning rate (AdamW, warm-up then cosine), > 0.")
Ema = Annotated[bool, option("Optimisation", "Keep an EMA of the weights (what gets shipped).")]
CondDrop = Annotated[
    float, option("Optimisation", "Share of null conditions, for guidance; in [0, 1).", min=0.0, max=1.0)
]
Hflip = Annotated[
    bool, option("Optimisation", "Mirror half the training images left-right (labels have no positions).")
]
FreezeBody = Annotated[
    bool,
    option(
        "Optimisation",
        "Train only the refinement head; the rest keeps the --init model's weights (needs --init, and --refine "
        "N where that model has no head).",
    ),
]
MinSnrGamma = Annotated[
    float,
    option(
        "Optimisation", "Min-SNR-gamma loss weight (Hang et al. 2023); 0: off, plain MSE at every t.", min=0.0
    ),
]
MinSnrFloor = Annotated[
    float,
    option(
        "Optimisation",
        "Lowest loss weight with min-SNR on, in [0, 1]: min-SNR lowers the weight toward 0 at low noise, "
        "where the fine grain is removed.",
        min=0.0,
        max=1.0,
    ),
]
Seed = options.seed("Optimisation", "Seed of init, batches and noise.")
Compile = Annotated[
    Optional[bool],
    option("Speed", "torch.compile the model.", "--compile/--no-compile", show_default="on CUDA"),
]
AmpOpt = Annotated[
    Amp,
    option(
        "Speed", "Autocast: auto is bf16 on CUDA and on a CPU with native bf16 (AVX-512 BF16, AMX), else off."
    ),
]
ScheduleOpt = Annotated[Schedule, option("Model", "Noise schedule.")]
PredictionOpt = Annotated[Prediction, option("Model", "Network target.")]
Channels = Annotated[str, option("Model", "Channels per UNet level, comma-separated (multiples of 32).")]
Attention = Annotated[
    str, option("Model", "Levels with self-attention (0 = finest), comma-separated; '' for none.")
]
Patch = Annotated[int, option("Model", "Pixel-unshuffle factor of the stem (must divide 64).", min=1)]
Refine = Annotated[
    int,
    option(
        "Model",
        "Channels of a full-resolution refinement head after the stem (0: none); with --init, adds a head "
        "that starts at zero to a model without one.",
        min=0,
    ),
]
GrowAttention = Annotated[
    str,
    option(
        "Model",
        "With --init: levels (0 = finest) to add self-attention at, comma-separated; each new block starts as the "
        "identity (its output projection at zero), so the run starts from the --init model's output.",
    ),
]
ConditioningOpt = Annotated[
    Conditioning,
    option("Model", "multihot (embedding added to the timestep's) or tokens (cross-attention)."),
]
EvalMinutes = Annotated[float, option("Evaluation", "Minutes between quick evaluations (0: off).", min=0.0)]
Evaluator = options.evaluator("Evaluation", "Evaluator for the quick evaluations (default: the stand-in).")


# CLI parameter -> the TrainConfig field it sets, where the names differ (the keys of TRAIN_PRESETS)
OPTION_FIELDS = {
    "channels": "model.block_channels",
    "attention": "model.attention_levels",
    "patch": "model.patch_size",
    "conditioning": "model.conditioning",
    "refine": "model.refine_channels",
}


# What a resumed run takes from the call; its config.json decides the rest.
RESUME_KEEPS = frozenset({"data", "out", "epochs", "minutes", "resume", "gpus"})
# the options an --init model folder's config.json decides
INIT_DECIDES = ("channels", "attention", "patch", "conditioning", "schedule", "prediction")


def with_preset(ctx: typer.Context, config: TrainConfig, preset: str) -> TrainConfig:
    """`config` under --preset: the preset's values, except for the fields whose options were given."""
    explicit = frozenset(OPTION_FIELDS.get(name, name) for name in given_options(ctx))
    return apply_preset(config, preset, explicit)


def check_init_and_relaunch(ctx: typer.Context, init: Path | None, gpus: int) -> None:
    """--init brings its own architecture and schedule: an explicit model option beside it would be ignored, and
    is refused. Then --gpus N > 1 relaunches the call under torchrun (after the check: a refusal is said once)."""
    if init is not None:
        refuse_given_options(ctx, INIT_DECIDES, "--init", "the --init model folder's config.json")
    relaunch_under_torchrun(gpus, sys.argv[1:])


def unet_levels(text: str, option: str) -> tuple[int, ...]:
    """Comma-separated UNet levels ('' for none), each once."""
    return int_tuple(text, option, minimum=0, unique=True) if text.strip() else ()


def model_config(
    channels: str, attention: str, patch: int, conditioning: Conditioning, refine: int
) -> ModelConfig:
    """The network's architecture from --channels, --attention, --patch, --conditioning and --refine."""
    return ModelConfig(
        patch_size=patch,
        refine_channels=refine,
        block_channels=int_tuple(channels, "--channels", minimum=1),
        attention_levels=unet_levels(attention, "--attention"),
        conditioning=conditioning.value,
    )


def relaunch_under_torchrun(gpus: int, argv: list[str]) -> None:
    """With --gpus N > 1, run `torchrun --nproc-per-node N -m fastddpm train ...` (without --gpus) and exit with
    its code; with one GPU, return and train in this process."""
    if gpus <= 1:
        return
    args, skip_value = [], False
    for arg in argv:
        if skip_value:
            skip_value = False
        elif arg == "--gpus":
            skip_value = True
        elif not arg.startswith("--gpus="):
            args.append(arg)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={gpus}"]
    raise typer.Exit(subprocess.call([*cmd, "-m", "fastddpm", *args]))


def resumed_config(ctx: typer.Context) -> TrainConfig:
    """--resume: the run's saved config, but for where the run and its data now are, and for --epochs and
    --minutes where given (a longer schedule); every other option would be ignored and is refused."""
    from fastddpm.training.run_folder import RunFolder

    call, given = ctx.params, given_options(ctx)
    refuse_options_with_resume(ctx, call["out"], RESUME_KEEPS)
    saved = RunFolder(call["out"]).saved_config(TrainConfig.from_dict)
    return dataclasses.replace(
        saved,
        data=str(call["data"]),
        out=str(call["out"]),
        epochs=call["epochs"] if "epochs" in given else saved.epochs,
        minutes=call["minutes"] if "minutes" in given else saved.minutes,
    )


def run_with_progress(config: TrainConfig, resume: bool) -> None:
    """The training run, under a progress bar (torch is imported here, so that --help stays instant), then where
    its model went; a stopped run exits 130 / 143 after its checkpoint."""
    from fastddpm.training.loop import train as run_training

    with ProgressBar("train") as bar:
        result = run_training(config, resume=resume, progress=bar)
    out = Path(config.out)
    exit_if_stopped(result, out)
    say(f"finished at step {result.step}: EMA model in {result.model_dir}; metrics {out / 'metrics.jsonl'}")


@clean_errors
def train(
    ctx: typer.Context,
    data: Data,
    out: Out,
    epochs: Epochs = TrainConfig.epochs,
    minutes: Minutes = TrainConfig.minutes,
    resume: Resume = False,
    init: Init = None,
    preset: Preset = "cpu",
    gpus: Gpus = 1,
    device: DeviceOpt = Device(TrainConfig.device),
    batch_size: BatchSize = TrainConfig.batch_size,
    lr: Lr = TrainConfig.lr,
    ema: Ema = TrainConfig.ema,
    cond_drop: CondDrop = TrainConfig.cond_drop,
    hflip: Hflip = TrainConfig.hflip,
    freeze_body: FreezeBody = TrainConfig.freeze_body,
    min_snr_gamma: MinSnrGamma = TrainConfig.min_snr_gamma,
    min_snr_floor: MinSnrFloor = TrainConfig.min_snr_floor,
    seed: Seed = TrainConfig.seed,
    compile: Compile = TrainConfig.compile,
    amp: AmpOpt = Amp(TrainConfig.amp),
    schedule: ScheduleOpt = Schedule(DiffusionConfig.schedule),
    prediction: PredictionOpt = Prediction(DiffusionConfig.prediction),
    channels: Channels = ",".join(map(str, ModelConfig.block_channels)),
    attention: Attention = ",".join(map(str, ModelConfig.attention_levels)),
    patch: Patch = ModelConfig.patch_size,
    conditioning: ConditioningOpt = Conditioning(ModelConfig.conditioning),
    refine: Refine = ModelConfig.refine_channels,
    grow_attention: GrowAttention = "",
    eval_minutes: EvalMinutes = TrainConfig.eval_minutes,
    evaluator: Evaluator = None,
) -> None:
    """Train the conditional DDPM; the defaults (--preset cpu) train the shipped configuration."""
    check_init_and_relaunch(ctx, init, gpus)
    config = TrainConfig(
        data=str(data),
        out=str(out),
        epochs=epochs,
        minutes=minutes,
        batch_size=batch_size,
        lr=lr,
        ema=ema,
        cond_drop=cond_drop,
        hflip=hflip,
        freeze_body=freeze_body,
        min_snr_gamma=min_snr_gamma or None,
        min_snr_floor=min_snr_floor,
        amp=amp.value,
        compile=compile,
        device=device.value,
        seed=seed,
        eval_minutes=eval_minutes,
        evaluator=str(evaluator) if evaluator else None,
        init=str(init) if init else None,
        grow_attention=unet_levels(grow_attention, "--grow-attention"),
        model=model_config(channels, attention, patch, conditioning, refine),
        diffusion=DiffusionConfig(schedule.value, prediction=prediction.value),
    )
    run_with_progress(resumed_config(ctx) if resume else with_preset(ctx, config, preset), resume)
