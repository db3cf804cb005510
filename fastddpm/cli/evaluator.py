"""`fastddpm evaluator train | score | report`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from fastddpm.cli import options
from fastddpm.cli.common import ProgressBar, clean_errors, say
from fastddpm.cli.options import DeviceOption, EvaluatorOption
from fastddpm.choices import Device
from fastddpm.evaluator.config import EvaluatorTrainConfig
from fastddpm.errors import UsageError

evaluator_app = typer.Typer(
    help="The ResNet-18 evaluator: train the stand-in, or score images.", no_args_is_help=True
)

TrainData = options.data(
    None,
    "Rendered folder(s) to train on; repeat to combine (1-5 objects: `data render --max-objects 5`).",
    several=True,
)
TrainOut = options.out(
    None, "Run folder for evaluator.pth (course format), evaluator.json and metrics.jsonl."
)
BatchSize = options.batch_size(None, "Images per step.")
Lr = options.lr(None, "Peak learning rate (one-cycle).")
Seed = options.seed(None, "Seed of initialisation, order and augmentation.")
LabelsFiles = options.labels_file(
    None, "test.json-style label file(s); repeat the option for several splits.", several=True
)
ReportData = options.data(
    None, "Held-out rendered folder(s) of seeds the evaluator never saw; repeat.", several=True
)
ReportOut = options.out(None, "Also write the whole report (every miss) as JSON here.", optional=True)


@evaluator_app.command("train")
@clean_errors
def evaluator_train(
    data: TrainData,
    out: TrainOut = Path("runs/evaluator"),
    force: Annotated[bool, typer.Option(help="Replace an evaluator.pth already in --out.")] = False,
    validation: Annotated[
        Optional[Path],
        typer.Option(
            "--validation",
            "--holdout",
            help="A render of other seeds, scored after every epoch (never trained on).",
        ),
    ] = None,
    init: Annotated[
        Optional[Path],
        typer.Option(
            help="Fine-tune this evaluator.pth (course format, e.g. checkpoints/evaluator.pth) instead of "
            "starting from random weights; pair it with a lower --lr."
        ),
    ] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Passes over --data.")] = EvaluatorTrainConfig.epochs,
    batch_size: BatchSize = EvaluatorTrainConfig.batch_size,
    lr: Lr = EvaluatorTrainConfig.lr,
    seed: Seed = EvaluatorTrainConfig.seed,
    device: DeviceOption = Device(EvaluatorTrainConfig.device),
) -> None:
    """Train the stand-in evaluator (ResNet-18, course format) into a run folder; ship it by copying
    OUT/evaluator.pth to checkpoints/evaluator.pth."""
    from fastddpm.evaluator.train import train_evaluator

    config = EvaluatorTrainConfig(
        data=tuple(str(d) for d in data),
        validation=str(validation) if validation else None,
        init=str(init) if init else None,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        device=device.value,
    )
    with ProgressBar("evaluator") as bar:
        report = train_evaluator(config, out, force=force, progress=bar)
    say(
        f"saved {out / 'evaluator.pth'} ({report['steps']} steps, {report['train_seconds']} s); "
        f"validation accuracy: {report['validation_accuracy']}"
    )


@evaluator_app.command("score")
@clean_errors
def evaluator_score(
    images: Annotated[
        Path,
        typer.Option(
            help="Folder of PNGs named 0.png, 1.png, ... in label-file order "
            "(one subfolder per label file when several)."
        ),
    ],
    labels_file: LabelsFiles = None,
    labels: Annotated[
        Optional[list[Path]], typer.Option(hidden=True, help="Old name of --labels-file.")
    ] = None,
    evaluator: EvaluatorOption = None,
    device: DeviceOption = Device.auto,
) -> None:
    """Score a folder of generated images against label files with the course's formula."""
    from fastddpm.evaluator.score import score_folder

    files = (labels_file or []) + (labels or [])
    if not files:
        raise UsageError("give the label file(s) the images were made from: --labels-file test.json")
    for label_file, accuracy in score_folder(images, files, evaluator, device.value).items():
        say(f"{label_file}: accuracy {accuracy:.4f}")


@evaluator_app.command("report")
@clean_errors
def evaluator_report(
    data: ReportData,
    evaluator: EvaluatorOption = None,
    out: ReportOut = None,
    device: DeviceOption = Device.auto,
) -> None:
    """Held-out accuracy of an evaluator (course formula) per object count, on the images as the course squashes
    them and blurred through 32x32, and what it misses (classes, confusions, how visible the missed objects were)."""
    from fastddpm import atomic
    from fastddpm.evaluator.report import heldout_report

    if out is not None and (out.is_dir() or out.suffix != ".json"):
        raise UsageError(f"--out {str(out)!r} must name a .json file")
    report = heldout_report(evaluator, data, device.value)
    for folder in report["folders"]:
        say(f"{folder['folder']}: {folder['images']} images, {folder['objects']} objects")
        for name in ("accuracy", "accuracy_blurred_32"):
            say(f"  {name}: " + ", ".join(f"{k} {v:.4f}" for k, v in folder[name].items()))
        say(f"  missed {folder['missed_objects']}: wrong {folder['missed_by_kind']}; top confusions:")
        for pair, count in folder["confusions"][:5]:
            say(f"    {count} x {pair}")
        seen = folder["visible_pixels"]
        if seen:
            say(
                f"  visible pixels at 320x240: missed objects median {seen['missed_median']:.0f} "
                f"({seen['missed_below_600']:.0%} below 600), all objects median {seen['all_median']:.0f} "
                f"({seen['all_below_600']:.0%} below 600)"
            )
    if out is not None:
        atomic.write_json(out, report)
        say(f"report: {out}")
