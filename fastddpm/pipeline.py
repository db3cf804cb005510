"""`fastddpm.Pipeline`: sampling and scoring from Python, the same path `fastddpm sample` and `fastddpm bench` use.

    pipe = fastddpm.Pipeline.from_pretrained("checkpoints/default")
    images = pipe([["red sphere", "cyan cube"], ["gray cube"]], sampler="dpmpp", steps=10, seed=0)

Bad input raises fastddpm.errors.UsageError (a ValueError) with the CLI's message."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch

from fastddpm.backends import Backend
from fastddpm.export import open_backend
from fastddpm.conditions import LabelList, multi_hot, validate_labels
from fastddpm.configs import SampleSettings
from fastddpm.data.reader import to_model_range, to_uint8
from fastddpm.errors import UsageError
from fastddpm.model import ModelCard, load_card
from fastddpm.runtime import resolve_device, resolve_dtype
from fastddpm.sampling.batch import card_settings, generate, image_seeds
from fastddpm.schedule import NoiseSchedule

if TYPE_CHECKING:
    from PIL.Image import Image


class Pipeline:
    """One model on one backend: call it with label lists to get images."""

    def __init__(self, backend: Backend, model_dir: Path, card: ModelCard, backend_name: str) -> None:
        self.backend = backend
        self.model_dir = model_dir
        self.card = card
        self.backend_name = backend_name
        self.schedule = NoiseSchedule.from_config(card.diffusion)

    @classmethod
    def from_pretrained(
        cls,
        model_dir: str | Path,
        device: str = "auto",
        backend: str = "torch",
        dtype: str = "auto",
        export_dir: str | Path = "export",
    ) -> Pipeline:
        """Load a model folder (a trained model or a distilled student) on `backend` ("torch", "compile", "ort",
        "trt", ...; ort / trt read the export of this model in `export_dir`). `device`: "auto", "cpu", "cuda"."""
        model_dir = Path(model_dir)
        card = load_card(model_dir)
        torch_device = resolve_device(device)
        built = open_backend(backend, model_dir, torch_device, resolve_dtype(dtype, torch_device), export_dir)
        return cls(built, model_dir, card, backend)

    @property
    def device(self) -> torch.device:
        return self.backend.device

    def settings(
        self,
        sampler: str | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        eta: float = SampleSettings.eta,
        batch_size: int = SampleSettings.batch_size,
        guidance_interval: str | tuple[int, int] | None = None,
        spacing: str | None = None,
    ) -> SampleSettings:
        """The checked settings `fastddpm sample` would use: what is None comes from the model card and the
        sampler's defaults (a student: its own sampler and steps, guidance 1 only); a guidance interval is
        timesteps (LO, HI) or 'LO-HI', or 'all' for every step; a spacing is a timestep grid (choices.Spacing),
        or 'own' for the sampler's."""
        return card_settings(self.card, sampler, steps, guidance, eta, batch_size, guidance_interval, spacing)

    def generate(
        self, labels: Sequence[LabelList], settings: SampleSettings, seed: int = 0, progress=None
    ) -> torch.Tensor:
        """Images (B, 3, 64, 64) in [-1, 1] for checked settings; image i uses seed*1000003+i."""
        for i, condition in enumerate(labels):
            validate_labels(condition, where=f"condition {i}")
        return generate(
            self.backend,
            self.schedule,
            multi_hot(labels),
            image_seeds(seed, len(labels)),
            settings,
            self.device,
            capture=self.backend.capturable,
            progress=progress,
        )

    def __call__(
        self,
        labels: Sequence[LabelList],
        sampler: str | None = None,
        steps: int | None = None,
        seed: int = 0,
        guidance: float | None = None,
        eta: float = SampleSettings.eta,
        output_type: Literal["pil", "pt"] = "pil",
        guidance_interval: str | tuple[int, int] | None = None,
        spacing: str | None = None,
    ) -> list[Image] | torch.Tensor:
        """One image per label list (e.g. [["red sphere", "cyan cube"], ["gray cube"]]): PIL images, or with
        output_type="pt" a float tensor (B, 3, 64, 64) in [-1, 1]. Same pixels as `fastddpm sample`."""
        if output_type not in ("pil", "pt"):
            raise UsageError(f"output_type {output_type!r}; choose pil or pt")
        if isinstance(labels, str) or not labels:
            raise UsageError(f"labels {labels!r}: give a non-empty list of label lists")
        settings = self.settings(
            sampler, steps, guidance, eta, guidance_interval=guidance_interval, spacing=spacing
        )
        images = self.generate(labels, settings, seed)
        return images if output_type == "pt" else to_pil(images)

    def score(
        self,
        images: Sequence[Image] | torch.Tensor,
        labels: Sequence[LabelList],
        evaluator: str | Path | None = None,
    ) -> float:
        """The course's accuracy of `images` for `labels` with the evaluator at `evaluator` (None: the shipped
        checkpoints/evaluator.pth)."""
        from fastddpm.evaluator.network import Evaluator

        tensor = images if isinstance(images, torch.Tensor) else from_pil(images)
        if len(tensor) != len(labels):
            raise UsageError(f"{len(tensor)} images for {len(labels)} label lists; give one image per list")
        return Evaluator(evaluator, self.device, option="evaluator").accuracy(
            tensor.to(self.device), multi_hot(labels).to(self.device)
        )


def to_pil(images: torch.Tensor) -> list[Image]:
    from PIL import Image

    return [Image.fromarray(array) for array in to_uint8(images).permute(0, 2, 3, 1).numpy()]


def from_pil(images: Sequence[Image]) -> torch.Tensor:
    import numpy as np

    arrays = np.stack([np.asarray(image.convert("RGB")) for image in images])
    return to_model_range(torch.from_numpy(arrays).permute(0, 3, 1, 2))
