"""Options that several commands share, declared once: each option's type, range and flags live here.

Options that mean the same to every command are ready-made types (ModelDir, EtaOption, ...). Where the option's
meaning depends on the command (what --seed seeds, what --out holds), a function here declares it and the
command passes its help panel and text: `Seed = seed("Optimisation", "Seed of init, batches and noise.")`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

from fastddpm.cli.common import option
from fastddpm.choices import Device, Dtype
from fastddpm.defaults import MAX_BATCH, MAX_SEED

DEVICE_HELP = "auto takes the GPU when there is one."


def seed(panel: str | None, help: str) -> Any:
    """--seed: an integer in [0, MAX_SEED]."""
    return Annotated[int, option(panel, help, min=0, max=MAX_SEED)]


def device(panel: str | None, help: str = DEVICE_HELP) -> Any:
    """--device: auto, cpu or cuda."""
    return Annotated[Device, option(panel, help)]


def out(panel: str | None, help: str, *flags: str, optional: bool = False) -> Any:
    """--out: the folder (or file) a command writes; `flags` replace the flag name when given."""
    return Annotated[Optional[Path] if optional else Path, option(panel, help, *flags)]


def data(panel: str | None, help: str, *, optional: bool = False, several: bool = False, **settings) -> Any:
    """--data: a data folder (a repeatable option when `several`)."""
    kind = list[Path] if several else Path
    return Annotated[Optional[kind] if optional else kind, option(panel, help, **settings)]


def labels_file(panel: str | None, help: str, *, several: bool = False) -> Any:
    """--labels-file: a test.json-style label file, or several (repeat the option) when `several`."""
    return Annotated[Optional[list[Path] if several else Path], option(panel, help)]


def evaluator(panel: str | None, help: str) -> Any:
    """--evaluator: an evaluator checkpoint (course format); None is the shipped stand-in."""
    return Annotated[Optional[Path], option(panel, help)]


def batch_size(panel: str | None, help: str, *, optional: bool = False, **settings) -> Any:
    """--batch-size: images per step or per chunk, in [1, MAX_BATCH]."""
    return Annotated[
        Optional[int] if optional else int, option(panel, help, min=1, max=MAX_BATCH, **settings)
    ]


def lr(panel: str | None, help: str) -> Any:
    """--lr: a learning rate, > 0 (0 itself is refused by the run's config)."""
    return Annotated[float, option(panel, help, min=0.0)]


def minutes(help: str) -> Any:
    """--minutes: a run's wall-clock budget; None: no limit."""
    return Annotated[Optional[float], option("Run", help)]


def resume(help: str) -> Any:
    """--resume/--no-resume: continue the run in --out."""
    return Annotated[bool, option("Run", help)]


def guidance(panel: str, help: str, minimum: float, show_default: str) -> Any:
    """--guidance: a classifier-free guidance scale; None: the model card's."""
    return Annotated[Optional[float], option(panel, help, min=minimum, show_default=show_default)]


ModelDir = Annotated[
    Optional[Path],
    option(
        "Runtime",
        "Model folder (model.safetensors + config.json); default: the shipped checkpoints/default.",
        "--model",
        "--checkpoint",
    ),
]
DeviceOption = device("Runtime")
DtypeOption = Annotated[Dtype, option("Runtime", "Network precision; auto: bf16 on CUDA, fp32 on a CPU.")]
GuidanceOption = guidance(
    "Sampler",
    "Classifier-free guidance scale (1 = none, 0 = the unconditional model).",
    0.0,
    "the model card's (2 unless bench/guidance_sweep.py --record chose another on validation sets); 1 for a "
    "distilled student, which has its scale folded in",
)
GuidanceIntervalOption = Annotated[
    Optional[str],
    option(
        "Sampler",
        "Timesteps LO-HI the guidance scale applies at, the plain conditional model elsewhere; all: every step.",
        show_default="the model card's (every step unless bench/guidance_sweep.py --record chose an interval)",
    ),
]
SpacingOption = Annotated[
    Optional[str],
    option(
        "Sampler",
        "Timestep grid: own (each sampler's), or leading, trailing, linspace, quadratic, logsnr, karras (the last "
        "three denser at low noise).",
        show_default="the model card's (each sampler's own unless bench/guidance_sweep.py --record chose one)",
    ),
]
EtaOption = Annotated[
    float, option("Sampler", "DDIM noise: 0 deterministic, 1 DDPM-like (DDIM only).", min=0.0)
]
ExportDirOption = Annotated[
    Path,
    option("Runtime", "Where ort / trt find the export of --model: a folder, or the .onnx / .plan file."),
]
EvaluatorOption = evaluator(
    "Scoring", "Evaluator checkpoint, e.g. the course's checkpoint.pth (default: the stand-in)."
)
BatchSizeOption = batch_size("Runtime", "Images per fixed-shape chunk.")
