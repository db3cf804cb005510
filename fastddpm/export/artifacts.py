"""Export artifacts on disk: the hash that ties an export to its weights, file names, JSON sidecars, and finding
the export of a model in a folder; `open_backend` builds a backend from that export.

    export/unet-<sha12>-<precision>.onnx  (+ .onnx.json)   one per checkpoint and precision
    export/unet-<sha12>-<precision>.plan  (+ .plan.json)   TensorRT engine built from that ONNX

An export is chosen by what its sidecar records (the checkpoint's sha256 and the artifact's own sha256), never by
its file name alone: a file from other weights, renamed, is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from fastddpm.atomic import file_sha256
from fastddpm.backends import EXPORT_SUFFIX, Backend, check_backend, make_backend
from fastddpm.backends.contract import UNetIO
from fastddpm.errors import UsageError
from fastddpm.model import checkpoint_sha256

SUFFIX_COMMAND = {".onnx": "fastddpm export --onnx", ".plan": "fastddpm export --onnx --trt"}


def export_stem(sha: str, precision: str) -> str:
    return f"unet-{sha[:12]}-{precision}"


def sidecar_path(artifact: Path) -> Path:
    """<artifact>.json: the .onnx and the .plan of one stem each keep their own."""
    return artifact.with_name(artifact.name + ".json")


def read_sidecar(artifact: Path) -> dict:
    """The JSON written beside an artifact, or a UsageError saying why it cannot be trusted."""
    path = sidecar_path(artifact)
    if not path.is_file():
        raise UsageError(
            f"{str(artifact)!r} has no sidecar {path.name} recording which weights it was made from"
        )
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise UsageError(f"{str(path)!r} is not a fastddpm export sidecar ({type(err).__name__})") from None
    if not isinstance(record, dict) or "checkpoint_sha256" not in record:
        raise UsageError(f"{str(path)!r} is not a fastddpm export sidecar (no checkpoint_sha256)")
    return record


def check_artifact(artifact: Path, sha: str, model_dir: str | Path) -> dict:
    """The artifact's sidecar, after checking that it records `sha` and that the file is the one it describes."""
    record = read_sidecar(artifact)
    if record["checkpoint_sha256"] != sha:
        raise UsageError(
            f"{str(artifact)!r} was exported from checkpoint {str(record['checkpoint_sha256'])[:12]}, not from "
            f"{str(model_dir)!r} ({sha[:12]}); re-run `{SUFFIX_COMMAND.get(artifact.suffix, 'fastddpm export')} "
            f"--model {model_dir}`"
        )
    if record.get("file_sha256") and record["file_sha256"] != file_sha256(artifact):
        raise UsageError(
            f"{str(artifact)!r} is not the file its sidecar describes (its contents changed or another file was "
            "renamed onto it); export again"
        )
    return record


def find_export(export: str | Path, model_dir: str | Path, suffix: str) -> Path:
    """The `suffix` export of `model_dir`'s weights: `export` is the file itself or a folder holding exports.
    In a folder, several matching exports (e.g. fp32 and fp16) are listed, not picked silently."""
    sha = checkpoint_sha256(model_dir)
    export = Path(export)
    if export.is_file():
        if export.suffix != suffix:
            raise UsageError(f"{str(export)!r} is not a {suffix} file")
        check_artifact(export, sha, model_dir)
        return export
    matches = []
    for candidate in sorted(export.glob(f"*{suffix}")) if export.is_dir() else []:
        try:
            matches.append((candidate, check_artifact(candidate, sha, model_dir)))
        except UsageError:
            continue  # another model's export, or one that cannot be trusted
    if not matches:
        raise UsageError(
            f"no {suffix} export of {str(model_dir)!r} ({sha[:12]}) in {str(export)!r}; "
            f"run `{SUFFIX_COMMAND[suffix]} --model {model_dir} --out {export}`"
        )
    if len(matches) > 1:
        listed = ", ".join(f"{path.name} ({record.get('precision', '?')})" for path, record in matches)
        raise UsageError(
            f"{str(export)!r} holds {len(matches)} {suffix} exports of this model: {listed}; "
            "name one with --export-dir FILE"
        )
    return matches[0][0]


def open_backend(
    name: str,
    model_dir: str | Path,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    export_dir: str | Path = "export",
) -> Backend:
    """The backend `name` for `model_dir`: torch / compile from the checkpoint, the others from its export
    found in `export_dir` (a folder or the file itself)."""
    check_backend(name)
    if name not in EXPORT_SUFFIX:
        return make_backend(name, model_dir, device, dtype)
    path = find_export(export_dir, model_dir, EXPORT_SUFFIX[name])
    io = UNetIO(**read_sidecar(path)["io"]) if name == "trt" else None
    return make_backend(name, model_dir, device, dtype, path, io)
