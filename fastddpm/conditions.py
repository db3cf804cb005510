"""The 24-class i-CLEVR vocabulary and every form a condition takes.

A condition is a list of object names such as ["red sphere", "cyan cube"]. The models see it as a multi-hot vector
(24,) in the course's class order (shape-major: cube 0-7, sphere 8-15, cylinder 16-23); a token-conditioned model
turns it into one token per object itself (model.ObjectTokens), so every model has the same inputs.
The all-zero multi-hot vector is the null condition used by classifier-free guidance.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from fastddpm.errors import UsageError
from fastddpm.folders import QUOTE_LIMIT, quote

COLORS = ("gray", "red", "blue", "green", "brown", "purple", "cyan", "yellow")
SHAPES = ("cube", "sphere", "cylinder")
CLASSES = tuple(f"{color} {shape}" for shape in SHAPES for color in COLORS)
NUM_CLASSES = len(CLASSES)  # 24
CLASS_INDEX = {name: i for i, name in enumerate(CLASSES)}

# RGB 0-255 base colors of the i-CLEVR renders, by color id.
COLOR_RGB = {
    "gray": (87, 87, 87),
    "red": (173, 35, 35),
    "blue": (42, 75, 215),
    "green": (29, 105, 20),
    "brown": (129, 74, 25),
    "purple": (129, 38, 192),
    "cyan": (41, 208, 208),
    "yellow": (255, 238, 51),
}

LabelList = list[str]


class ConditionError(UsageError):
    """A label list or label file that does not follow the i-CLEVR vocabulary or layout."""


def split_class(index: int) -> tuple[int, int]:
    """Class index -> (shape id, color id)."""
    return divmod(index, len(COLORS))


def shown(value: Any) -> str:
    """A value read from a label file, for a message: a list or dict by its size (it may be nested too deeply
    to print), anything else quoted and capped."""
    if isinstance(value, list | tuple | dict):
        return f"a {type(value).__name__} of {len(value)} items"
    return quote(value)


def class_index(name: Any, where: str = "") -> int:
    """The class index of one object name, or a ConditionError naming it and the closest valid names."""
    at = f" in {where}" if where else ""
    if not isinstance(name, str):
        raise ConditionError(f"object names must be strings like 'red sphere'; got {shown(name)}{at}")
    key = " ".join(name.strip().lower().split())
    if key in CLASS_INDEX:
        return CLASS_INDEX[key]
    close = difflib.get_close_matches(key, CLASSES, n=3, cutoff=0.5) if len(key) < QUOTE_LIMIT else []
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ConditionError(
        f"unknown object {quote(name)}{at}.{hint} Valid names are '<color> <shape>' with color one of "
        f"{', '.join(COLORS)} and shape one of {', '.join(SHAPES)}."
    )


def validate_labels(labels: Any, where: str = "", max_objects: int | None = None) -> list[int]:
    """Check one label list and return its class indices in order."""
    at = f" in {where}" if where else ""
    if not isinstance(labels, list | tuple):
        raise ConditionError(f"a condition must be a list of object names; got {shown(labels)}{at}")
    if not labels:
        raise ConditionError(f"empty label list{at}: a condition names 1 or more objects")
    if max_objects is not None and len(labels) > max_objects:
        raise ConditionError(f"{len(labels)} objects{at}; at most {max_objects} are supported")
    indices = [class_index(name, where) for name in labels]
    repeated = sorted({CLASSES[i] for i in indices if indices.count(i) > 1})
    if repeated:
        raise ConditionError(
            f"repeated object {', '.join(repr(r) for r in repeated)}{at}: a class appears at most once per image"
        )
    return indices


def parse_label_string(text: str) -> LabelList:
    """'red sphere, cyan cube' -> ['red sphere', 'cyan cube'] (validated)."""
    labels = [part.strip() for part in text.split(",") if part.strip()]
    validate_labels(labels, where="--labels")  # the message quotes the bad object itself
    return [CLASSES[class_index(name)] for name in labels]


def multi_hot(label_lists: Sequence[Sequence[str]]) -> torch.Tensor:
    """Label lists -> (B, 24) float multi-hot."""
    out = torch.zeros(len(label_lists), NUM_CLASSES)
    for row, labels in enumerate(label_lists):
        out[row, validate_labels(list(labels))] = 1.0
    return out


def _load_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ConditionError(f"label file {str(path)!r} does not exist")
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:  # ValueError: also an integer of over 4300 digits
        raise ConditionError(f"{str(path)!r} is not valid JSON: {str(err)[:200]}") from None
    except RecursionError:
        raise ConditionError(f"{str(path)!r} is nested too deeply to be a label file") from None


def read_test_labels(path: str | Path) -> list[LabelList]:
    """A test.json / new_test.json: a JSON list of label lists."""
    data = _load_json(path)
    if not isinstance(data, list):
        kind = "a dict (like train.json)" if isinstance(data, dict) else type(data).__name__
        raise ConditionError(f"{str(path)!r} must be a list of label lists like test.json; it is {kind}")
    if not data:
        raise ConditionError(f'{str(path)!r} holds no label lists: give at least one, like [["red sphere"]]')
    for i, labels in enumerate(data):
        validate_labels(labels, where=f"{path} entry {i}")
    return [[CLASSES[class_index(n)] for n in labels] for labels in data]


def read_train_labels(path: str | Path) -> dict[str, LabelList]:
    """A train.json: a JSON dict from image file name to label list."""
    data = _load_json(path)
    if not isinstance(data, dict):
        kind = "a list (like test.json)" if isinstance(data, list) else type(data).__name__
        raise ConditionError(
            f"{str(path)!r} must be a dict from image name to labels like train.json; it is {kind}"
        )
    for name, labels in data.items():
        validate_labels(labels, where=f"{path} entry {quote(name)}")
    return {name: [CLASSES[class_index(n)] for n in labels] for name, labels in data.items()}


def check_objects_file(path: str | Path) -> None:
    """objects.json must map the 24 names to the course's indices; any other vocabulary is refused."""
    data = _load_json(path)
    if data != CLASS_INDEX:
        raise ConditionError(
            f"{str(path)!r} does not hold the i-CLEVR vocabulary (24 names, cube 0-7, sphere 8-15, cylinder 16-23 "
            "in color order gray, red, blue, green, brown, purple, cyan, yellow)"
        )
