"""`fastddpm data ...` and `fastddpm evaluator ...`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fastddpm.cli.common import ProgressBar, clean_errors, console

data_app = typer.Typer(
    help="Render a look-alike i-CLEVR data set, or check one you bring.", no_args_is_help=True
)
evaluator_app = typer.Typer(
    help="The ResNet-18 evaluator: train the stand-in, or score images.", no_args_is_help=True
)


@data_app.command("render")
@clean_errors
def data_render(
    out: Annotated[
        Path, typer.Option(help="Folder to write (the course's layout: iclevr/*.png, train.json, ...).")
    ],
    scenes: Annotated[
        int, typer.Option(help="Scenes to draw; each gives one image per object count (3 by default).")
    ] = 6003,
    seed: Annotated[int, typer.Option(help="Seed of labels, placement, jitter and the test splits.")] = 0,
    device: Annotated[str, typer.Option(help="Where to ray-cast: cpu or cuda.")] = "cpu",
    max_objects: Annotated[
        int, typer.Option(help="Objects per scene: 3 as in i-CLEVR, 5 for evaluator data.")
    ] = 3,
    labels: Annotated[
        Path | None, typer.Option(help="Render the images of this train.json instead of drawing labels.")
    ] = None,
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
    data: Annotated[
        list[Path],
        typer.Option(
            help="Rendered folder(s) to train on; repeat to combine (1-5 objects: `data render --max-objects 5`)."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Checkpoint to write, in the course's format.")] = Path(
        "checkpoints/evaluator.pth"
    ),
    holdout: Annotated[
        Path | None, typer.Option(help="Rendered 1-3 object scenes of another seed, to score.")
    ] = None,
    epochs: Annotated[int, typer.Option(help="Passes over --data.")] = 4,
    batch_size: Annotated[int, typer.Option(help="Images per step.")] = 128,
    lr: Annotated[float, typer.Option(help="Peak learning rate (one-cycle).")] = 2e-3,
    seed: Annotated[int, typer.Option(help="Seed of initialisation, order and augmentation.")] = 0,
) -> None:
    """Train the stand-in evaluator (ResNet-18, course format) and report its held-out accuracy."""
    from fastddpm.evaluator_train import EvaluatorTrainConfig, train_evaluator

    config = EvaluatorTrainConfig(
        tuple(str(d) for d in data), str(holdout) if holdout else None, epochs, batch_size, lr, seed=seed
    )
    with ProgressBar("evaluator") as bar:
        report = train_evaluator(config, out, progress=bar)
    console.print(
        f"saved {out} ({report['steps']} steps, {report['train_seconds']} s); "
        f"held-out accuracy: {report['holdout_accuracy']}"
    )


@evaluator_app.command("score")
@clean_errors
def evaluator_score(
    images: Annotated[Path, typer.Option(help="Folder of PNGs named 0.png, 1.png, ... in label-file order.")],
    labels: Annotated[
        list[Path], typer.Option(help="test.json-style label file(s); repeat for several splits.")
    ],
    evaluator: Annotated[
        Path | None, typer.Option(help="Evaluator checkpoint (default: the shipped stand-in).")
    ] = None,
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
