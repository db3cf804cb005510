"""A fine-tune's start (--init): the model folder's architecture and schedule in the run's config, grown where
asked (--refine adds a head, --grow-attention attention levels), and its weights copied into the network so that
the grown network starts as the init model's function."""

from __future__ import annotations

import dataclasses

import torch

from fastddpm.configs import ModelConfig, TrainConfig
from fastddpm.errors import UsageError
from fastddpm.folders import quote
from fastddpm.model import ConditionalUNet, checkpoint_sha256, load_card


def with_init(config: TrainConfig) -> TrainConfig:
    """`config` as a fine-tune of its --init model folder (unchanged without one): that folder's model and
    diffusion configs and its weights' sha256; --refine adds a refinement head to a model without one and
    --grow-attention attention levels. Reads only, before the lock; a distilled student is refused (its weights
    expect the guidance folded into them, not the training loss)."""
    if config.init is None:
        return config
    card = load_card(config.init, option="--init")
    if card.info.student is not None:
        raise UsageError(
            f"--init {quote(config.init)} is a distilled student; give a model trained by `fastddpm train`"
        )
    asked, has = config.model.refine_channels, card.model.refine_channels
    if asked and has and asked != has:
        raise UsageError(
            f"--refine {asked}: --init {quote(config.init)} already has a refinement head of {has} channels"
        )
    model = dataclasses.replace(
        card.model,
        refine_channels=asked or has,
        attention_levels=grown_attention(card.model, config.grow_attention, config.init),
    )
    if config.freeze_body and not model.refine_channels:
        raise UsageError(
            f"--freeze-body: --init {quote(config.init)} has no refinement head to train; add one with --refine N"
        )
    sha = checkpoint_sha256(config.init)
    return dataclasses.replace(config, model=model, diffusion=card.diffusion, init_sha256=sha)


def grown_attention(model: ModelConfig, grow: tuple[int, ...], init: str) -> tuple[int, ...]:
    """The --init model's attention levels with --grow-attention's added: levels it has, and not there yet."""
    levels = len(model.block_channels)
    for level in grow:
        if not 0 <= level < levels:
            raise UsageError(
                f"--grow-attention {level} is out of range: the --init model has levels 0 to {levels - 1}"
            )
        if level in model.attention_levels:
            raise UsageError(
                f"--grow-attention {level}: --init {quote(init)} already has attention at level {level}"
            )
    if grow and model.conditioning != "multihot":
        raise UsageError(
            f"--grow-attention: --init {quote(init)} is a {model.conditioning} model; it takes multihot"
        )
    return tuple(sorted({*model.attention_levels, *grow}))


def load_init_weights(net: ConditionalUNet, init_net: ConditionalUNet) -> None:
    """`init_net`'s weights into `net`, which may have more: a refinement head (its last layer starts at zero) or
    attention blocks (their output projection set to zero here), so `net` starts as `init_net`'s function."""
    missing, unexpected = net.load_state_dict(init_net.state_dict(), strict=False)
    grown = [k for k in missing if not (k.startswith("refine.") or ".attentions." in k)]
    if unexpected or grown:
        raise RuntimeError(f"--init weights do not fit the grown network: {unexpected or grown}")
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if name in missing and ".to_out." in name:
                tensor.zero_()
