"""`fastddpm data render | check`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from fastddpm.cli import options
from fastddpm.cli.common import ProgressBar, clean_errors, say
from fastddpm.choices import Device
from fastddpm.defaults import ICLEVR_MAX_OBJECTS, ICLEVR_SCENES, MAX_SCENES

data_app = typer.Typer(
    help="Render a look-alike i-CLEVR data set, or check one you bring.", no_args_is_help=True
)

RenderOut = options.out(
    None,
    "Folder to write (the course's layout: iclevr/*.png, train.json, ...); "
    "an earlier render with the same settings is resumed.",
)
RenderSeed = options.seed(None, "Seed of labels, placement, jitter and the test splits.")
RenderDevice = options.device(None, "Where to ray-cast (auto takes the GPU when there is one).")
CheckData = options.data(None, "i-CLEVR folder: ROOT/train.json, ROOT/iclevr/*.png, ...")


@data_app.command("render")
@clean_errors
def data_render(
    out: RenderOut,
    scenes: Annotated[
        int,
        typer.Option(
            min=1,
            max=MAX_SCENES,
            help="Scenes to draw; each gives one image per object count (at most 10**6).",
        ),
    ] = ICLEVR_SCENES,
    seed: RenderSeed = 0,
    device: RenderDevice = Device.cpu,
    max_objects: Annotated[
        int, typer.Option(min=1, max=5, help="Objects per scene: 3 as in i-CLEVR, 5 for evaluator data.")
    ] = ICLEVR_MAX_OBJECTS,
    train_labels: Annotated[
        Optional[Path], typer.Option(help="Render the images of this train.json instead of drawing labels.")
    ] = None,
    labels: Annotated[Optional[Path], typer.Option(hidden=True, help="Old name of --train-labels.")] = None,
) -> None:
    """Render the look-alike data set (resumable: images already written are skipped)."""
    from fastddpm.data.writer import render_dataset

    with ProgressBar("render") as bar:
        report = render_dataset(
            out, scenes, seed, device.value, max_objects, train_labels or labels, progress=bar
        )
    say(
        f"{report.images} images in {out} ({report.rendered} rendered in {report.seconds:.1f} s, "
        f"{report.images_per_second:.1f} images/s); preview: {out / 'preview.png'}"
    )


@data_app.command("check")
@clean_errors
def data_check(
    data: CheckData,
) -> None:
    """Validate a data folder, build its 64x64 cache, and print its label statistics."""
    from fastddpm.data.reader import cache_path, load_dataset, split_labels
    from fastddpm.data.stats import label_statistics

    with ProgressBar("decode") as bar:
        dataset = load_dataset(data, progress=bar)
    stats = label_statistics(dataset.labels)
    splits = {name: len(labels) for name, labels in split_labels(data).items()}
    say(f"{data}: {len(dataset.names)} images, cache {cache_path(data)}; test splits {splits}")
    for key, value in stats.items():
        say(f"  {key}: {value}")
