"""`fastddpm export --onnx`: the conditional UNet (EMA weights, eps output) to ONNX, checked for parity against
torch fp32 and, in reduced precision, for sane samples. Every artifact gets a sidecar saying how it was made
(artifacts.py); names, shapes and ranges come from the contract (contract.py)."""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from pathlib import Path

import torch
from torch import nn

from fastddpm import __version__, atomic
from fastddpm.errors import UsageError
from fastddpm.atomic import file_sha256
from fastddpm.export.artifacts import export_stem, sidecar_path
from fastddpm.backends.contract import UNetIO
from fastddpm.backends.onnxruntime_backend import open_session, run_session, session_contract
from fastddpm.choices import Precision
from fastddpm.model import EpsilonModel, ModelCard, checkpoint_sha256, load_model
from fastddpm.runtime import DTYPES, resolve_device

# Relative error ||onnx - torch_fp32|| / ||torch_fp32|| an export may show, per precision of the exported graph.
PARITY_TOLERANCE = {"fp32": 1e-3, "fp16": 3e-2, "bf16": 8e-2}
PARITY_BATCHES = (1, 7, 32)


class _Float32GroupNorm(nn.GroupNorm):
    """GroupNorm computed in float32 inside a reduced-precision graph: fp16 variance overflows and underflows
    (the known failure of fp16 UNet engines), so normalisation keeps full precision."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = nn.functional.group_norm(
            x.float(), self.num_groups, self.weight.float(), self.bias.float(), self.eps
        )
        return out.to(x.dtype)


def reduced_precision_copy(model: EpsilonModel, dtype: torch.dtype) -> EpsilonModel:
    """Cast the network to `dtype`, keeping GroupNorm and attention softmax in float32."""
    from diffusers.models.attention_processor import Attention, AttnProcessor

    if dtype == torch.float32:
        return model
    for module in model.net.modules():
        for name, child in module.named_children():
            if isinstance(child, nn.GroupNorm):
                norm = _Float32GroupNorm(child.num_groups, child.num_channels, child.eps, child.affine)
                norm.load_state_dict(child.state_dict())
                setattr(module, name, norm)
            if isinstance(child, Attention):
                child.upcast_attention = child.upcast_softmax = True
                child.set_processor(AttnProcessor())  # the processor that honours the upcast flags
    model.net.to(dtype)
    for module in model.net.modules():
        if isinstance(module, _Float32GroupNorm):
            module.float()
    return model


class _Float32IO(nn.Module):
    """The export contract: float32 in and out at every precision; the graph casts inside."""

    def __init__(self, model: EpsilonModel, dtype: torch.dtype) -> None:
        super().__init__()
        self.model, self.dtype = model, dtype

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.dtype), t, cond.to(self.dtype)).float()


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.double() - ref.double()).norm() / ref.double().norm().clamp_min(1e-12))


@dataclasses.dataclass(frozen=True)
class ExportRecord:
    """The sidecar JSON of an export: what it was made from and how it checked out."""

    checkpoint: str
    checkpoint_sha256: str
    file_sha256: str  # of the .onnx itself, so a renamed or edited file is refused
    precision: str
    io: dict
    model: dict  # the model card (architecture, diffusion, training info)
    parity: list  # per batch: max_abs, relative error, provider
    tolerance: float  # relative error allowed for this precision
    sanity: dict | None  # low precision: NaN / blank / saturation check of sampled images
    seconds: float
    torch: str = torch.__version__
    fastddpm: str = __version__


def contract_for(card: ModelCard, batch: tuple[int, int, int]) -> UNetIO:
    """The contract of a model: its image size and timestep range, and the batch profile asked for."""
    lo, opt, hi = batch
    return UNetIO(
        image_size=card.model.image_size,
        batch_min=lo,
        batch_opt=opt,
        batch_max=hi,
        num_timesteps=card.diffusion.timesteps,
    )


def export_onnx(
    model_dir: str | Path,
    out_dir: str | Path,
    precision: str = "fp32",
    batch: tuple[int, int, int] = (1, 64, 128),  # MIN, OPT, MAX rows (guidance doubles the images)
    device: str = "auto",  # where ONNX Runtime runs the parity and sanity checks
) -> tuple[Path, ExportRecord]:
    """Export, check and write export/unet-<sha12>-<precision>.onnx with its sidecar; returns both."""
    Precision.check(precision, "--precision")
    check_device = resolve_device(device)
    _check_precision_runs(precision, check_device)
    start = time.perf_counter()
    net, card = load_model(model_dir)
    io = contract_for(card, batch)
    reference = EpsilonModel(net, card.diffusion).eval()
    dtype = DTYPES[precision]
    exported = _Float32IO(reduced_precision_copy(copy.deepcopy(reference), dtype), dtype).eval()
    sha = checkpoint_sha256(model_dir)
    target = Path(out_dir) / f"{export_stem(sha, precision)}.onnx"
    with atomic.atomic_path(target) as tmp:
        _write_onnx(exported, io, tmp, {"checkpoint_sha256": sha, "precision": precision, "card": card})
        tolerance = PARITY_TOLERANCE[precision]
        parity = _parity(tmp, reference, io, tolerance, precision, check_device)
        sanity = None if precision == "fp32" else _sanity(tmp, card, reference, check_device)
        record = ExportRecord(
            checkpoint=str(model_dir),
            checkpoint_sha256=sha,
            file_sha256=file_sha256(tmp),
            precision=precision,
            io=dataclasses.asdict(io),
            model=json.loads(card.to_json()),
            parity=parity,
            tolerance=tolerance,
            sanity=sanity,
            seconds=round(time.perf_counter() - start, 1),
        )
        atomic.write_json(sidecar_path(target), dataclasses.asdict(record))
    return target, record


class PrecisionUnavailable(UsageError):
    """This machine cannot check an export at that precision (refused before any work)."""


def _check_precision_runs(precision: str, device: torch.device) -> None:
    """The parity check runs the export in ONNX Runtime; its CPU provider has no bf16 kernels (Gemm, Conv)."""
    import onnxruntime

    cuda = device.type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    if precision == "bf16" and not cuda:
        raise PrecisionUnavailable(
            "--precision bf16: ONNX Runtime's CPU provider has no bf16 kernels, so the export cannot be checked "
            "here; choose fp16 or fp32, or export with --device cuda where onnxruntime-gpu is installed"
        )


def _write_onnx(module: nn.Module, io: UNetIO, path: Path, meta: dict) -> None:
    """torch.onnx.export (dynamo) with a dynamic batch axis, checked, with the contract in its metadata."""
    import onnx

    example = io.random_inputs(io.batch_opt, torch.Generator().manual_seed(0))
    batch = torch.export.Dim("batch", min=io.batch_min, max=io.batch_max)
    torch.onnx.export(
        module,
        tuple(example[name] for name in io.input_names),
        str(path),
        input_names=io.input_names,
        output_names=[io.eps],
        dynamic_shapes=tuple({0: batch} for _ in io.input_names),
        dynamo=True,
        external_data=False,
    )
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    props = {
        "fastddpm": __version__,
        "checkpoint_sha256": meta["checkpoint_sha256"],
        "precision": meta["precision"],
        "model_card": meta["card"].to_json(),
        "io": json.dumps(dataclasses.asdict(io)),
    }
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))


def _parity(
    path: Path, reference: nn.Module, io: UNetIO, tolerance: float, precision: str, device: torch.device
) -> list[dict]:
    session = open_session(path, device)
    generator = torch.Generator().manual_seed(0)
    rows = []
    for batch in PARITY_BATCHES:
        inputs = io.random_inputs(min(max(batch, io.batch_min), io.batch_max), generator)
        args = [inputs[name] for name in io.input_names]
        with torch.no_grad():
            ref = reference(*args)
        out = run_session(session, io, *args)
        err = relative_error(out, ref)
        rows.append(
            {
                "batch": args[0].shape[0],
                "max_abs": float((out - ref).abs().max()),
                "relative": err,
                "provider": session.get_providers()[0],
            }
        )
        if not err <= tolerance:  # also catches NaN
            raise UsageError(
                f"ONNX parity failed for {precision} at batch {batch}: relative error {err:.2e} > {tolerance:.0e} "
                f"(the tolerance for {precision}); nothing was written"
            )
    return rows


def _sanity(path: Path, card: ModelCard, reference: nn.Module, device: torch.device) -> dict:
    """Sample a few images through the reduced-precision graph and through the fp32 reference, same seeds: the
    export must not bring NaN, blank or saturated images the reference does not make (a barely trained model's
    images are blank in every precision, which says nothing about the export)."""
    from fastddpm.configs import SampleSettings
    from fastddpm.sampling.batch import generate_split
    from fastddpm.schedule import NoiseSchedule

    session = open_session(path, device)
    io = session_contract(session)
    labels = [
        ["red sphere"],
        ["cyan cube", "gray cylinder"],
        ["yellow sphere", "blue cube", "green cylinder"],
        ["purple cube"],
    ]

    def sample(eps_fn) -> torch.Tensor:
        schedule = NoiseSchedule.from_config(card.diffusion)
        settings = SampleSettings("ddim", 10, batch_size=4)
        with torch.no_grad():
            return generate_split(eps_fn, schedule, labels, settings, seed=0, device="cpu")

    images = sample(lambda x, t, cond: run_session(session, io, x, t, cond))
    expected = sample(reference)
    result = {
        "finite": bool(torch.isfinite(images).all()),
        "std": float(images.std()),
        "saturated": float((images.abs() > 0.999).float().mean()),
        "reference_std": float(expected.std()),
        "reference_saturated": float((expected.abs() > 0.999).float().mean()),
    }
    blank = result["std"] < min(0.05, 0.5 * result["reference_std"])
    if not result["finite"] or blank or result["saturated"] > max(0.5, result["reference_saturated"] + 0.25):
        raise UsageError(
            f"the reduced-precision ONNX export produces broken images (NaN, blank or saturated): {result}"
        )
    return result
