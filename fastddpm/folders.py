"""Folders a run owns: names read from files kept inside their folder, a lock while a run owns a folder, a run
written into a temporary folder beside its target and swapped in, output places probed by writing, and disk
errors turned into one line naming the path."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from fastddpm.errors import UsageError

QUOTE_LIMIT = 80
PARTIAL_TAG = ".partial-"
UMASK = os.umask(0)  # read once: os.umask can only be read by setting it
os.umask(UMASK)
_DISK_ERRORS = {
    errno.ENOSPC: "the disk is full",
    errno.EROFS: "read-only file system",
    errno.EACCES: "no permission",
}


def quote(text: object, limit: int = QUOTE_LIMIT) -> str:
    """repr of user text for an error message, cut to `limit` characters with an ellipsis."""
    shown = repr(str(text))
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def inside(folder: Path, name: object, source: Path) -> Path:
    """`folder / name` for a name read from `source`; refused unless it is a relative name that stays in `folder`."""
    folder = Path(folder)
    if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise UsageError(f"{source} names {quote(name)}, which is not a file inside {str(folder)!r}")
    path = folder / name
    if not path.resolve().is_relative_to(folder.resolve()):
        raise UsageError(f"{source} names {quote(name)}, which resolves outside {str(folder)!r}")
    return path


def disk_error(err: OSError, path: Path) -> UsageError | None:
    """One line for a full disk, a read-only file system or a refused permission; None for other errors."""
    reason = _DISK_ERRORS.get(err.errno)
    return UsageError(f"cannot write {str(path)!r}: {reason}") if reason else None


@contextlib.contextmanager
def disk_errors(path: Path) -> Iterator[None]:
    """Turn a disk error raised inside the block into a one-line UsageError naming `path`."""
    try:
        yield
    except OSError as err:
        usage = disk_error(err, path)
        if usage is None:
            raise
        raise usage from None


def probe_writable(path: Path, option: str = "--out") -> None:
    """Write (and remove) a small file where `path` will be created, so that an unwritable place or a full disk
    is refused before any work rather than after it."""
    existing = Path(path)
    while not existing.exists():
        existing = existing.parent
    try:
        with tempfile.TemporaryFile(dir=existing) as probe:
            probe.write(b"\0" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as err:
        reason = _DISK_ERRORS.get(err.errno, err.strerror or type(err).__name__)
        raise UsageError(f"{option} {str(path)!r} cannot be written: {reason} at {str(existing)!r}") from None


@contextlib.contextmanager
def folder_lock(folder: Path, option: str = "--out") -> Iterator[None]:
    """Hold an exclusive lock on `folder` (a lock file beside it, so it survives the folder being swapped);
    a second run on the same folder is refused with one line."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock_path = folder.parent / f".{folder.name}.lock"
    with disk_errors(lock_path), open(lock_path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(
                f"{option} {str(folder)!r} is in use by another running fastddpm command"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def remove_leftovers(folder: Path) -> None:
    """Remove the temporary folders an interrupted run on `folder` left beside it (call with the lock held)."""
    for stale in Path(folder).parent.glob(f".{Path(folder).name}{PARTIAL_TAG}*"):
        shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def staged_folder(folder: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside `folder`; if the block succeeds, it replaces `folder` (the old
    contents are removed only after the new ones are in place); if not, it is removed. Hold folder_lock."""
    folder = Path(folder)
    remove_leftovers(folder)
    with disk_errors(folder):
        stage = Path(tempfile.mkdtemp(prefix=f".{folder.name}{PARTIAL_TAG}", dir=folder.parent))
    try:
        with disk_errors(folder):
            yield stage
            os.chmod(stage, 0o777 & ~UMASK)
            old = None
            if folder.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{folder.name}{PARTIAL_TAG}old-", dir=folder.parent))
                os.replace(folder, old / folder.name)
            os.replace(stage, folder)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
