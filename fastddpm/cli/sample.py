"""`fastddpm sample`: options -> SampleJob -> fastddpm.sampling.job.run_sample."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

from fastddpm.cli import options
from fastddpm.cli.common import ProgressBar, clean_errors, cpu_note, option, say
from fastddpm.cli.options import (
    BatchSizeOption,
    DeviceOption,
    DtypeOption,
    EtaOption,
    ExportDirOption,
    GuidanceOption,
    GuidanceIntervalOption,
    SpacingOption,
    ModelDir,
)
from fastddpm.choices import BackendName, Device, Dtype, SamplerName
from fastddpm.configs import BenchConfig, SampleSettings
from fastddpm.errors import UsageError

Out = options.out(
    "What",
    "Folder for 0.png, 1.png, ..., grid.png, sample.json (and trajectory.png); a folder of earlier samples "
    "is replaced, any other non-empty folder refused.",
)
Labels = Annotated[
    Optional[str],
    option(
        "What",
        "One condition: comma-separated objects, e.g. 'red sphere,cyan cube'. More objects than the model was "
        "trained on (3) are drawn, with a warning.",
    ),
]
LabelsFile = options.labels_file("What", "A test.json-style list of label lists (one image each).")
Trajectory = Annotated[
    bool,
    option(
        "What",
        "Also write a denoising strip from noise to image (of --labels, or of 'red sphere, cyan cylinder, "
        "cyan cube' with --labels-file).",
    ),
]
Sampler = Annotated[
    Optional[SamplerName],
    option(
        "Sampler",
        "ddpm (ancestral, the 1000-step reference), ddim, dpmpp (DPM-Solver++ 2M) or unipc (UniPC).",
        show_default="the model card's (sampling.sampler), else ddim",
    ),
]
Steps = Annotated[
    Optional[int],
    option(
        "Sampler",
        "Denoising steps.",
        min=1,
        show_default=(
            "the card's (sampling.steps) for its sampler; else the sampler's own: ddpm 1000, ddim 50, dpmpp 20, "
            "unipc 10; a distilled student's own"
        ),
    ),
]
Seed = options.seed("Sampler", "Image i uses the per-image seed seed*1000003+i.")
Backend = Annotated[
    BackendName, option("Runtime", "torch, compile, ort (needs `fastddpm export --onnx`) or trt.")
]


def read_labels(labels: str | None, labels_file: Path | None) -> list[list[str]]:
    from fastddpm.conditions import parse_label_string, read_test_labels

    if (labels is None) == (labels_file is None):
        raise UsageError("give exactly one of --labels 'red sphere,cyan cube' or --labels-file FILE")
    return [parse_label_string(labels)] if labels is not None else read_test_labels(labels_file)


@clean_errors
def sample(
    out: Out,
    labels: Labels = None,
    labels_file: LabelsFile = None,
    trajectory: Trajectory = False,
    sampler: Sampler = None,
    steps: Steps = None,
    eta: EtaOption = SampleSettings.eta,
    guidance: GuidanceOption = None,
    guidance_interval: GuidanceIntervalOption = None,
    spacing: SpacingOption = None,
    seed: Seed = 0,
    model: ModelDir = None,
    backend: Backend = BackendName.torch,
    export_dir: ExportDirOption = Path(BenchConfig.export_dir),
    device: DeviceOption = Device.auto,
    dtype: DtypeOption = Dtype.auto,
    batch_size: BatchSizeOption = SampleSettings.batch_size,
) -> None:
    """Generate one image per condition, written in label-file order."""
    from fastddpm.conditions import parse_label_string
    from fastddpm.sampling.batch import card_settings
    from fastddpm.model import load_card
    from fastddpm.paths import default_model_dir
    from fastddpm.pipeline import Pipeline
    from fastddpm.sampling.job import TRAJECTORY_LABELS, SampleJob, claim_folder, objects_warning, run_sample

    claim_folder(out)  # before any work: refuse a file or a folder of foreign files
    conditions = read_labels(labels, labels_file)
    model = model or default_model_dir()
    card, chosen = load_card(model), sampler and sampler.value
    settings = card_settings(card, chosen, steps, guidance, eta, batch_size, guidance_interval, spacing)
    job = SampleJob(
        labels=conditions,
        out=out,
        model_dir=model,
        settings=settings,
        seed=seed,
        backend=backend.value,
        device=device.value,
        dtype=dtype.value,
        export_dir=export_dir,
        trajectory_labels=(parse_label_string(labels) if labels else TRAJECTORY_LABELS)
        if trajectory
        else None,
    )
    pipe = Pipeline.from_pretrained(model, device.value, backend.value, dtype.value, export_dir)
    warning = objects_warning(model, [*job.labels, job.trajectory_labels or []])
    if warning:
        say(f"warning: {warning}")
    cpu_note(device.value)
    with ProgressBar("sample") as bar:
        record = run_sample(job, pipe, progress=bar)
    replaced = (
        f"; replaced the {record['replaced']} files of earlier samples there" if record["replaced"] else ""
    )
    say(f"{len(conditions)} images in {out} (grid: {out / 'grid.png'}){replaced}")
