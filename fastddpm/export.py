"""`fastddpm export`: the conditional UNet (EMA weights, eps output) to ONNX, checked for parity against torch,
and optionally to a TensorRT engine. Every artifact gets a JSON sidecar saying how it was made.

    export/unet-<sha12>-<precision>.onnx  (+ .json)   one per checkpoint and precision
    export/unet-<sha12>-<precision>.plan  (+ .json)   TensorRT engine built from that ONNX
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import torch
from torch import nn

from fastddpm import __version__, atomic
from fastddpm.backends.io_spec import UNetIO
from fastddpm.errors import UsageError
from fastddpm.model import WEIGHTS_NAME, EpsilonModel, load_model

PRECISIONS = ("fp32", "fp16", "bf16")
TORCH_DTYPE = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# Relative error ||onnx - torch_fp32|| / ||torch_fp32|| an export may show, per precision of the exported graph.
PARITY_TOLERANCE = {"fp32": 1e-3, "fp16": 3e-2, "bf16": 8e-2}
PARITY_BATCHES = (1, 7, 32)


def checkpoint_sha256(model_dir: str | Path) -> str:
    path = Path(model_dir)
    path = path if path.is_file() else path / WEIGHTS_NAME
    if not path.is_file():
        raise UsageError(f"no {WEIGHTS_NAME} in {str(model_dir)!r}")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export_stem(sha: str, precision: str) -> str:
    return f"unet-{sha[:12]}-{precision}"


def find_export(export: str | Path, model_dir: str | Path, suffix: str) -> Path:
    """The export of `model_dir`'s weights: `export` may be the file itself or the folder holding it. A file made
    from other weights is refused (its sidecar records the checkpoint hash)."""
    sha = checkpoint_sha256(model_dir)
    export = Path(export)
    if export.is_file():
        sidecar = (
            json.loads(export.with_suffix(".json").read_text())
            if export.with_suffix(".json").is_file()
            else {}
        )
        if sidecar.get("checkpoint_sha256") != sha:
            raise UsageError(
                f"{str(export)!r} was exported from checkpoint {str(sidecar.get('checkpoint_sha256'))[:12]}, not from "
                f"{str(model_dir)!r} ({sha[:12]}); re-run `fastddpm export --checkpoint {model_dir}`"
            )
        return export
    found = sorted(export.glob(f"unet-{sha[:12]}-*{suffix}"))
    if not found:
        what = "--onnx" if suffix == ".onnx" else "--onnx --trt"
        raise UsageError(
            f"no {suffix} export of {str(model_dir)!r} ({sha[:12]}) in {str(export)!r}; run `fastddpm export {what}`"
        )
    return found[0]


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


def random_inputs(io: UNetIO, batch: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    x = torch.randn(io.shapes(batch)[io.x], generator=generator)
    t = torch.randint(0, 1000, (batch,), generator=generator)
    cond = (torch.rand(io.shapes(batch)[io.cond], generator=generator) < 0.1).float()
    cond[0] = 0  # include the null condition
    return {io.x: x, io.t: t, io.cond: cond}


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.double() - ref.double()).norm() / ref.double().norm().clamp_min(1e-12))


class _Float32IO(nn.Module):
    """The export contract: float32 in and out at every precision; the graph casts inside."""

    def __init__(self, model: EpsilonModel, dtype: torch.dtype) -> None:
        super().__init__()
        self.model, self.dtype = model, dtype

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.dtype), t, cond.to(self.dtype)).float()


@dataclasses.dataclass(frozen=True)
class ExportRecord:
    """The sidecar JSON of an export: what it was made from and how it checked out."""

    checkpoint: str
    checkpoint_sha256: str
    precision: str
    io: dict
    model: dict  # the model card (architecture, diffusion, training info)
    parity: list  # per batch: max_abs, relative error, provider
    tolerance: float  # relative error allowed for this precision
    sanity: dict | None  # low precision: NaN / blank / saturation check of sampled images
    seconds: float
    torch: str = torch.__version__
    fastddpm: str = __version__


def _parity(path: Path, reference: nn.Module, io: UNetIO, tolerance: float, precision: str) -> list[dict]:
    from fastddpm.backends.onnxruntime_backend import OrtBackend

    backend = OrtBackend(path, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    generator = torch.Generator().manual_seed(0)
    rows = []
    for batch in PARITY_BATCHES:
        inputs = random_inputs(io, min(max(batch, io.batch_min), io.batch_max), generator)
        with torch.no_grad():
            ref = reference(*inputs.values())
        out = backend(*(v.to(backend.device) for v in inputs.values())).cpu()
        err = relative_error(out, ref)
        rows.append(
            {
                "batch": inputs[io.x].shape[0],
                "max_abs": float((out - ref).abs().max()),
                "relative": err,
                "provider": backend.provider,
            }
        )
        if not err <= tolerance:  # also catches NaN
            raise UsageError(
                f"ONNX parity failed for {precision} at batch {batch}: relative error {err:.2e} > {tolerance:.0e} "
                f"(the tolerance for {precision}); nothing was written"
            )
    return rows


def export_onnx(
    model_dir: str | Path, out_dir: str | Path, precision: str = "fp32", io: UNetIO | None = None
) -> tuple[Path, ExportRecord]:
    """Export, check and write export/unet-<sha12>-<precision>.onnx with its sidecar; returns both."""
    import copy

    import onnx

    if precision not in PRECISIONS:
        raise UsageError(f"--precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    io = io or UNetIO()
    start = time.perf_counter()
    net, card = load_model(model_dir)
    reference = EpsilonModel(net, card.diffusion).eval()
    exported = _Float32IO(
        reduced_precision_copy(copy.deepcopy(reference), TORCH_DTYPE[precision]), TORCH_DTYPE[precision]
    ).eval()
    sha = checkpoint_sha256(model_dir)
    target = Path(out_dir) / f"{export_stem(sha, precision)}.onnx"
    example = random_inputs(io, io.batch_opt, torch.Generator().manual_seed(0))
    batch = torch.export.Dim("batch", min=io.batch_min, max=io.batch_max)
    with atomic.atomic_path(target) as tmp:
        torch.onnx.export(
            exported,
            tuple(example.values()),
            str(tmp),
            input_names=io.input_names,
            output_names=[io.eps],
            dynamic_shapes={"x": {0: batch}, "t": {0: batch}, "cond": {0: batch}},
            dynamo=True,
            external_data=False,
        )
        proto = onnx.load(str(tmp))
        onnx.checker.check_model(proto)
        meta = {
            "fastddpm": __version__,
            "checkpoint_sha256": sha,
            "precision": precision,
            "model_card": card.to_json(),
            "io": json.dumps(dataclasses.asdict(io)),
        }
        for key, value in meta.items():
            proto.metadata_props.add(key=key, value=value)
        onnx.save(proto, str(tmp))
        tolerance = PARITY_TOLERANCE[precision]
        parity = _parity(tmp, reference, io, tolerance, precision)
        sanity = None if precision == "fp32" else _sanity(tmp, card.diffusion)
        record = ExportRecord(
            str(model_dir),
            sha,
            precision,
            dataclasses.asdict(io),
            json.loads(card.to_json()),
            parity,
            tolerance,
            sanity,
            round(time.perf_counter() - start, 1),
        )
        atomic.write_json(target.with_suffix(".json"), dataclasses.asdict(record))
    return target, record


def _sanity(path: Path, diffusion) -> dict:
    """Sample a few images through the reduced-precision graph: no NaN, not blank, not saturated."""
    from fastddpm.backends.onnxruntime_backend import OrtBackend
    from fastddpm.conditions import multi_hot
    from fastddpm.generate import SampleSettings, generate, image_seeds
    from fastddpm.schedule import NoiseSchedule

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    backend = OrtBackend(path, device)
    labels = [
        ["red sphere"],
        ["cyan cube", "gray cylinder"],
        ["yellow sphere", "blue cube", "green cylinder"],
        ["purple cube"],
    ]
    images = generate(
        backend,
        NoiseSchedule.from_config(diffusion),
        multi_hot(labels),
        image_seeds(0, 4),
        SampleSettings("ddim", 10, batch_size=4),
        device,
    )
    result = {
        "finite": bool(torch.isfinite(images).all()),
        "std": float(images.std()),
        "saturated": float((images.abs() > 0.999).float().mean()),
    }
    if not result["finite"] or result["std"] < 0.05 or result["saturated"] > 0.5:
        raise UsageError(
            f"the {path.suffix} export produces broken images (NaN, blank or saturated): {result}"
        )
    return result
