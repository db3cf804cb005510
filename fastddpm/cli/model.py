"""`fastddpm train | sample | bench | export`: the model's life cycle."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from fastddpm.cli.common import ProgressBar, clean_errors, console, cpu_note, csv, int_tuple
from fastddpm.errors import UsageError
from fastddpm.defaults import DEFAULT_GUIDANCE

model_app = typer.Typer()


@model_app.command()
@clean_errors
def train(
    data: Annotated[
        Path,
        typer.Option(
            help="i-CLEVR folder in the course layout (`data render` makes one).", rich_help_panel="Run"
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            help="Run folder: config.json, metrics.jsonl, checkpoint, model/.", rich_help_panel="Run"
        ),
    ],
    epochs: Annotated[
        float, typer.Option(help="Length of the LR schedule in passes over the data.", rich_help_panel="Run")
    ] = 60.0,
    minutes: Annotated[
        Optional[float],
        typer.Option(help="Wall-clock budget; the LR schedule follows it.", rich_help_panel="Run"),
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue the run in --out exactly where it stopped.", rich_help_panel="Run")
    ] = False,
    gpus: Annotated[
        int, typer.Option(help="Launch torchrun with this many processes (DDP).", rich_help_panel="Run")
    ] = 1,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.", rich_help_panel="Run")] = "auto",
    batch_size: Annotated[
        Optional[int],
        typer.Option(
            help="Images per step per process [default: 256 on CUDA, 32 on CPU].",
            rich_help_panel="Optimisation",
        ),
    ] = None,
    lr: Annotated[
        float,
        typer.Option(help="Peak learning rate (AdamW, warm-up then cosine).", rich_help_panel="Optimisation"),
    ] = 4e-4,
    ema: Annotated[
        bool,
        typer.Option(help="Keep an EMA of the weights (what gets shipped).", rich_help_panel="Optimisation"),
    ] = True,
    cond_drop: Annotated[
        float, typer.Option(help="Share of null conditions, for guidance.", rich_help_panel="Optimisation")
    ] = 0.1,
    seed: Annotated[
        int, typer.Option(help="Seed of init, batches and noise.", rich_help_panel="Optimisation")
    ] = 0,
    compile: Annotated[
        Optional[bool],
        typer.Option(
            "--compile/--no-compile", help="torch.compile (default: on CUDA).", rich_help_panel="Speed"
        ),
    ] = None,
    amp: Annotated[
        str, typer.Option(help="auto (bf16 on CUDA, off on CPU), bf16, fp16 or off.", rich_help_panel="Speed")
    ] = "auto",
    schedule: Annotated[
        str, typer.Option(help="Noise schedule: linear or cosine.", rich_help_panel="Model")
    ] = "linear",
    prediction: Annotated[
        str, typer.Option(help="Network target: epsilon or v.", rich_help_panel="Model")
    ] = "epsilon",
    channels: Annotated[
        str, typer.Option(help="Channels per UNet level.", rich_help_panel="Model")
    ] = "64,128,128",
    attention: Annotated[
        str, typer.Option(help="Levels with self-attention (0 = finest).", rich_help_panel="Model")
    ] = "1,2",
    patch: Annotated[
        int, typer.Option(help="Pixel-unshuffle factor of the stem.", rich_help_panel="Model")
    ] = 4,
    conditioning: Annotated[
        str,
        typer.Option(
            help="multihot (embedding added to the timestep's) or tokens (cross-attention, one per object).",
            rich_help_panel="Model",
        ),
    ] = "multihot",
    eval_minutes: Annotated[
        float, typer.Option(help="Minutes between quick evaluations (0: off).", rich_help_panel="Evaluation")
    ] = 10.0,
    evaluator: Annotated[
        Optional[Path],
        typer.Option(help="Evaluator for the quick evaluations.", rich_help_panel="Evaluation"),
    ] = None,
) -> None:
    """Train the conditional DDPM. Defaults train the shipped configuration."""
    from fastddpm.model import ModelConfig
    from fastddpm.schedule import DiffusionConfig
    from fastddpm.train import TrainConfig, launch_torchrun
    from fastddpm.train import train as run_training

    if gpus > 1:
        raise typer.Exit(launch_torchrun(gpus, sys.argv[1:]))
    model = ModelConfig(
        patch_size=patch,
        block_channels=int_tuple(channels, "--channels"),
        attention_levels=int_tuple(attention, "--attention"),
        conditioning=conditioning,
    )
    config = TrainConfig(
        data=str(data),
        out=str(out),
        epochs=epochs,
        minutes=minutes,
        batch_size=batch_size,
        lr=lr,
        ema=ema,
        cond_drop=cond_drop,
        amp=amp,
        compile=compile,
        device=device,
        seed=seed,
        eval_minutes=eval_minutes,
        evaluator=str(evaluator) if evaluator else None,
        model=model,
        diffusion=DiffusionConfig(schedule, prediction=prediction),
    )
    with ProgressBar("train") as bar:
        final = run_training(config, resume=resume, progress=bar)
    console.print(f"EMA model saved to {final}; metrics in {out / 'metrics.jsonl'}")


def _read_labels(labels: str | None, labels_file: Path | None) -> list[list[str]]:
    from fastddpm.conditions import parse_label_string, read_test_labels

    if (labels is None) == (labels_file is None):
        raise UsageError("give exactly one of --labels 'red sphere,cyan cube' or --labels-file FILE")
    return [parse_label_string(labels)] if labels is not None else read_test_labels(labels_file)


@model_app.command()
@clean_errors
def sample(
    out: Annotated[
        Path,
        typer.Option(
            help="Folder for 0.png, 1.png, ..., grid.png (and trajectory.png).", rich_help_panel="What"
        ),
    ],
    labels: Annotated[
        Optional[str],
        typer.Option(
            help="One condition: comma-separated objects, e.g. 'red sphere,cyan cube'.",
            rich_help_panel="What",
        ),
    ] = None,
    labels_file: Annotated[
        Optional[Path],
        typer.Option(help="A test.json-style list of label lists (one image each).", rich_help_panel="What"),
    ] = None,
    trajectory: Annotated[
        bool, typer.Option(help="Also write a denoising strip (noise to image).", rich_help_panel="What")
    ] = False,
    sampler: Annotated[
        str,
        typer.Option(
            help="ddpm (1000-step reference), ddim or dpmpp (DPM-Solver++ 2M).", rich_help_panel="Sampler"
        ),
    ] = "ddim",
    steps: Annotated[
        Optional[int],
        typer.Option(
            help="Denoising steps (default: 1000 ddpm, 50 ddim, 20 dpmpp).", rich_help_panel="Sampler"
        ),
    ] = None,
    eta: Annotated[
        float, typer.Option(help="DDIM noise: 0 deterministic, 1 DDPM-like.", rich_help_panel="Sampler")
    ] = 0.0,
    guidance: Annotated[
        float, typer.Option(help="Classifier-free guidance scale (1 = none).", rich_help_panel="Sampler")
    ] = DEFAULT_GUIDANCE,
    seed: Annotated[
        int, typer.Option(help="Image i uses per-image seed seed*1000003+i.", rich_help_panel="Sampler")
    ] = 0,
    checkpoint: Annotated[
        Optional[Path],
        typer.Option(
            help="Model folder (default: the shipped checkpoints/default).", rich_help_panel="Runtime"
        ),
    ] = None,
    backend: Annotated[
        str, typer.Option(help="torch, compile, ort or trt.", rich_help_panel="Runtime")
    ] = "torch",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.", rich_help_panel="Runtime")] = "auto",
    dtype: Annotated[
        str,
        typer.Option(help="auto (bf16 on CUDA, fp32 on CPU), fp32, bf16, fp16.", rich_help_panel="Runtime"),
    ] = "auto",
    batch_size: Annotated[
        int, typer.Option(help="Images per fixed-shape chunk.", rich_help_panel="Runtime")
    ] = 32,
) -> None:
    """Generate one image per condition."""
    from fastddpm.conditions import parse_label_string
    from fastddpm.generate import SampleSettings
    from fastddpm.paths import default_model_dir
    from fastddpm.sample import TRAJECTORY_LABELS, SampleJob, run_sample
    from fastddpm.samplers import DEFAULT_STEPS, check_sampler

    check_sampler(sampler)
    conditions = _read_labels(labels, labels_file)
    settings = SampleSettings(sampler, steps or DEFAULT_STEPS[sampler], eta, guidance, batch_size)
    strip = (parse_label_string(labels) if labels else TRAJECTORY_LABELS) if trajectory else None
    job = SampleJob(
        conditions,
        out,
        checkpoint or default_model_dir(),
        settings,
        seed,
        backend,
        device,
        dtype,
        trajectory_labels=strip,
    )
    cpu_note(device)
    with ProgressBar("sample") as bar:
        run_sample(job, progress=bar)
    console.print(f"{len(conditions)} images in {out} (grid: {out / 'grid.png'})")


@model_app.command()
@clean_errors
def export(
    onnx: Annotated[bool, typer.Option("--onnx/--no-onnx", help="Export ONNX (needed for --trt).")] = True,
    trt: Annotated[
        bool, typer.Option("--trt", help="Also build a TensorRT engine (needs fastddpm[trt] and a GPU).")
    ] = False,
    checkpoint: Annotated[
        Optional[Path], typer.Option(help="Model folder (default: the shipped checkpoints/default).")
    ] = None,
    precision: Annotated[
        str, typer.Option(help="fp32, fp16 or bf16 (norms and softmax stay fp32).")
    ] = "fp32",
    batch: Annotated[
        str, typer.Option(help="Batch profile MIN:OPT:MAX (guidance doubles the batch).")
    ] = "1:64:128",
    out: Annotated[
        Path, typer.Option(help="Folder for the .onnx / .plan files and their JSON sidecars.")
    ] = Path("export"),
    workspace_gib: Annotated[float, typer.Option(help="TensorRT builder workspace limit, GiB.")] = 4.0,
) -> None:
    """Export the UNet (EMA weights) to ONNX with a parity check, and optionally to a TensorRT engine."""
    from fastddpm.backends.io_spec import parse_batch_profile
    from fastddpm.export import PRECISIONS, export_onnx
    from fastddpm.paths import default_model_dir

    if precision not in PRECISIONS:
        raise UsageError(f"--precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    io = parse_batch_profile(batch)
    if trt:
        from fastddpm.export_tensorrt import build_engine, import_tensorrt

        import_tensorrt()  # fail before the ONNX work when TensorRT is missing
    if not onnx and not trt:
        raise UsageError("nothing to do: pass --onnx and/or --trt")
    path, record = export_onnx(checkpoint or default_model_dir(), out, precision, io)
    worst = max(row["relative"] for row in record.parity)
    console.print(
        f"{path} ({record.seconds} s); parity vs torch fp32: max relative error {worst:.2e} "
        f"(tolerance {record.tolerance:.0e} for {precision}) at batches {[r['batch'] for r in record.parity]}"
    )
    if trt:
        console.print(f"{build_engine(path, io, workspace_gib)}")


@model_app.command()
@clean_errors
def bench(
    sampler: Annotated[
        str, typer.Option(help="Comma list of ddpm, ddim, dpmpp.", rich_help_panel="Grid")
    ] = "ddim",
    steps: Annotated[
        str, typer.Option(help="Comma list of step counts (ddpm always runs 1000).", rich_help_panel="Grid")
    ] = "50",
    backend: Annotated[
        str, typer.Option(help="Comma list of torch, compile, ort, trt.", rich_help_panel="Grid")
    ] = "torch",
    reference: Annotated[
        bool,
        typer.Option(
            "--reference/--no-reference",
            help="Include the DDPM-1000 row (slow on CPU).",
            rich_help_panel="Grid",
        ),
    ] = True,
    labels_file: Annotated[
        Optional[list[Path]],
        typer.Option(
            help="Split label file(s), e.g. the course's test.json and new_test.json.",
            rich_help_panel="Splits",
        ),
    ] = None,
    data: Annotated[
        Optional[Path],
        typer.Option(help="Use this data folder's test.json and new_test.json.", rich_help_panel="Splits"),
    ] = None,
    seeds: Annotated[
        Optional[str],
        typer.Option(
            help="Sampling seeds, fixed in advance (default 0,1,2 on GPU, 0 on CPU).",
            rich_help_panel="Scoring",
        ),
    ] = None,
    guidance: Annotated[
        float, typer.Option(help="Classifier-free guidance scale.", rich_help_panel="Scoring")
    ] = DEFAULT_GUIDANCE,
    eta: Annotated[float, typer.Option(help="DDIM eta.", rich_help_panel="Scoring")] = 0.0,
    evaluator: Annotated[
        Optional[Path],
        typer.Option(
            help="Evaluator checkpoint, e.g. the course's checkpoint.pth.", rich_help_panel="Scoring"
        ),
    ] = None,
    checkpoint: Annotated[
        Optional[Path],
        typer.Option(
            help="Model folder (default: the shipped checkpoints/default).", rich_help_panel="Runtime"
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.", rich_help_panel="Runtime")] = "auto",
    dtype: Annotated[
        str,
        typer.Option(help="auto (bf16 on CUDA, fp32 on CPU), fp32, bf16, fp16.", rich_help_panel="Runtime"),
    ] = "auto",
    capture: Annotated[
        bool,
        typer.Option(
            "--capture/--no-capture", help="CUDA: one graph per denoising run.", rich_help_panel="Runtime"
        ),
    ] = True,
    export_dir: Annotated[
        Path, typer.Option(help="Where ort / trt find their exports.", rich_help_panel="Runtime")
    ] = Path("export"),
    results: Annotated[
        Path, typer.Option(help="Folder for JSON, markdown, plot and grids.", rich_help_panel="Runtime")
    ] = Path("bench/results"),
) -> None:
    """Latency and evaluator accuracy of samplers x steps x backends on both test splits."""
    import datetime

    import torch

    from fastddpm.bench import BenchConfig, default_splits, run_bench
    from fastddpm.bench_report import table, write_report
    from fastddpm.conditions import read_test_labels
    from fastddpm.paths import default_model_dir

    model_dir = checkpoint or default_model_dir()
    if labels_file:
        splits = {f.stem: read_test_labels(f) for f in labels_file}
    elif data:
        splits = {n: read_test_labels(data / f"{n}.json") for n in ("test", "new_test")}
    else:
        splits = default_splits(model_dir)
    on_gpu = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    config = BenchConfig(
        samplers=csv(sampler),
        steps=int_tuple(steps, "--steps"),
        backends=csv(backend),
        splits=splits,
        seeds=int_tuple(seeds, "--seeds") if seeds else ((0, 1, 2) if on_gpu else (0,)),
        guidance=guidance,
        eta=eta,
        reference=reference,
        model_dir=str(model_dir),
        evaluator=str(evaluator) if evaluator else None,
        device=device,
        dtype=dtype,
        capture=capture,
        export_dir=str(export_dir),
    )
    config.configurations()  # validate names before any work
    cpu_note(device)
    with ProgressBar("bench") as bar:
        report = run_bench(config, progress=bar)
    report["stamp"] = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    report["command"] = "fastddpm " + " ".join(sys.argv[1:])
    report["split_size"] = max(len(v) for v in splits.values())
    from rich.console import Console

    Console().print(table(report))
    console.print(f"results: {write_report(report, results)}")
