"""Reader of the course's i-CLEVR layout, decoded once into a cache of 64x64 uint8 images + multi-hot labels.

ROOT/{objects,train,test,new_test}.json and ROOT/iclevr/*.png (320x240, RGB or RGBA). Images are squashed to
64x64 with PIL's antialiased bilinear resize (no crop), exactly what the course's transforms.Resize((64, 64)) does.
The cache (18,009 x 3 x 64 x 64 bytes = 221 MB) is keyed by a fingerprint of train.json and every image's size and
modification time, so editing or replacing anything in ROOT rebuilds it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fastddpm import atomic, folders
from fastddpm.conditions import LabelList, check_objects_file, multi_hot, read_test_labels, read_train_labels
from fastddpm.errors import UsageError
from fastddpm.folders import quote

IMAGE_SIZE = 64
CACHE_NAME = ".fastddpm_cache_64.safetensors"


@dataclass
class Dataset:
    """The decoded training set."""

    images: torch.Tensor  # (N, 3, 64, 64) uint8
    labels: torch.Tensor  # (N, 24) float multi-hot
    names: list[str]  # image file names, in train.json order


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1] (the course's Normalize(mean 0.5, std 0.5))."""
    return images.float() / 127.5 - 1.0


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255]."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def decode_image(path: Path) -> np.ndarray:
    """One PNG -> (3, 64, 64) uint8, alpha dropped, squashed without crop."""
    from PIL import Image

    with Image.open(path) as img:
        small = img.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR)
    return np.asarray(small).transpose(2, 0, 1).copy()


def check_root(root: Path) -> None:
    if not root.is_dir():
        raise UsageError(f"data folder {str(root)!r} does not exist")
    missing = [n for n in ("train.json", "iclevr") if not (root / n).exists()]
    if missing:
        raise UsageError(
            f"{str(root)!r} is not an i-CLEVR folder: it lacks {', '.join(missing)}. Expected ROOT/train.json, "
            "ROOT/iclevr/*.png (and objects.json, test.json, new_test.json); "
            "`fastddpm data render --out DIR` makes one."
        )
    if (root / "objects.json").exists():
        check_objects_file(root / "objects.json")


def split_labels(root: str | Path) -> dict[str, list[LabelList]]:
    """The test splits that live in ROOT: {"test": ..., "new_test": ...} for those present."""
    root = Path(root)
    return {
        name: read_test_labels(root / f"{name}.json")
        for name in ("test", "new_test")
        if (root / f"{name}.json").exists()
    }


def fingerprint(root: Path, names: list[str]) -> str:
    digest = hashlib.sha256((root / "train.json").read_bytes())
    for name in names:
        try:
            st = os.stat(root / "iclevr" / name)
            digest.update(f"{name}:{st.st_size}:{st.st_mtime_ns};".encode())
        except OSError:
            digest.update(f"{name}:missing;".encode())
    return digest.hexdigest()


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a name too long for the file system, say: not there either
        return False


def cache_path(root: Path) -> Path:
    """ROOT/.fastddpm_cache_64.safetensors, or a per-folder file under ~/.cache/fastddpm when ROOT is read-only."""
    if os.access(root, os.W_OK):
        return root / CACHE_NAME
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fastddpm"
    return base / f"{hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]}{CACHE_NAME}"


def load_dataset(
    root: str | Path,
    use_cache: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> Dataset:
    """Read ROOT's train split, from the cache when it is current, else decoding every PNG once."""
    from safetensors.torch import load_file, safe_open

    root = Path(root)
    check_root(root)
    train = read_train_labels(root / "train.json")
    names = list(train)
    if not names:
        raise UsageError(f"{root / 'train.json'} lists no images")
    labels = multi_hot([train[n] for n in names])
    key = fingerprint(root, names)
    path = cache_path(root)
    if use_cache and path.is_file():
        with safe_open(str(path), "pt") as f:
            current = (f.metadata() or {}).get("fingerprint") == key
        if current:
            return Dataset(load_file(str(path))["images"], labels, names)

    files = [folders.inside(root / "iclevr", n, root / "train.json") for n in names]
    bad = [quote(f.name) for f in files if not _is_file(f)]
    if bad:
        raise UsageError(
            f"{len(bad)} images listed in train.json are missing from {root / 'iclevr'}, e.g. {', '.join(bad[:5])}"
        )
    images = np.empty((len(files), 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    unreadable: list[str] = []

    def decode(i: int) -> None:
        try:
            images[i] = decode_image(files[i])
        except Exception as err:  # noqa: BLE001 - any decoder failure is reported with its file
            unreadable.append(f"{files[i].name} ({type(err).__name__})")

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for done, _ in enumerate(pool.map(decode, range(len(files))), 1):
            if progress and (done % 256 == 0 or done == len(files)):
                progress(done, len(files))
    if unreadable:
        raise UsageError(
            f"{len(unreadable)} images in {root / 'iclevr'} cannot be read, e.g. {sorted(unreadable)[:5]}"
        )
    tensor = torch.from_numpy(images)
    if use_cache:
        atomic.save_safetensors(
            path, {"images": tensor}, metadata={"fingerprint": key, "root": str(root.resolve())}
        )
    return Dataset(tensor, labels, names)
