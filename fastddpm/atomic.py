"""Files written atomically: a temporary file beside the target, then a rename, so that a crash or Ctrl-C never
leaves a half-written artifact behind; and the folder a run owns (its lock held, the temporary files a killed
earlier run left in it removed)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastddpm.errors import UsageError
from fastddpm.folders import UMASK, disk_errors, folder_lock, probe_writable

TEMP_SUFFIX = ".tmp"
# atomic_path's temporary names: mkstemp(prefix=".<target>.", suffix=".tmp") adds 8 characters of [a-z0-9_]
TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}" + re.escape(TEMP_SUFFIX) + "$")


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_output_folder(path: str | Path, option: str = "--out") -> Path:
    """Before any work: `path` must be a folder or not exist yet, and be creatable and writable by us."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {str(path)!r} is a file; a folder is expected there")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{option} {str(path)!r} cannot be created: {str(existing)!r} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(
            f"{option} {str(path)!r} cannot be written: no write permission on {str(existing)!r}"
        )
    probe_writable(path, option)
    return path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    with disk_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        with disk_errors(path):
            yield Path(tmp)
            # mkstemp makes 0600 files, and some writers (safetensors) make their own: give the usual permissions
            os.chmod(tmp, 0o666 & ~UMASK)
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Remove the temporary files that atomic_path left in `folder` and its subfolders when its process was
    killed mid-write (SIGKILL, power loss); returns them. Only names of atomic_path's own pattern are touched,
    and hidden subfolders (another run's staged `.NAME.partial-*` folder, which that run cleans) are skipped.
    Call while owning the folder, before writing into it."""
    stale = []
    for root, subfolders, files in os.walk(folder):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        stale += [Path(root) / name for name in files if TEMP_NAME.match(name)]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


@contextlib.contextmanager
def owned_folder(folder: str | Path, option: str = "--out") -> Iterator[Path]:
    """Own `folder` for the block: hold its lock (a second run on it is refused in one line), then remove the
    temporary files of a killed earlier run in it. Check the folder (check_output_folder) first."""
    with folder_lock(Path(folder), option):
        remove_stale_temp_files(folder)
        yield Path(folder)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")


def save_png(path: str | Path, image: Any) -> None:
    """Save a PIL image (or HxWx3 uint8 array) as PNG, atomically."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        image = Image.fromarray(image)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def save_safetensors(path: str | Path, tensors: dict, metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
