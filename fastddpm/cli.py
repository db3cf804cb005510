"""The `fastddpm` command line: parse, validate, call one library function, report. No maths here."""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Optional, TypeVar

import typer
from rich.console import Console

from fastddpm.errors import UsageError

app = typer.Typer(
    help="Conditional DDPM on i-CLEVR: render data, train, sample fast, export, and score with the course evaluator.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Render a look-alike i-CLEVR data set, or check one you bring.", no_args_is_help=True)
evaluator_app = typer.Typer(help="The ResNet-18 evaluator: train the stand-in, or score images.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(evaluator_app, name="evaluator")

console = Console(stderr=True)
F = TypeVar("F", bound=Callable)


def clean_errors(fn: F) -> F:
    """Turn a UsageError into one red line on stderr and exit code 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UsageError as err:
            console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


class ProgressBar:
    """A rich progress bar driven by a `(done, total, info="")` callback; it appears at the first update, so
    input errors raised before any work print alone."""

    def __init__(self, description: str) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn(f"[bold]{description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self.task = self.bar.add_task(description, total=None, info="")
        self.description = description
        self.started = False
        self.last_line = 0.0

    def __call__(self, done: int, total: int, info: str = "") -> None:
        if not console.is_terminal:  # logs and pipes get a plain line every 30 s instead of a live bar
            now = time.monotonic()
            if now - self.last_line > 30 or done >= total:
                console.print(f"{self.description}: {done}/{total} {info}", highlight=False)
                self.last_line = now
            return
        if not self.started:
            self.bar.start()
            self.started = True
        self.bar.update(self.task, completed=done, total=total, info=info)

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        if self.started:
            self.bar.stop()


@data_app.command("render")
@clean_errors
def data_render(
    out: Annotated[Path, typer.Option(help="Folder to write (the course's layout: iclevr/*.png, train.json, ...).")],
    scenes: Annotated[int, typer.Option(help="Scenes to draw; each gives one image per object count (3 by default).")] = 6003,
    seed: Annotated[int, typer.Option(help="Seed of labels, placement, jitter and the test splits.")] = 0,
    device: Annotated[str, typer.Option(help="Where to ray-cast: cpu or cuda.")] = "cpu",
    max_objects: Annotated[int, typer.Option(help="Objects per scene: 3 as in i-CLEVR, 5 for evaluator data.")] = 3,
    labels: Annotated[Path | None, typer.Option(help="Render the images of this train.json instead of drawing labels.")] = None,
) -> None:
    """Render the look-alike data set (resumable: images already written are skipped)."""
    from fastddpm.data.writer import render_dataset

    with ProgressBar("render") as bar:
        report = render_dataset(out, scenes, seed, device, max_objects, labels, progress=bar)
    console.print(
        f"{report.images} images in {out} ({report.rendered} rendered in {report.seconds:.1f} s, "
        f"{report.images_per_second:.1f} images/s); preview: {out / 'preview.png'}"
    )


@evaluator_app.command("train")
@clean_errors
def evaluator_train(
    data: Annotated[list[Path], typer.Option(help="Rendered folder(s) to train on; repeat to combine (1-5 objects: `data render --max-objects 5`).")],
    out: Annotated[Path, typer.Option(help="Checkpoint to write, in the course's format.")] = Path("checkpoints/evaluator.pth"),
    holdout: Annotated[Path | None, typer.Option(help="Rendered 1-3 object scenes of another seed, to score.")] = None,
    epochs: Annotated[int, typer.Option(help="Passes over --data.")] = 4,
    batch_size: Annotated[int, typer.Option(help="Images per step.")] = 128,
    lr: Annotated[float, typer.Option(help="Peak learning rate (one-cycle).")] = 2e-3,
    seed: Annotated[int, typer.Option(help="Seed of initialisation, order and augmentation.")] = 0,
) -> None:
    """Train the stand-in evaluator (ResNet-18, course format) and report its held-out accuracy."""
    from fastddpm.evaluator_train import EvaluatorTrainConfig, train_evaluator

    config = EvaluatorTrainConfig(tuple(str(d) for d in data), str(holdout) if holdout else None, epochs, batch_size, lr, seed=seed)
    with ProgressBar("evaluator") as bar:
        report = train_evaluator(config, out, progress=bar)
    console.print(f"saved {out} ({report['steps']} steps, {report['train_seconds']} s); held-out accuracy: {report['holdout_accuracy']}")


@evaluator_app.command("score")
@clean_errors
def evaluator_score(
    images: Annotated[Path, typer.Option(help="Folder of PNGs named 0.png, 1.png, ... in label-file order.")],
    labels: Annotated[list[Path], typer.Option(help="test.json-style label file(s); repeat for several splits.")],
    evaluator: Annotated[Path | None, typer.Option(help="Evaluator checkpoint (default: the shipped stand-in).")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
) -> None:
    """Score a folder of generated images against label files (one subfolder per split when several)."""
    from fastddpm.evaluator_score import score_folder

    for label_file, accuracy in score_folder(images, labels, evaluator, device).items():
        console.print(f"{label_file}: accuracy {accuracy:.4f}")


@data_app.command("check")
@clean_errors
def data_check(
    data: Annotated[Path, typer.Option(help="i-CLEVR folder: ROOT/train.json, ROOT/iclevr/*.png, ...")],
) -> None:
    """Validate a data folder, build its 64x64 cache, and print its label statistics."""
    from fastddpm.data.reader import cache_path, load_dataset, split_labels
    from fastddpm.data.stats import label_statistics

    with ProgressBar("decode") as bar:
        dataset = load_dataset(data, progress=bar)
    stats = label_statistics(dataset.labels)
    splits = {name: len(labels) for name, labels in split_labels(data).items()}
    console.print(f"{data}: {len(dataset.names)} images, cache {cache_path(data)}; test splits {splits}")
    for key, value in stats.items():
        console.print(f"  {key}: {value}")


def _int_tuple(text: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UsageError(f"{option} takes comma-separated integers like 64,128,128; got {text!r}") from None


@app.command()
@clean_errors
def train(
    data: Annotated[Path, typer.Option(help="i-CLEVR folder in the course layout (`data render` makes one).", rich_help_panel="Run")],
    out: Annotated[Path, typer.Option(help="Run folder: config.json, metrics.jsonl, checkpoint, model/.", rich_help_panel="Run")],
    epochs: Annotated[float, typer.Option(help="Length of the LR schedule in passes over the data.", rich_help_panel="Run")] = 60.0,
    minutes: Annotated[Optional[float], typer.Option(help="Wall-clock budget; the LR schedule follows it.", rich_help_panel="Run")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out exactly where it stopped.", rich_help_panel="Run")] = False,
    gpus: Annotated[int, typer.Option(help="Launch torchrun with this many processes (DDP).", rich_help_panel="Run")] = 1,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.", rich_help_panel="Run")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Images per step per process.", rich_help_panel="Optimisation")] = 64,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW, warm-up then cosine).", rich_help_panel="Optimisation")] = 5e-4,
    ema: Annotated[bool, typer.Option(help="Keep an EMA of the weights (what gets shipped).", rich_help_panel="Optimisation")] = True,
    cond_drop: Annotated[float, typer.Option(help="Share of null conditions, for guidance.", rich_help_panel="Optimisation")] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed of init, batches and noise.", rich_help_panel="Optimisation")] = 0,
    compile: Annotated[Optional[bool], typer.Option("--compile/--no-compile", help="torch.compile (default: on CUDA).", rich_help_panel="Speed")] = None,
    amp: Annotated[str, typer.Option(help="auto (bf16 on CUDA, off on CPU), bf16, fp16 or off.", rich_help_panel="Speed")] = "auto",
    schedule: Annotated[str, typer.Option(help="Noise schedule: linear or cosine.", rich_help_panel="Model")] = "linear",
    prediction: Annotated[str, typer.Option(help="Network target: epsilon or v.", rich_help_panel="Model")] = "epsilon",
    channels: Annotated[str, typer.Option(help="Channels per UNet level.", rich_help_panel="Model")] = "64,128,128",
    attention: Annotated[str, typer.Option(help="Levels with self-attention (0 = finest).", rich_help_panel="Model")] = "1,2",
    patch: Annotated[int, typer.Option(help="Pixel-unshuffle factor of the stem.", rich_help_panel="Model")] = 4,
    eval_minutes: Annotated[float, typer.Option(help="Minutes between quick evaluations (0: off).", rich_help_panel="Evaluation")] = 10.0,
    evaluator: Annotated[Optional[Path], typer.Option(help="Evaluator for the quick evaluations.", rich_help_panel="Evaluation")] = None,
) -> None:
    """Train the conditional DDPM. Defaults train the shipped configuration."""
    from fastddpm.model import ModelConfig
    from fastddpm.schedule import DiffusionConfig
    from fastddpm.train import TrainConfig, launch_torchrun
    from fastddpm.train import train as run_training

    if gpus > 1:
        raise typer.Exit(launch_torchrun(gpus, sys.argv[1:]))
    model = ModelConfig(patch_size=patch, block_channels=_int_tuple(channels, "--channels"),
                        attention_levels=_int_tuple(attention, "--attention"))
    config = TrainConfig(
        data=str(data), out=str(out), epochs=epochs, minutes=minutes, batch_size=batch_size, lr=lr, ema=ema,
        cond_drop=cond_drop, amp=amp, compile=compile, device=device, seed=seed, eval_minutes=eval_minutes,
        evaluator=str(evaluator) if evaluator else None, model=model, diffusion=DiffusionConfig(schedule, prediction=prediction),
    )
    with ProgressBar("train") as bar:
        final = run_training(config, resume=resume, progress=bar)
    console.print(f"EMA model saved to {final}; metrics in {out / 'metrics.jsonl'}")


def _read_labels(labels: str | None, labels_file: Path | None) -> list[list[str]]:
    from fastddpm.conditions import parse_label_string, read_test_labels

    if (labels is None) == (labels_file is None):
        raise UsageError("give exactly one of --labels 'red sphere,cyan cube' or --labels-file FILE")
    return [parse_label_string(labels)] if labels is not None else read_test_labels(labels_file)


@app.command()
@clean_errors
def sample(
    out: Annotated[Path, typer.Option(help="Folder for 0.png, 1.png, ..., grid.png (and trajectory.png).", rich_help_panel="What")],
    labels: Annotated[Optional[str], typer.Option(help="One condition: comma-separated objects, e.g. 'red sphere,cyan cube'.", rich_help_panel="What")] = None,
    labels_file: Annotated[Optional[Path], typer.Option(help="A test.json-style list of label lists (one image each).", rich_help_panel="What")] = None,
    trajectory: Annotated[bool, typer.Option(help="Also write a denoising strip (noise to image).", rich_help_panel="What")] = False,
    sampler: Annotated[str, typer.Option(help="ddpm (1000-step reference), ddim or dpmpp (DPM-Solver++ 2M).", rich_help_panel="Sampler")] = "ddim",
    steps: Annotated[Optional[int], typer.Option(help="Denoising steps (default: 1000 ddpm, 50 ddim, 20 dpmpp).", rich_help_panel="Sampler")] = None,
    eta: Annotated[float, typer.Option(help="DDIM noise: 0 deterministic, 1 DDPM-like.", rich_help_panel="Sampler")] = 0.0,
    guidance: Annotated[float, typer.Option(help="Classifier-free guidance scale (1 = none).", rich_help_panel="Sampler")] = 2.0,
    seed: Annotated[int, typer.Option(help="Image i uses per-image seed seed*1000003+i.", rich_help_panel="Sampler")] = 0,
    checkpoint: Annotated[Optional[Path], typer.Option(help="Model folder (default: the shipped checkpoints/default).", rich_help_panel="Runtime")] = None,
    backend: Annotated[str, typer.Option(help="torch, compile, ort or trt.", rich_help_panel="Runtime")] = "torch",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.", rich_help_panel="Runtime")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto (bf16 on CUDA, fp32 on CPU), fp32, bf16, fp16.", rich_help_panel="Runtime")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Images per fixed-shape chunk.", rich_help_panel="Runtime")] = 32,
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
    job = SampleJob(conditions, out, checkpoint or default_model_dir(), settings, seed, backend, device, dtype, trajectory_labels=strip)
    _cpu_note(device)
    with ProgressBar("sample") as bar:
        run_sample(job, progress=bar)
    console.print(f"{len(conditions)} images in {out} (grid: {out / 'grid.png'})")


def _cpu_note(device: str) -> None:
    import torch

    if device != "cuda" and not torch.cuda.is_available():
        console.print("[dim]note: no GPU found; sampling runs on the CPU (slow). A CUDA GPU makes this 100x faster.[/]")


@app.command()
@clean_errors
def export(
    onnx: Annotated[bool, typer.Option("--onnx/--no-onnx", help="Export ONNX (needed for --trt).")] = True,
    trt: Annotated[bool, typer.Option("--trt", help="Also build a TensorRT engine (needs fastddpm[trt] and a GPU).")] = False,
    checkpoint: Annotated[Optional[Path], typer.Option(help="Model folder (default: the shipped checkpoints/default).")] = None,
    precision: Annotated[str, typer.Option(help="fp32, fp16 or bf16 (norms and softmax stay fp32).")] = "fp32",
    batch: Annotated[str, typer.Option(help="Batch profile MIN:OPT:MAX (guidance doubles the batch).")] = "1:64:128",
    out: Annotated[Path, typer.Option(help="Folder for the .onnx / .plan files and their JSON sidecars.")] = Path("export"),
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
    console.print(f"{path} ({record.seconds} s); parity vs torch fp32: max relative error {worst:.2e} "
                  f"(tolerance {record.tolerance:.0e} for {precision}) at batches {[r['batch'] for r in record.parity]}")
    if trt:
        console.print(f"{build_engine(path, io, workspace_gib)}")


def _csv(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


@app.command()
@clean_errors
def bench(
    sampler: Annotated[str, typer.Option(help="Comma list of ddpm, ddim, dpmpp.", rich_help_panel="Grid")] = "ddim",
    steps: Annotated[str, typer.Option(help="Comma list of step counts (ddpm always runs 1000).", rich_help_panel="Grid")] = "50",
    backend: Annotated[str, typer.Option(help="Comma list of torch, compile, ort, trt.", rich_help_panel="Grid")] = "torch",
    reference: Annotated[bool, typer.Option("--reference/--no-reference", help="Include the DDPM-1000 row (slow on CPU).", rich_help_panel="Grid")] = True,
    labels_file: Annotated[Optional[list[Path]], typer.Option(help="Split label file(s), e.g. the course's test.json and new_test.json.", rich_help_panel="Splits")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Use this data folder's test.json and new_test.json.", rich_help_panel="Splits")] = None,
    seeds: Annotated[Optional[str], typer.Option(help="Sampling seeds, fixed in advance (default 0,1,2 on GPU, 0 on CPU).", rich_help_panel="Scoring")] = None,
    guidance: Annotated[float, typer.Option(help="Classifier-free guidance scale.", rich_help_panel="Scoring")] = 2.0,
    eta: Annotated[float, typer.Option(help="DDIM eta.", rich_help_panel="Scoring")] = 0.0,
    evaluator: Annotated[Optional[Path], typer.Option(help="Evaluator checkpoint, e.g. the course's checkpoint.pth.", rich_help_panel="Scoring")] = None,
    checkpoint: Annotated[Optional[Path], typer.Option(help="Model folder (default: the shipped checkpoints/default).", rich_help_panel="Runtime")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.", rich_help_panel="Runtime")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto (bf16 on CUDA, fp32 on CPU), fp32, bf16, fp16.", rich_help_panel="Runtime")] = "auto",
    capture: Annotated[bool, typer.Option("--capture/--no-capture", help="CUDA: one graph per denoising run.", rich_help_panel="Runtime")] = True,
    export_dir: Annotated[Path, typer.Option(help="Where ort / trt find their exports.", rich_help_panel="Runtime")] = Path("export"),
    results: Annotated[Path, typer.Option(help="Folder for JSON, markdown, plot and grids.", rich_help_panel="Runtime")] = Path("bench/results"),
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
        samplers=_csv(sampler), steps=_int_tuple(steps, "--steps"), backends=_csv(backend), splits=splits,
        seeds=_int_tuple(seeds, "--seeds") if seeds else ((0, 1, 2) if on_gpu else (0,)), guidance=guidance, eta=eta,
        reference=reference, model_dir=str(model_dir), evaluator=str(evaluator) if evaluator else None, device=device,
        dtype=dtype, capture=capture, export_dir=str(export_dir),
    )
    config.configurations()  # validate names before any work
    _cpu_note(device)
    with ProgressBar("bench") as bar:
        report = run_bench(config, progress=bar)
    report["stamp"] = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    report["command"] = "fastddpm " + " ".join(sys.argv[1:])
    report["split_size"] = max(len(v) for v in splits.values())
    Console().print(table(report))
    console.print(f"results: {write_report(report, results)}")


def main() -> None:
    app(prog_name="fastddpm")


if __name__ == "__main__":
    sys.exit(main())
