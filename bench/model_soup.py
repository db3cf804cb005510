"""A model soup (Wortsman et al. 2022): the uniform average of the weights of fine-tunes that share one
architecture and descend from the same weights, written as a model folder that every command reads. The card
is the first ingredient's, with its training run's info replaced by the list of ingredients (folder and
sha256), so the soup can be rebuilt from them. Averaging is done in float32; the weights are saved as float16
like every model.

    python bench/model_soup.py --model runs/ft-refine/model --model runs/floor-0.1/model --out runs/soup
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from fastddpm import atomic
from fastddpm.card import ModelInfo
from fastddpm.errors import UsageError
from fastddpm.model import ConditionalUNet, ModelCard, checkpoint_sha256, load_model, save_model


def check_ingredients(folders: list[Path]) -> None:
    """At least two folders, none twice (a repeat would weigh it double without saying so)."""
    if len(folders) < 2:
        raise UsageError(f"a soup needs at least two --model folders, got {len(folders)}")
    seen = set()
    for folder in folders:
        if folder.resolve() in seen:
            raise UsageError(f"--model {str(folder)!r} is given twice; give each ingredient once")
        seen.add(folder.resolve())


def average_models(folders: list[Path]) -> tuple[ConditionalUNet, ModelCard]:
    """The uniform average of the models' weights, with the first model's card; every model must have the
    first one's model and diffusion configs."""
    net, card = load_model(folders[0])
    total = {k: v.detach().clone() for k, v in net.state_dict().items()}
    for folder in folders[1:]:
        other, other_card = load_model(folder)
        for section in ("model", "diffusion"):
            if getattr(other_card, section) != getattr(card, section):
                raise UsageError(
                    f"--model {str(folder)!r} has another {section} config than {str(folders[0])!r}; "
                    "only models of one architecture and schedule can be averaged"
                )
        for key, value in other.state_dict().items():
            total[key] += value
    net.load_state_dict({k: v / len(folders) for k, v in total.items()})
    return net, card


def soup_card(card: ModelCard, folders: list[Path]) -> ModelCard:
    """The first ingredient's card with what one training run did (steps, images, time, init) left out, and the
    ingredients added; the data and render info stay, since the ingredients share them."""
    ingredients = [{"folder": str(folder), "sha256": checkpoint_sha256(folder)} for folder in folders]
    info = ModelInfo(
        data=card.info.data,
        render=card.info.render,
        parameters=card.info.parameters,
        extra={"soup": ingredients},
    )
    return dataclasses.replace(card, info=info)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, action="append", required=True, help="an ingredient's folder")
    parser.add_argument("--out", type=Path, required=True, help="a new or empty folder for the soup")
    args = parser.parse_args()
    try:
        check_ingredients(args.model)
        atomic.check_output_folder(args.out)
        if args.out.is_dir() and any(args.out.iterdir()):
            raise UsageError(f"--out {str(args.out)!r} is not empty; give a new or empty folder")
        with torch.no_grad():
            net, card = average_models(args.model)
        with atomic.owned_folder(args.out):
            save_model(args.out, net, soup_card(card, args.model))
    except UsageError as err:
        parser.exit(2, f"error: {err}\n")
    print(f"soup of {len(args.model)} models: {args.out} (sha256 {checkpoint_sha256(args.out)[:12]})")


if __name__ == "__main__":
    main()
