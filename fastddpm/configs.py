"""Every run's settings as frozen dataclasses (choices.py names the values a setting may take): saved beside
checkpoints, exports and results, and read by the CLI for its defaults. Torch-free, so `fastddpm --help` stays
instant; each checks its own ranges, and what needs a registry (samplers, backends) is checked where it lives.
Evaluator training and distillation have their own: fastddpm/evaluator/config.py, fastddpm/distill/config.py."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from fastddpm.defaults import DEFAULT_GUIDANCE
from fastddpm.choices import Amp, Conditioning, Device, Prediction, SamplerName, Schedule, Spacing
from fastddpm.card import OPTIONAL
from fastddpm.errors import UsageError
from fastddpm.folders import quote


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
    conditioning: str = "multihot"  # multihot | tokens (see model.py)
    # channels of the full-resolution refinement head after the pixel shuffle (model.py); 0: none
    refine_channels: int = field(default=0, metadata=OPTIONAL)

    def __post_init__(self) -> None:
        Conditioning.check(self.conditioning, "--conditioning")
        object.__setattr__(self, "block_channels", tuple(self.block_channels))
        object.__setattr__(self, "attention_levels", tuple(self.attention_levels))
        levels = len(self.block_channels)
        if self.patch_size < 1 or self.image_size % self.patch_size:
            raise UsageError(f"--patch {self.patch_size} must divide the image size {self.image_size}")
        if levels < 1 or (self.image_size // self.patch_size) % 2 ** (levels - 1):
            raise UsageError(
                f"image size {self.image_size} does not divide into {self.patch_size}-pixel patches and "
                f"{levels} levels"
            )
        if any(c < 1 or c % self.norm_groups for c in self.block_channels):
            raise UsageError(
                f"--channels {self.block_channels}: each must be a positive multiple of {self.norm_groups}"
            )
        if self.refine_channels < 0:
            raise UsageError(
                f"--refine {self.refine_channels} must be 0 (no head) or a positive channel count"
            )
        bad = [a for a in self.attention_levels if not 0 <= a < levels]
        if bad:
            raise UsageError(f"--attention {bad[0]} is out of range: this model has levels 0 to {levels - 1}")

    @property
    def embed_dim(self) -> int:
        return self.block_channels[0] * 4


@dataclass(frozen=True)
class DiffusionConfig:
    """How images are noised and what the network predicts; saved with every checkpoint."""

    schedule: str = "linear"  # linear | cosine
    timesteps: int = 1000
    prediction: str = "epsilon"  # epsilon | v
    # Epsilon prediction with a skip: eps = c(t) (x_t - sqrt(a_t) mean) + F(x_t, t, c), where c(t) x_t is the best
    # linear guess of eps for data of this mean and std (Wiener filter). The network then learns only the
    # residual instead of copying the noise through its channels (measured: without it, a 4x4-patch UNet kept an
    # eps error of 0.02 at t = 999 where the linear guess has ~0). None: no skip.
    skip_data_std: float | None = 0.1
    skip_data_mean: float = 0.0

    def __post_init__(self) -> None:
        Schedule.check(self.schedule, "schedule")
        Prediction.check(self.prediction, "prediction")
        if self.timesteps < 1:
            raise UsageError(f"timesteps {self.timesteps} is out of range: at least 1")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run needs; saved as runs/NAME/config.json."""

    data: str  # i-CLEVR folder (course layout)
    out: str  # run folder
    epochs: float = 60.0  # length of the LR schedule, in passes over the data
    minutes: float | None = None  # wall-clock budget; when set, the LR schedule follows time too
    batch_size: int | None = None  # per process; None: 256 on CUDA, 32 on CPU (the shipped CPU run)
    lr: float = 4e-4
    warmup_steps: int = 200
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema: bool = True
    ema_decay: float = 0.999
    cond_drop: float = 0.1  # share of null conditions, for classifier-free guidance
    # Mirror each training image left-right with probability 1/2: the labels name objects, not positions, so a
    # mirrored scene keeps its labels (the lighting is not symmetric; whether it helps is measured, not assumed).
    hflip: bool = False
    min_snr_gamma: float | None = 5.0
    min_snr_floor: float = 0.0  # with min-SNR: the lowest weight, which min-SNR lowers toward 0 at low noise
    freeze_body: bool = False  # train only the --init model's refinement head; the rest keeps its weights
    amp: str = "auto"  # auto (bf16 on CUDA and on a CPU with native bf16, else off) | bf16 | fp16 | off
    compile: bool | None = None  # None: on CUDA only
    device: str = "auto"  # auto | cpu | cuda
    seed: int = 0
    checkpoint_minutes: float = 5.0
    eval_minutes: float = 10.0  # 0 disables the quick evaluation
    eval_steps: int = 20  # DDIM steps of the quick evaluation
    eval_guidance: float = DEFAULT_GUIDANCE
    evaluator: str | None = None  # None: the shipped checkpoints/evaluator.pth
    log_every: int = 25  # steps between loss readouts (each one synchronises the device)
    # A model folder whose weights start the run (a fine-tune; the optimiser starts fresh). Its model and diffusion
    # configs replace this config's (training/init_model.py with_init), and init_sha256 records its weights' hash.
    init: str | None = None
    init_sha256: str | None = None
    # With --init: levels (0 = finest) where self-attention is added to its model, each starting as the identity.
    grow_attention: tuple[int, ...] = ()
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(data: dict) -> TrainConfig:
        data = dict(data)
        data["model"] = ModelConfig(**data["model"])
        data["diffusion"] = DiffusionConfig(**data["diffusion"])
        data["grow_attention"] = tuple(data.get("grow_attention", ()))
        return TrainConfig(**data)

    def validate(self) -> None:
        """Every value in its range, with a message naming it (the CLI has already checked most)."""
        Amp.check(self.amp, "--amp")
        Device.check(self.device, "--device")
        for option, value in (("--epochs", self.epochs), ("--lr", self.lr), ("--minutes", self.minutes)):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise UsageError(f"{option} {value} is out of range: a finite number > 0")
        if self.batch_size is not None and self.batch_size < 1:
            raise UsageError(f"--batch-size {self.batch_size} is out of range: at least 1")
        if not 0 <= self.cond_drop < 1:
            raise UsageError(f"--cond-drop {self.cond_drop} is out of range: [0, 1)")
        if not (math.isfinite(self.eval_minutes) and self.eval_minutes >= 0):
            raise UsageError(f"--eval-minutes {self.eval_minutes} is out of range: a number >= 0 (0: off)")
        if not 0 <= self.min_snr_floor <= 1 or (self.min_snr_floor and self.min_snr_gamma is None):
            raise UsageError(f"--min-snr-floor {self.min_snr_floor}: in [0, 1], with --min-snr-gamma > 0")
        if self.grow_attention and self.init is None:
            raise UsageError("--grow-attention adds attention to an --init model: give --init")
        if self.freeze_body and self.init is None:
            raise UsageError("--freeze-body trains only the refinement head of an --init model: give --init")


@dataclass(frozen=True)
class SampleSettings:
    """How one denoising run goes; checked when built (the step count's upper bound once the schedule is known)."""

    sampler: str = "ddim"  # a name in samplers.SAMPLERS
    steps: int = 50
    eta: float = 0.0  # DDIM only: 0 deterministic, 1 DDPM-like
    guidance: float = DEFAULT_GUIDANCE  # classifier-free guidance scale; 1 = plain conditional model
    batch_size: int = 32  # fixed chunk shape (padded at the end)
    # timesteps LO, HI the guidance scale applies at (the conditional model elsewhere); None: every step
    guidance_interval: tuple[int, int] | None = None
    spacing: str | None = None  # the timestep grid (choices.Spacing); None: the sampler's own

    def __post_init__(self) -> None:
        SamplerName.check(self.sampler, "--sampler")  # eta and the step range per sampler: sampling/batch.py
        if self.steps < 1:
            raise UsageError(f"--steps {self.steps} is out of range: {self.sampler} takes at least 1 step")
        if not math.isfinite(self.eta) or self.eta < 0:
            raise UsageError(f"--eta {self.eta} is out of range: a finite number >= 0")
        if not math.isfinite(self.guidance) or self.guidance < 0:
            raise UsageError(f"--guidance {self.guidance} is out of range: a finite scale >= 0 (1 = none)")
        if self.batch_size < 1:
            raise UsageError(f"--batch-size {self.batch_size} is out of range: at least 1")
        if self.guidance_interval is not None:
            check_interval(self.guidance_interval)
        if self.spacing is not None:
            Spacing.check(self.spacing, "--spacing")


def check_interval(interval, option: str = "--guidance-interval") -> None:
    """A guidance interval is two integer timesteps lo <= hi, lo >= 0 (the schedule's end is checked with it)."""
    ok = isinstance(interval, tuple | list) and len(interval) == 2
    ok = ok and all(isinstance(v, int) and not isinstance(v, bool) for v in interval)
    if not (ok and 0 <= interval[0] <= interval[1]):
        shown = format_interval(interval) if ok else repr(interval)
        raise UsageError(f"{option} {shown} is out of range: two timesteps LO-HI with 0 <= LO <= HI")


def parse_interval(text: str, option: str = "--guidance-interval") -> tuple[int, int] | None:
    """'200-999' -> (200, 999); 'all' -> None (the scale at every step)."""
    if text == "all":
        return None
    lo, sep, hi = text.partition("-")
    if not (sep and lo.isdigit() and hi.isdigit()):
        raise UsageError(f"{option} takes `all` or timesteps LO-HI like 0-450; got {quote(text)}")
    check_interval((int(lo), int(hi)), option)
    return int(lo), int(hi)


def format_interval(interval) -> str:
    """parse_interval's inverse: (200, 999) -> '200-999', None -> 'all'."""
    return "all" if interval is None else f"{interval[0]}-{interval[1]}"


def parse_spacing(text: str, option: str = "--spacing") -> str | None:
    """'logsnr' -> 'logsnr' (a name in choices.Spacing); 'own' -> None (each sampler's own grid)."""
    names = ("own", *Spacing.names())
    if text not in names:
        raise UsageError(f"{option} {quote(text)} is not one of {', '.join(names)}")
    return None if text == "own" else text


def format_spacing(spacing: str | None) -> str:
    """parse_spacing's inverse: None -> 'own'."""
    return spacing or "own"


@dataclass(frozen=True)
class SamplingDefaults:
    """A model's own sampling defaults, saved in its config.json: what `sample`, `bench` and `distill` use when
    not told. A newly trained model gets the project's; bench/guidance_sweep.py --record writes the scale it chose
    on validation label sets for these weights (retraining writes a fresh card, so the choice never outlives them)."""

    guidance: float = DEFAULT_GUIDANCE
    chosen_on: str = "project default, not tuned for this model"
    # timesteps LO, HI the scale applies at; None: every step (also what a card written without it means)
    guidance_interval: tuple[int, ...] | None = field(default=None, metadata=OPTIONAL)
    # the timestep grid every sampler runs on (choices.Spacing); None: each sampler's own
    spacing: str | None = field(default=None, metadata=OPTIONAL)
    # the sampler, and its step count, that sample and bench use when not told; None: SampleSettings' sampler
    # at that sampler's own step count
    sampler: str | None = field(default=None, metadata=OPTIONAL)
    steps: int | None = field(default=None, metadata=OPTIONAL)
    sampler_chosen_on: str | None = field(default=None, metadata=OPTIONAL)

    def __post_init__(self) -> None:
        scale = self.guidance
        if not (isinstance(scale, int | float) and math.isfinite(scale) and scale >= 0):
            raise UsageError(f"sampling guidance {self.guidance!r} is out of range: a finite scale >= 0")
        if self.guidance_interval is not None:
            check_interval(self.guidance_interval, "sampling guidance_interval")
        if self.spacing is not None:
            Spacing.check(self.spacing, "sampling spacing")
        if self.sampler is not None:
            SamplerName.check(self.sampler, "sampling sampler")
        if self.steps is not None and (self.sampler is None or self.steps < 1):
            raise UsageError(f"sampling steps {self.steps!r}: a whole number >= 1, beside sampling sampler")


@dataclass(frozen=True)
class BenchConfig:
    """One `fastddpm bench` run: the grid of configurations and how each is scored."""

    samplers: tuple[str, ...] = ("ddim",)
    steps: tuple[int, ...] = (50,)
    backends: tuple[str, ...] = ("torch",)
    splits: dict[str, list] = field(default_factory=dict)  # split name -> label lists
    seeds: tuple[int, ...] = (0, 1, 2)  # sampling seeds, fixed before any score is seen
    guidance: float = DEFAULT_GUIDANCE
    guidance_interval: tuple[int, ...] | None = None  # as in SampleSettings
    spacing: str | None = None  # as in SampleSettings
    eta: float = 0.0  # applies to the samplers that take eta (DDIM); the others run without
    reference: bool = True  # include the DDPM-1000 row
    model_dir: str = "checkpoints/default"
    evaluator: str | None = None  # None: the shipped stand-in
    device: str = "auto"
    dtype: str = "auto"
    capture: bool = True  # CUDA only: one graph per denoising run
    export_dir: str = "export"
