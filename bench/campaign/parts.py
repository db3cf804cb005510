"""The trained model's way back from the GPU machine: model.tar cut into parts small enough to come back
(pack_model, on the GPU machine) and put together again with every sha256 checked (unpack_model, on collect)."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

from fastddpm.atomic import file_sha256

PART_BYTES = 15 * 2**20  # under the 16 MiB a device run brings back per file


class PartsMismatch(Exception):
    """The parts that came back do not reassemble into the model.tar that was cut."""


def pack_model(model: Path, out: Path) -> dict:
    """The model folder as model.tar cut into model.tar.partNN files of at most 15 MiB, with sha256s."""
    whole = model.parent / "model.tar"
    with tarfile.open(whole, "w") as tar:
        tar.add(model, arcname="model")
    data, parts = whole.read_bytes(), []
    for i in range(0, len(data), PART_BYTES):
        part = out / f"model.tar.part{i // PART_BYTES:02d}"
        part.write_bytes(data[i : i + PART_BYTES])
        parts.append({"name": part.name, "bytes": part.stat().st_size, "sha256": file_sha256(part)})
    return {"tar_sha256": file_sha256(whole), "tar_bytes": len(data), "files": parts}


def unpack_model(folder: Path, parts: dict, staging: Path, candidate: Path) -> None:
    """The parts in `folder` (as pack_model's record lists them) -> the model folder at `candidate`."""
    whole = staging / "model.tar"
    with whole.open("wb") as sink:
        for part in parts["files"]:
            sink.write((folder / part["name"]).read_bytes())
    if file_sha256(whole) != parts["tar_sha256"]:
        raise PartsMismatch("the model parts do not reassemble into the model.tar the GPU machine wrote")
    with tarfile.open(whole) as tar:
        tar.extractall(staging, filter="data")
    candidate.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(staging / "model", candidate)
