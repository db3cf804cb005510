"""Options that several commands share, declared once (name, type, range, help)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

from fastddpm.cli.common import option
from fastddpm.choices import Device, Dtype
from fastddpm.defaults import MAX_BATCH

ModelDir = Annotated[
    Optional[Path],
    option(
        "Runtime",
        "Model folder (model.safetensors + config.json); default: the shipped checkpoints/default.",
        "--model",
        "--checkpoint",
    ),
]
DeviceOption = Annotated[Device, option("Runtime", "auto takes the GPU when there is one.")]
DtypeOption = Annotated[Dtype, option("Runtime", "Network precision; auto: bf16 on CUDA, fp32 on a CPU.")]
GuidanceOption = Annotated[
    Optional[float],
    option(
        "Sampler",
        "Classifier-free guidance scale (1 = none, 0 = the unconditional model).",
        min=0.0,
        show_default="the model card's (2 unless bench/guidance_sweep.py --record chose another on validation "
        "sets); 1 for a distilled student, which has its scale folded in",
    ),
]
EtaOption = Annotated[
    float, option("Sampler", "DDIM noise: 0 deterministic, 1 DDPM-like (DDIM only).", min=0.0)
]
ExportDirOption = Annotated[
    Path,
    option("Runtime", "Where ort / trt find the export of --model: a folder, or the .onnx / .plan file."),
]
EvaluatorOption = Annotated[
    Optional[Path],
    option("Scoring", "Evaluator checkpoint, e.g. the course's checkpoint.pth (default: the stand-in)."),
]
BatchSizeOption = Annotated[int, option("Runtime", "Images per fixed-shape chunk.", min=1, max=MAX_BATCH)]
