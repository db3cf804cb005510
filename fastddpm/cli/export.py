"""`fastddpm export`: options -> fastddpm.export (ONNX with parity, optionally a TensorRT engine)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fastddpm.cli import options
from fastddpm.cli.common import clean_errors, say
from fastddpm.cli.options import DeviceOption, ModelDir
from fastddpm.atomic import check_output_folder
from fastddpm.choices import Device, Precision
from fastddpm.errors import UsageError

Out = options.out(None, "Folder for the .onnx / .plan files and their JSON sidecars.")


@clean_errors
def export(
    onnx: Annotated[bool, typer.Option("--onnx/--no-onnx", help="Export ONNX (needed for --trt).")] = True,
    trt: Annotated[
        bool,
        typer.Option(
            "--trt",
            help="Also build a TensorRT engine (needs pip install 'fastddpm[trt]' and an NVIDIA GPU).",
        ),
    ] = False,
    model: ModelDir = None,
    precision: Annotated[
        Precision,
        typer.Option(help="Precision inside the graph (I/O stays float32; norms and softmax stay fp32)."),
    ] = Precision.fp32,
    batch_profile: Annotated[
        str,
        typer.Option(
            "--batch-profile",
            "--batch",
            help="Network rows MIN:OPT:MAX the export accepts (guidance doubles the images).",
        ),
    ] = "1:64:128",
    out: Out = Path("export"),
    device: DeviceOption = Device.auto,
    workspace_gib: Annotated[
        float, typer.Option(min=0.0, help="TensorRT builder workspace limit, GiB.")
    ] = 4.0,
) -> None:
    """Export the UNet (EMA weights) to ONNX with a parity check against torch fp32, and optionally to a
    TensorRT engine. Files are named by the weights' hash and precision; an earlier export of the same weights
    and precision is replaced."""
    from fastddpm.backends.contract import parse_batch_profile
    from fastddpm.paths import default_model_dir

    if not onnx and not trt:
        raise UsageError("nothing to do: pass --onnx and/or --trt")
    check_output_folder(out)
    batch = parse_batch_profile(batch_profile)
    if trt:
        from fastddpm.backends.tensorrt_backend import import_tensorrt

        import_tensorrt()  # fail before the ONNX work when TensorRT is missing
    from fastddpm.export.onnx_export import export_onnx

    path, record = export_onnx(model or default_model_dir(), out, precision.value, batch, device.value)
    worst = max(row["relative"] for row in record.parity)
    say(
        f"{path} ({record.seconds} s); parity vs torch fp32: max relative error {worst:.2e} "
        f"(tolerance {record.tolerance:.0e} for {precision.value}) at batches {[r['batch'] for r in record.parity]}"
    )
    if trt:
        from fastddpm.export.tensorrt_build import build_engine

        say(str(build_engine(path, workspace_gib)))
