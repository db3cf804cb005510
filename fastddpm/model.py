"""The conditional UNet: diffusers UNet blocks behind a pixel-(un)shuffle stem, conditioned on the multi-hot label
vector in one of two ways (ModelConfig.conditioning):
- "multihot" (shipped): UNet2DModel; a learned embedding of the vector is added to the timestep embedding.
- "tokens": UNet2DConditionModel; cross-attention to one token per object (color embedding + shape embedding).
The comparison that chose between them is in bench/results/conditioning.md.

Export-friendly: forward(x, t, cond) takes three tensors and returns one, with no Python branching on tensor values;
the null condition (all-zero multi-hot) selects a learned embedding (or token) arithmetically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from fastddpm import atomic
from fastddpm.card import OPTIONAL, ModelInfo, read_file, read_section, section_dict
from fastddpm.conditions import COLORS, NUM_CLASSES, SHAPES, split_class
from fastddpm.configs import DiffusionConfig, ModelConfig, SamplingDefaults
from fastddpm.errors import UsageError
from fastddpm.folders import quote
from fastddpm.schedule import NoiseSchedule


def _block_types(config: ModelConfig, attention: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """diffusers down/up block names: `attention` blocks ("Attn" or "CrossAttn") at the configured levels."""
    levels = len(config.block_channels)
    down = tuple(
        f"{attention}DownBlock2D" if i in config.attention_levels else "DownBlock2D" for i in range(levels)
    )
    up = tuple(
        f"{attention}UpBlock2D" if levels - 1 - i in config.attention_levels else "UpBlock2D"
        for i in range(levels)
    )
    return down, up


class ObjectTokens(nn.Module):
    """The condition as a set of tokens: one per object present (its color's embedding + its shape's, so a token
    binds the two), plus an always-visible null token, which is the whole condition when the multi-hot vector is
    zero (and keeps the attention from ever facing an empty set)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.color = nn.Parameter(torch.randn(len(COLORS), dim))
        self.shape = nn.Parameter(torch.randn(len(SHAPES), dim))
        self.null = nn.Parameter(torch.randn(1, dim))
        shape_and_color = torch.tensor([split_class(i) for i in range(NUM_CLASSES)])  # (24, 2)
        self.register_buffer("shape_ids", shape_and_color[:, 0], persistent=False)
        self.register_buffer("color_ids", shape_and_color[:, 1], persistent=False)

    def forward(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 24) multi-hot -> tokens (B, 25, dim) and their attention mask (B, 25), 1 = visible; in cond's dtype."""
        table = torch.cat([self.null, self.color[self.color_ids] + self.shape[self.shape_ids]])  # (25, dim)
        tokens = table.to(cond.dtype).expand(cond.shape[0], -1, -1)
        mask = torch.cat([torch.ones_like(cond[:, :1]), cond], dim=1)
        return tokens, mask


class RefineHead(nn.Module):
    """Three 3x3 convolutions at full resolution after the pixel shuffle. The stem predicts each 4x4 patch from
    one token, which leaves a pattern on the token grid (bench/results/recipe/DDPM1000.md); the head's 7x7
    receptive field crosses those borders. It sees x_t, the stem's output and t / 1000, and adds a correction;
    its last convolution starts at zero, so a head grafted onto a trained model starts from that model's output."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(7, channels, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(channels, 3, 3, padding=1),
        )
        nn.init.zeros_(self.layers[-1].weight)
        nn.init.zeros_(self.layers[-1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        level = (t.to(x.dtype) / 1000).view(-1, 1, 1, 1).expand(-1, 1, *x.shape[2:])
        return out + self.layers(torch.cat([x, out.to(x.dtype), level], dim=1))


class ConditionalUNet(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        from diffusers import UNet2DConditionModel, UNet2DModel

        self.config = config
        self.refine = RefineHead(config.refine_channels) if config.refine_channels else None
        patch_channels = 3 * config.patch_size**2
        shared = dict(
            sample_size=config.image_size // config.patch_size,
            in_channels=patch_channels,
            out_channels=patch_channels,
            block_out_channels=config.block_channels,
            layers_per_block=config.layers_per_block,
            norm_num_groups=config.norm_groups,
        )
        if config.conditioning == "tokens":
            down, up = _block_types(config, "CrossAttn")
            token_dim = config.block_channels[-1]
            self.unet = UNet2DConditionModel(
                **shared,
                down_block_types=down,
                up_block_types=up,
                cross_attention_dim=token_dim,
                # diffusers reads this as heads per level here (a known naming quirk of UNet2DConditionModel)
                attention_head_dim=tuple(c // config.attention_head_dim for c in config.block_channels),
            )
            self.tokens = ObjectTokens(token_dim)
            return
        down, up = _block_types(config, "Attn")
        self.unet = UNet2DModel(
            **shared,
            down_block_types=down,
            up_block_types=up,
            attention_head_dim=config.attention_head_dim,
            class_embed_type="identity",  # our condition embedding is added to the timestep embedding
        )
        self.cond_embed = nn.Sequential(
            nn.Linear(NUM_CLASSES, config.embed_dim),
            nn.SiLU(),
            nn.Linear(config.embed_dim, config.embed_dim),
        )
        self.null_embed = nn.Parameter(
            torch.zeros(config.embed_dim)
        )  # classifier-free guidance's null condition

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x (B, 3, 64, 64) noisy images, t (B,) timesteps, cond (B, 24) multi-hot -> (B, 3, 64, 64) prediction."""
        patches = nn.functional.pixel_unshuffle(x, self.config.patch_size)  # (B, 3 p^2, 64/p, 64/p)
        if self.config.conditioning == "tokens":
            tokens, mask = self.tokens(cond.to(x.dtype))
            out = self.unet(patches, t, encoder_hidden_states=tokens, encoder_attention_mask=mask).sample
        else:
            is_null = (cond.sum(-1, keepdim=True) == 0).to(x.dtype)  # (B, 1)
            emb = self.cond_embed(cond.to(x.dtype)) * (1 - is_null) + self.null_embed.to(x.dtype) * is_null
            out = self.unet(patches, t, class_labels=emb).sample
        out = nn.functional.pixel_shuffle(out, self.config.patch_size)
        return out if self.refine is None else self.refine(x, t, out)


class EpsilonModel(nn.Module):
    """The network with its parameterisation (DiffusionConfig.prediction), which nothing else branches on.
    forward is what samplers and exports see: always eps. With epsilon prediction it adds the linear skip
    c(t) (x_t - sqrt(a_t) mean) (see DiffusionConfig); a v-prediction is converted with the schedule held as a
    buffer (eps = sqrt(a_t) v + sqrt(1 - a_t) x_t). Training compares training_output with training_target,
    weighted by min_snr_weight."""

    def __init__(self, net: ConditionalUNet, diffusion: DiffusionConfig) -> None:
        super().__init__()
        self.net = net
        self.v_prediction = diffusion.prediction == "v"
        self.skip_std, self.skip_mean = diffusion.skip_data_std, diffusion.skip_data_mean
        self.register_buffer(
            "alphas_cumprod", NoiseSchedule.from_config(diffusion).alphas_cumprod, persistent=False
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self._eps(self.net(x, t, cond), x, t)

    def _eps(self, out: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = self.alphas_cumprod[t.long()].view(-1, 1, 1, 1)
        if self.v_prediction:
            return a.sqrt() * out + (1 - a).sqrt() * x
        if self.skip_std is None:
            return out
        c = (1 - a).sqrt() / (a * self.skip_std**2 + 1 - a)  # (B, 1, 1, 1) Wiener gain, float32
        return out + c * (x - a.sqrt() * self.skip_mean)

    def training_output(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """What the loss regresses: eps (the skip added), or the network's own v for v-prediction."""
        out = self.net(x, t, cond)
        return out if self.v_prediction else self._eps(out, x, t)

    def training_target(
        self, schedule: NoiseSchedule, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        """The value training_output should take at x_t = schedule.add_noise(x0, noise, t), computed with the
        loss's schedule (its alpha-bars as computed on the training device)."""
        return schedule.velocity(x0, noise, t) if self.v_prediction else noise

    def min_snr_weight(self, snr: torch.Tensor, gamma: float) -> torch.Tensor:
        """Min-SNR-gamma (Hang et al. 2023): the x_0-space weight min(SNR, gamma) in this parameterisation's
        loss, min(SNR, gamma) / SNR for eps and min(SNR, gamma) / (SNR + 1) for v."""
        return snr.clamp(max=gamma) / (snr + 1 if self.v_prediction else snr)


class TrainingForm(nn.Module):
    """A model whose forward is its training_output: the module DistributedDataParallel and torch.compile wrap
    (DDP synchronises gradients only through forward)."""

    def __init__(self, model: EpsilonModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.model.training_output(x, t, cond)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass(frozen=True)
class ModelCard:
    """Everything config.json beside a model's weights says about it (read and checked by card.read_section)."""

    model: ModelConfig
    diffusion: DiffusionConfig
    info: ModelInfo = field(default_factory=ModelInfo, metadata=OPTIONAL)  # how it was made: data, steps, ...
    # a card may predate this section: it then samples with the project's defaults
    sampling: SamplingDefaults = field(default_factory=SamplingDefaults, metadata=OPTIONAL)

    def to_json(self) -> str:
        sections = {"model": self.model, "diffusion": self.diffusion, "sampling": self.sampling}
        return json.dumps(
            {**{k: section_dict(v) for k, v in sections.items()}, "info": self.info.to_dict()}, indent=2
        )

    @staticmethod
    def from_json(text: str) -> ModelCard:
        return read_section(ModelCard, json.loads(text), "")


WEIGHTS_NAME, CONFIG_NAME = "model.safetensors", "config.json"


def save_model(
    folder: str | Path, net: ConditionalUNet, card: ModelCard, dtype: torch.dtype = torch.float16
) -> None:
    """Weights (safetensors, `dtype`) + config.json; both written atomically."""
    folder = Path(folder)
    state = {k: v.detach().to("cpu", dtype) for k, v in net.state_dict().items()}
    atomic.save_safetensors(folder / WEIGHTS_NAME, state)
    atomic.write_text(folder / CONFIG_NAME, card.to_json() + "\n")


def _model_files(folder: str | Path, option: str) -> tuple[Path, Path]:
    folder = Path(folder)
    if folder.is_file():
        raise UsageError(
            f"{option} {quote(folder)} is not a model folder but a file: give the folder holding {WEIGHTS_NAME} and "
            f"{CONFIG_NAME}"
        )
    weights, config = folder / WEIGHTS_NAME, folder / CONFIG_NAME
    if not weights.is_file() or not config.is_file():
        hint = (
            f"; a training run keeps its model in {str(folder / 'model')!r}"
            if (folder / "model").is_dir()
            else ""
        )
        raise UsageError(
            f"{option} {str(folder)!r} is not a model folder: it needs {WEIGHTS_NAME} and {CONFIG_NAME}{hint}"
        )
    return weights, config


def load_card(folder: str | Path, option: str = "--model") -> ModelCard:
    """The config.json of a model folder; `option` names the folder in messages."""
    _, config = _model_files(folder, option)
    return read_file(ModelCard, config, "fastddpm model config")


def load_model(
    folder: str | Path, device: str | torch.device = "cpu", option: str = "--model"
) -> tuple[ConditionalUNet, ModelCard]:
    """Rebuild the network from config.json and load its weights in float32; `option` names the folder in
    messages."""
    from safetensors.torch import load_file

    weights, config = _model_files(folder, option)
    card = load_card(folder, option)
    net = ConditionalUNet(card.model)
    try:
        state = load_file(str(weights))
        net.load_state_dict({k: v.float() for k, v in state.items()})
    except Exception as err:  # noqa: BLE001 - corrupt file, wrong shapes or keys: one clear message
        raise UsageError(
            f"{weights} does not match {config}: {type(err).__name__}: {str(err)[:300]}"
        ) from None
    return net.to(device).eval(), card


def checkpoint_sha256(model_dir: str | Path) -> str:
    """sha256 of a model folder's weights file: the identity every export and bench result records."""
    path = Path(model_dir)
    path = path if path.is_file() else path / WEIGHTS_NAME
    if not path.is_file():
        raise UsageError(f"no {WEIGHTS_NAME} in {str(model_dir)!r}")
    return atomic.file_sha256(path)
