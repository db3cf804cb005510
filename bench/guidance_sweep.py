"""Choose the guidance scale on VALIDATION label sets, never on the test splits: each validation seed draws a
val / new_val pair like the data set's test.json / new_test.json, from another seed than any test split, so
the scale is not tuned on what the bench reports. --intervals crosses each scale with guidance intervals
(timesteps LO-HI the scale applies at, `all` for every step), --spacings with timestep grids (`own`: each
sampler's), --etas with DDIM's noise (0 deterministic, 1 DDPM-like; only with --sampler ddim). The chosen
(scale, interval, spacing, eta) has the highest mean over every (validation seed, split, sampler, steps,
sampling seed) cell; a tie keeps the lowest scale, then the first interval, spacing and eta given. --record
writes it into the model's config.json ("sampling"), so sample, bench and distill use it by default; a card
has no eta, so --record takes --etas 0 only.

    python bench/guidance_sweep.py --scales 1.5,2,3,4 --sampler ddim,dpmpp --steps 10,20 --seeds 0,1,2 [--record]
    python bench/guidance_sweep.py --scales 2.5,4 --intervals all,200-999 --sampler dpmpp --steps 10
    python bench/guidance_sweep.py --scales 2.5 --spacings own,logsnr,karras --sampler ddim,dpmpp --steps 10
    python bench/guidance_sweep.py --scales 2.5 --etas 0,0.5,1 --sampler ddim --steps 10
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import replace
from pathlib import Path

from rich.progress import track

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, save  # noqa: E402

from fastddpm import atomic  # noqa: E402
from fastddpm.export import open_backend  # noqa: E402
from fastddpm.choices import SamplerName  # noqa: E402
from fastddpm.cli.common import csv, int_tuple, refuse_repeats  # noqa: E402
from fastddpm.configs import (  # noqa: E402
    SampleSettings,
    format_interval,
    format_spacing,
    parse_interval,
    parse_spacing,
)
from fastddpm.data import synth  # noqa: E402
from fastddpm.defaults import MAX_SEED  # noqa: E402
from fastddpm.errors import UsageError  # noqa: E402
from fastddpm.evaluator.network import Evaluator  # noqa: E402
from fastddpm.sampling.batch import check_settings  # noqa: E402
from fastddpm.model import CONFIG_NAME, WEIGHTS_NAME, load_card  # noqa: E402
from fastddpm.paths import default_model_dir  # noqa: E402
from fastddpm.runtime import device_name, resolve_device, resolve_dtype  # noqa: E402
from fastddpm.schedule import NoiseSchedule  # noqa: E402
from fastddpm.evaluator.score import score_splits  # noqa: E402


def option_type(parse):
    """An argparse type from one of the CLI's value parsers: a refusal becomes one error line and exit 2."""

    def checked(text: str):
        try:
            return parse(text)
        except ValueError as error:  # UsageError is one
            raise argparse.ArgumentTypeError(str(error)) from None

    return checked


def numbers(text: str, option: str, setting: str, example: str) -> tuple[float, ...]:
    """'1.5,2' -> (1.5, 2.0), each in the range SampleSettings allows its `setting` (a field name)."""
    try:
        values = tuple(float(v) for v in text.split(","))
        for value in values:
            SampleSettings(**{setting: value})
    except UsageError as error:  # a ValueError too: caught first
        raise UsageError(f"{option} {text!r}: {error}") from None
    except ValueError:
        raise UsageError(f"{option} takes comma-separated numbers like {example}; got {text!r}") from None
    return values


def scales(text: str) -> tuple[float, ...]:
    return numbers(text, "--scales", "guidance", "1.5,2,3")


def etas(text: str) -> tuple[float, ...]:
    values = numbers(text, "--etas", "eta", "0,0.5,1")
    refuse_repeats(values, "--etas", str)
    return values


def intervals(text: str) -> tuple[tuple[int, int] | None, ...]:
    """'all,200-999' -> (None, (200, 999)): each interval LO-HI (timesteps, 0 <= LO <= HI) or `all`."""
    parsed = tuple(parse_interval(item, "--intervals") for item in text.split(","))
    refuse_repeats(parsed, "--intervals", format_interval)
    return parsed


def spacings(text: str) -> tuple[str | None, ...]:
    """'own,logsnr' -> (None, 'logsnr'): timestep grids (choices.Spacing), `own` for each sampler's."""
    parsed = tuple(parse_spacing(item, "--spacings") for item in text.split(","))
    refuse_repeats(parsed, "--spacings", format_spacing)
    return parsed


def sweep_scale(backend, schedule, draws, settings_for, seeds, evaluator, device) -> dict:
    """Every cell's accuracy at one scale: {"validation seed/split/sampler-steps": [per sampling seed]}."""
    cells = {}
    for draw, splits in draws.items():
        for settings in settings_for:
            scores = score_splits(backend, schedule, splits, settings, seeds, evaluator, device)
            for split, values in scores.items():
                cells[f"{draw}/{split}/{settings.sampler}-{settings.steps}"] = values
    return cells


def record_choice(args: argparse.Namespace, best: dict, result: Path) -> None:
    """Rewrite the model's config.json with the chosen scale, interval and spacing and where they came from
    (atomically)."""
    scale, interval, spacing = best["guidance"], parse_interval(best["interval"]), best["spacing"]
    tried = f"scales {args.scales}"
    if args.intervals != (None,):
        tried += f" x intervals {', '.join(map(format_interval, args.intervals))}"
    if args.spacings != (None,):
        tried += f" x spacings {', '.join(map(format_spacing, args.spacings))}"
    chosen_on = (
        f"bench/guidance_sweep.py, validation seeds {args.validation_seeds}, {'/'.join(args.sampler)} at "
        f"{args.steps} steps, sampling seeds {args.seeds}, {tried}: {result.name}"
    )
    config = args.checkpoint / CONFIG_NAME
    sampling = replace(
        args.card.sampling, guidance=scale, chosen_on=chosen_on, guidance_interval=interval, spacing=spacing
    )
    atomic.write_text(config, replace(args.card, sampling=sampling).to_json() + "\n")
    grid = f", {spacing} timesteps" if spacing else ""
    print(f"recorded guidance {scale} at timesteps {format_interval(interval)}{grid} in {config}")


def parse_args() -> argparse.Namespace:
    """The options, each checked before any work: a bad one ends with one error line and exit 2."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scales", type=option_type(scales), default="1,1.5,2,3,4")
    parser.add_argument("--intervals", type=option_type(intervals), default="all")
    parser.add_argument("--spacings", type=option_type(spacings), default="own")
    parser.add_argument("--etas", type=option_type(etas), default="0")
    parser.add_argument(
        "--sampler",
        type=option_type(lambda t: csv(t, "--sampler", SamplerName.names())),
        default="ddim,dpmpp",
    )
    parser.add_argument(
        "--steps",
        type=option_type(lambda t: int_tuple(t, "--steps", minimum=1, unique=True)),
        default="10,20",
    )
    for option, default in (("--seeds", "0"), ("--validation-seeds", "1000")):
        seeds = option_type(
            lambda t, option=option: int_tuple(t, option, minimum=0, maximum=MAX_SEED, unique=True)
        )
        parser.add_argument(option, type=seeds, default=default)
    parser.add_argument("--model", "--checkpoint", dest="checkpoint", type=Path, default=default_model_dir())
    parser.add_argument("--evaluator", type=Path, default=None, help="default: the shipped stand-in")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the result json")
    parser.add_argument("--record", action="store_true", help="write the chosen scale into the model's card")
    args = parser.parse_args()
    if args.checkpoint.is_file():  # the weights file given: its folder holds the card
        args.checkpoint = args.checkpoint.parent
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {str(args.out)!r} is a file, not a folder")
    try:
        args.card = load_card(args.checkpoint)
        args.device = resolve_device("auto")
        args.evaluator = Evaluator(args.evaluator, args.device)
        if args.record and args.etas != (0.0,):
            given = ",".join(f"{eta:g}" for eta in args.etas)
            raise UsageError(f"--record with --etas {given}: a card records no eta; give --etas 0")
        args.grid = {  # every (scale, interval, spacing, eta)'s sampler x steps settings
            (scale, interval, spacing, eta): [
                SampleSettings(s, n, eta=eta, guidance=scale, guidance_interval=interval, spacing=spacing)
                for s in args.sampler
                for n in args.steps
            ]
            for scale in args.scales
            for interval in args.intervals
            for spacing in args.spacings
            for eta in args.etas
        }
        schedule = NoiseSchedule.from_config(args.card.diffusion)
        for settings_for in args.grid.values():
            for settings in settings_for:
                check_settings(settings, schedule)
    except UsageError as error:
        parser.error(str(error))
    if args.card.info.student:
        parser.error(f"--model {str(args.checkpoint)!r} is a distilled student: its guidance is folded in")
    return args


def main() -> None:
    args = parse_args()
    device, evaluator = args.device, args.evaluator
    draws = {}
    for seed in args.validation_seeds:
        val, new_val = synth.test_splits(seed)
        draws[seed] = {"val": val, "new_val": new_val}
    backend = open_backend("torch", args.checkpoint, device, resolve_dtype("auto", device))
    schedule = NoiseSchedule.from_config(args.card.diffusion)
    rows = []
    settings_grid = track(args.grid.items(), description="sampling settings")
    for (scale, interval, spacing, eta), settings_for in settings_grid:
        cells = sweep_scale(backend, schedule, draws, settings_for, args.seeds, evaluator, device)
        mean = statistics.fmean(v for values in cells.values() for v in values)
        per_seed = [statistics.fmean(values[i] for values in cells.values()) for i in range(len(args.seeds))]
        spread = statistics.stdev(per_seed) if len(per_seed) > 1 else 0.0
        name = format_interval(interval)
        rows.append(
            {
                "guidance": scale,
                "interval": name,
                "spacing": spacing,
                "eta": eta,
                "mean": mean,
                "spread": spread,
                "cells": cells,
            }
        )
        print(
            f"guidance {scale:4.1f} interval {name:>8} spacing {format_spacing(spacing):>9} eta {eta:g}: "
            f"mean {mean:.4f} ± {spread:.4f} over {len(cells)} cells"
        )
    best = max(sorted(rows, key=lambda r: r["guidance"]), key=lambda r: r["mean"])
    print(
        f"best on validation: guidance {best['guidance']} interval {best['interval']} spacing "
        f"{format_spacing(best['spacing'])} eta {best['eta']:g} (mean {best['mean']:.4f})"
    )
    record = {
        "device": device_name(device),
        "checkpoint": str(args.checkpoint),
        "evaluator": str(evaluator.path),
        "weights_sha256": atomic.file_sha256(args.checkpoint / WEIGHTS_NAME),
        "samplers": args.sampler,
        "steps": args.steps,
        "seeds": args.seeds,
        "validation_seeds": args.validation_seeds,
        "rows": rows,
        "best": {key: best[key] for key in ("guidance", "interval", "spacing", "eta", "mean")},
    }
    path = save("guidance_sweep", record, args.out)
    if args.record:
        record_choice(args, best, path)


if __name__ == "__main__":
    main()
