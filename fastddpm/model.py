"""The conditional UNet: diffusers' UNet2DModel blocks behind a pixel-(un)shuffle stem, conditioned on the
multi-hot label vector through a learned embedding added to the timestep embedding.

Export-friendly: forward(x, t, cond) takes three tensors and returns one, with no Python branching on tensor values;
the null condition (all-zero multi-hot) selects a learned embedding with torch.where.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from fastddpm.conditions import NUM_CLASSES
from fastddpm.errors import UsageError
from fastddpm.schedule import DiffusionConfig, NoiseSchedule


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of ConditionalUNet; saved as config.json beside every checkpoint and export."""

    image_size: int = 64  # pixels per side
    patch_size: int = 4  # pixel-unshuffle factor: the UNet runs at image_size / patch_size
    block_channels: tuple[int, ...] = (64, 128, 128)  # channels per UNet level
    attention_levels: tuple[int, ...] = (1, 2)  # levels (0 = finest) with self-attention
    layers_per_block: int = 1  # ResNet blocks per level on the way down (one more on the way up)
    norm_groups: int = 32  # GroupNorm groups
    attention_head_dim: int = 32  # channels per attention head

    def __post_init__(self) -> None:
        object.__setattr__(self, "block_channels", tuple(self.block_channels))
        object.__setattr__(self, "attention_levels", tuple(self.attention_levels))
        if self.image_size % self.patch_size or (self.image_size // self.patch_size) % 2 ** (
            len(self.block_channels) - 1
        ):
            raise UsageError(
                f"image size {self.image_size} does not divide into patches and {len(self.block_channels)} levels"
            )
        if any(c % self.norm_groups for c in self.block_channels):
            raise UsageError(
                f"every channel count {self.block_channels} must be divisible by norm_groups {self.norm_groups}"
            )

    @property
    def embed_dim(self) -> int:
        return self.block_channels[0] * 4


class ConditionalUNet(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        from diffusers import UNet2DModel

        self.config = config
        levels = len(config.block_channels)
        down = tuple(
            "AttnDownBlock2D" if i in config.attention_levels else "DownBlock2D" for i in range(levels)
        )
        up = tuple(
            "AttnUpBlock2D" if levels - 1 - i in config.attention_levels else "UpBlock2D"
            for i in range(levels)
        )
        patch_channels = 3 * config.patch_size**2
        self.unet = UNet2DModel(
            sample_size=config.image_size // config.patch_size,
            in_channels=patch_channels,
            out_channels=patch_channels,
            block_out_channels=config.block_channels,
            down_block_types=down,
            up_block_types=up,
            layers_per_block=config.layers_per_block,
            norm_num_groups=config.norm_groups,
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
        is_null = (cond.sum(-1, keepdim=True) == 0).to(x.dtype)  # (B, 1)
        emb = self.cond_embed(cond.to(x.dtype)) * (1 - is_null) + self.null_embed.to(x.dtype) * is_null
        patches = nn.functional.pixel_unshuffle(x, self.config.patch_size)  # (B, 3 p^2, 64/p, 64/p)
        out = self.unet(patches, t, class_labels=emb).sample
        return nn.functional.pixel_shuffle(out, self.config.patch_size)


class EpsilonModel(nn.Module):
    """The network as samplers, exports and the epsilon loss see it: always returns eps. With epsilon
    prediction it adds the linear skip c(t) (x_t - sqrt(a_t) mean) (see DiffusionConfig); a v-prediction is
    converted with the schedule held as a buffer (eps = sqrt(a_t) v + sqrt(1 - a_t) x_t)."""

    def __init__(self, net: ConditionalUNet, diffusion: DiffusionConfig) -> None:
        super().__init__()
        self.net = net
        self.v_prediction = diffusion.prediction == "v"
        self.skip_std, self.skip_mean = diffusion.skip_data_std, diffusion.skip_data_mean
        self.register_buffer(
            "alphas_cumprod", NoiseSchedule.from_config(diffusion).alphas_cumprod, persistent=False
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        out = self.net(x, t, cond)
        a = self.alphas_cumprod[t.long()].view(-1, 1, 1, 1)
        if self.v_prediction:
            return a.sqrt() * out + (1 - a).sqrt() * x
        if self.skip_std is None:
            return out
        c = (1 - a).sqrt() / (a * self.skip_std**2 + 1 - a)  # (B, 1, 1, 1) Wiener gain, float32
        return out + c * (x - a.sqrt() * self.skip_mean)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass(frozen=True)
class ModelCard:
    """Everything config.json beside a model's weights says about it."""

    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    info: dict = field(default_factory=dict)  # how it was made: data, steps, wall time, ...

    def to_json(self) -> str:
        return json.dumps(
            {"model": asdict(self.model), "diffusion": asdict(self.diffusion), "info": self.info}, indent=2
        )

    @staticmethod
    def from_json(text: str) -> ModelCard:
        data = json.loads(text)
        return ModelCard(
            ModelConfig(**data["model"]), DiffusionConfig(**data["diffusion"]), data.get("info", {})
        )


WEIGHTS_NAME, CONFIG_NAME = "model.safetensors", "config.json"


def save_model(
    folder: str | Path, net: ConditionalUNet, card: ModelCard, dtype: torch.dtype = torch.float16
) -> None:
    """Weights (safetensors, `dtype`) + config.json; both written atomically."""
    from fastddpm import atomic

    folder = Path(folder)
    state = {k: v.detach().to("cpu", dtype) for k, v in net.state_dict().items()}
    atomic.save_safetensors(folder / WEIGHTS_NAME, state)
    atomic.write_text(folder / CONFIG_NAME, card.to_json() + "\n")


def _model_files(folder: str | Path) -> tuple[Path, Path]:
    folder = Path(folder)
    folder = folder.parent if folder.is_file() else folder
    weights, config = folder / WEIGHTS_NAME, folder / CONFIG_NAME
    if not weights.is_file() or not config.is_file():
        raise UsageError(f"{str(folder)!r} is not a model folder: it needs {WEIGHTS_NAME} and {CONFIG_NAME}")
    return weights, config


def load_card(folder: str | Path) -> ModelCard:
    """The config.json of a model folder (or of the folder holding a model.safetensors)."""
    _, config = _model_files(folder)
    try:
        return ModelCard.from_json(config.read_text())
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise UsageError(f"{config} is not a fastddpm model config ({type(err).__name__}: {err})") from None


def load_model(folder: str | Path, device: str | torch.device = "cpu") -> tuple[ConditionalUNet, ModelCard]:
    """Rebuild the network from config.json and load its weights in float32."""
    from safetensors.torch import load_file

    weights, config = _model_files(folder)
    card = load_card(folder)
    net = ConditionalUNet(card.model)
    try:
        state = load_file(str(weights))
        net.load_state_dict({k: v.float() for k, v in state.items()})
    except Exception as err:  # noqa: BLE001 - corrupt file, wrong shapes or keys: one clear message
        raise UsageError(
            f"{weights} does not match {config}: {type(err).__name__}: {str(err)[:300]}"
        ) from None
    return net.to(device).eval(), card
