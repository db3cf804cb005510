"""`fastddpm bench`: options -> BenchConfig -> fastddpm.bench.run.plan_bench -> run_bench -> table and report files."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

from fastddpm.cli import options
from fastddpm.cli.common import ProgressBar, clean_errors, cpu_note, csv, int_tuple, option, out_console, say
from fastddpm.cli.options import (
    DeviceOption,
    DtypeOption,
    EtaOption,
    EvaluatorOption,
    GuidanceOption,
    GuidanceIntervalOption,
    SpacingOption,
    ExportDirOption,
    ModelDir,
)
from fastddpm.atomic import check_output_folder, owned_folder
from fastddpm.choices import BackendName, Device, Dtype, SamplerName
from fastddpm.configs import BenchConfig
from fastddpm.defaults import MAX_SEED

Samplers = Annotated[
    Optional[str],
    option(
        "Grid",
        f"Comma list of {', '.join(SamplerName.names())}.",
        show_default="the model card's sampler (sampling.sampler), else ddim",
    ),
]
Steps = Annotated[
    Optional[str],
    option(
        "Grid",
        "Comma list of step counts (ddpm, the reference, always runs its 1000).",
        show_default="the card's steps for its sampler alone, a distilled student's own, else 50",
    ),
]
Backends = Annotated[str, option("Grid", f"Comma list of {', '.join(BackendName.names())}.")]
Reference = Annotated[
    bool,
    option("Grid", "Include the DDPM-1000 row (minutes per split on a CPU).", "--reference/--no-reference"),
]
LabelsFiles = options.labels_file(
    "Splits",
    "Split label file(s), e.g. the course's test.json and new_test.json; repeat for several.",
    several=True,
)
Data = options.data("Splits", "Use this data folder's test.json and new_test.json.", optional=True)
Seeds = Annotated[
    Optional[str],
    option("Scoring", "Sampling seeds, fixed in advance.", show_default="0,1,2 on a GPU, 0 on a CPU"),
]
Capture = Annotated[bool, option("Runtime", "CUDA: one graph per denoising run.", "--capture/--no-capture")]
Out = options.out("Runtime", "Folder for the JSON, markdown, plot and grids.", "--out", "--results")


@clean_errors
def bench(
    sampler: Samplers = None,
    steps: Steps = None,
    backend: Backends = ",".join(BenchConfig.backends),
    reference: Reference = BenchConfig.reference,
    labels_file: LabelsFiles = None,
    data: Data = None,
    seeds: Seeds = None,
    guidance: GuidanceOption = None,
    guidance_interval: GuidanceIntervalOption = None,
    spacing: SpacingOption = None,
    eta: EtaOption = BenchConfig.eta,
    evaluator: EvaluatorOption = None,
    model: ModelDir = None,
    device: DeviceOption = Device.auto,
    dtype: DtypeOption = Dtype.auto,
    capture: Capture = BenchConfig.capture,
    export_dir: ExportDirOption = Path(BenchConfig.export_dir),
    out: Out = Path("bench/results"),
) -> None:
    """Latency and evaluator accuracy of samplers x steps x backends on both test splits.

    --eta applies to the DDIM rows only. Accuracy is the mean ± std over the seeds, each split scored in one
    evaluator call as the course does.
    """
    from fastddpm.bench.run import default_seeds, plan_bench, resolve_splits
    from fastddpm.sampling.batch import model_defaults, model_interval, model_spacing
    from fastddpm.sampling.job import objects_warning
    from fastddpm.model import load_card
    from fastddpm.paths import default_model_dir

    check_output_folder(out)
    model_dir = model or default_model_dir()
    card = load_card(model_dir)
    _, _, guidance = model_defaults(card, "ddim", None, guidance)
    samplers, step_counts = model_grid(card, sampler, steps)
    config = BenchConfig(
        samplers=samplers,
        steps=step_counts,
        backends=csv(backend, "--backend", BackendName.names()),
        splits=resolve_splits(labels_file, data, model_dir),
        seeds=int_tuple(seeds, "--seeds", minimum=0, maximum=MAX_SEED, unique=True)
        if seeds
        else default_seeds(device.value),
        guidance=guidance,
        guidance_interval=model_interval(card, guidance_interval),
        spacing=model_spacing(card, spacing),
        eta=eta,
        reference=reference,
        model_dir=str(model_dir),
        evaluator=str(evaluator) if evaluator else None,
        device=device.value,
        dtype=dtype.value,
        capture=capture,
        export_dir=str(export_dir),
    )
    plan = plan_bench(config)  # everything checked and every backend opened, before any work
    conditions = [labels for split in config.splits.values() for labels in split]
    run_and_report(plan, out, objects_warning(model_dir, conditions), device.value)


def model_grid(card, sampler: str | None, steps: str | None) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """--sampler and --steps, or the model's: the sampler its card names (else DDIM), at the card's steps for
    that sampler alone, a distilled student's own steps, else BenchConfig's."""
    from fastddpm.sampling.batch import model_defaults

    if sampler:
        samplers = csv(sampler, "--sampler", SamplerName.names())
    else:
        samplers = (model_defaults(card, None, None, None)[0],)
    if steps:
        return samplers, int_tuple(steps, "--steps", minimum=1, unique=True)
    if card.info.student:
        return samplers, (card.info.student.steps,)
    if card.sampling.steps and samplers == (card.sampling.sampler,):
        return samplers, (card.sampling.steps,)
    return samplers, BenchConfig.steps


def run_and_report(plan, out: Path, warning: str | None, device: str) -> None:
    """The bench with its results folder owned for the whole run (a second bench would also skew this one's
    timings): notes, progress, the table, the report files."""
    from fastddpm.bench.report import table, write_report
    from fastddpm.bench.run import run_bench

    with owned_folder(out):
        if warning:
            say(f"warning: {warning}")
        cpu_note(device)
        with ProgressBar("bench") as bar:
            report = run_bench(plan, command="fastddpm " + " ".join(sys.argv[1:]), progress=bar)
        out_console.print(table(report))
        say(f"results: {write_report(report, out)}")
