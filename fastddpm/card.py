"""The typed parts of a model's config.json (its card, model.ModelCard): ModelInfo says how the weights were made,
with the data set's RenderInfo and, for a distilled student, its StudentInfo. read_section builds any of the card's
dataclasses from parsed JSON and checks every field against its type on the way, so that a bad card is refused at
load with one line naming the field rather than failing later where a value is used.

Keys this version does not know are kept, as they were, in the info sections (`extra`, written back: a newer
fastddpm's facts survive a rewrite by this one) and refused in the others (model, diffusion, sampling: they say
what the weights mean, so a key not understood is a key that could be misread)."""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastddpm.choices import SamplerName
from fastddpm.errors import UsageError
from fastddpm.folders import QUOTE_LIMIT, quote

EXTRA = "extra"  # the field of an info section that holds the keys this version does not know
# Field metadata: the field may be absent from the file (it then takes its default). Every field of an info section
# may; elsewhere a key left out would silently become today's default, so only the fields marked so may.
OPTIONAL = {"optional": True}


def _as_dict(section: Any, keep_none: bool) -> dict:
    """A section as JSON: its known fields (those that are None only if keep_none), then its extra keys."""
    out = {}
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if f.name == EXTRA or (value is None and not keep_none):
            continue
        out[f.name] = value.to_dict() if dataclasses.is_dataclass(value) else value
    return {**out, **section.extra}


@dataclass(frozen=True)
class RenderInfo:
    """The render.json of the data set the model was trained on (data/writer.py's RenderConfig), as copied."""

    seed: int | None = None
    max_objects: int | None = None
    labels_sha256: str | None = None  # of the --labels file; None when the labels were drawn
    device: str | None = None
    renderer: int | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return _as_dict(self, keep_none=True)  # as render.json has them: every field, null included

    @staticmethod
    def read(path: Path) -> RenderInfo | None:
        """A data set's render.json, None when there is none (data not rendered by fastddpm)."""
        return read_file(RenderInfo, path, "fastddpm render manifest") if path.is_file() else None


@dataclass(frozen=True)
class StudentInfo:
    """What distillation made of a teacher (distill/run.py): the student samples `sampler` at `steps` steps
    with guidance 1, `guidance_folded` being already in its weights."""

    steps: int
    sampler: str
    guidance_folded: float
    teacher: str | None = None  # the teacher's folder, as given
    teacher_sha256: str | None = None
    stage: int | None = None
    weighting: str | None = None
    optimisation_steps: int | None = None
    stage_seconds: float | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise UsageError(f"steps {self.steps} is out of range: at least 1")
        SamplerName.check(self.sampler, "sampler")
        if not (math.isfinite(self.guidance_folded) and self.guidance_folded >= 0):
            raise UsageError(f"guidance_folded {self.guidance_folded} is out of range: a finite scale >= 0")

    def to_dict(self) -> dict:
        return _as_dict(self, keep_none=False)


@dataclass(frozen=True)
class ModelInfo:
    """How a model was made: written by training (every field but student) and distillation (the teacher's
    info, with student added); each field is None when the card does not say."""

    data: str | None = None  # the training data folder, as given
    steps: int | None = None  # optimisation steps
    images_seen: int | None = None
    train_seconds: float | None = None
    world_size: int | None = None  # training processes
    device: str | None = None
    render: RenderInfo | None = None
    parameters: int | None = None
    init: str | None = None  # the model folder a fine-tune started from, as given
    init_sha256: str | None = None  # of that folder's weights
    student: StudentInfo | None = None  # set on a distilled student only
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return _as_dict(self, keep_none=False)


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _shown(value: Any) -> str:
    """A JSON value for a message: strings quoted, anything else as JSON, capped."""
    if isinstance(value, str):
        return quote(value)
    text = json.dumps(value)
    return text if len(text) <= QUOTE_LIMIT else text[: QUOTE_LIMIT - 1] + "…"


_KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a JSON object"}


def _is(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, kind) and (kind is bool or not isinstance(value, bool))


def _field_value(value: Any, hint: Any, where: str) -> Any:
    """value checked against the type hint of its field: a plain type, X | None, tuple[int, ...] or a section."""
    nullable = False
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        (hint,) = [h for h in typing.get_args(hint) if h is not type(None)]  # the card's unions are X | None
        nullable = True
        if value is None:
            return None
    if dataclasses.is_dataclass(hint):
        return read_section(hint, value, where)
    if typing.get_origin(hint) is tuple:
        (item, _) = typing.get_args(hint)  # tuple[X, ...]
        if isinstance(value, list) and all(_is(v, item) for v in value):
            return tuple(value)
        expected = f"a list, each {_KINDS[item]}"
    elif _is(value, hint):
        return value
    else:
        expected = _KINDS[hint]
    raise UsageError(f"{where} is {_shown(value)}, not {expected}{' or null' if nullable else ''}")


def read_section(cls: type, data: Any, where: str) -> Any:
    """An instance of the dataclass `cls` from the parsed JSON object `data`, every field checked; `where` is
    the section's dotted name in the file ("" at the top), which each message starts with."""
    if not isinstance(data, dict):
        raise UsageError(f"{where or 'the file'} is {_shown(data)}, not a JSON object")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if f.name != EXTRA}
    unknown = {k: v for k, v in data.items() if k not in known}
    if unknown and EXTRA not in hints:
        name = next(iter(unknown))
        shown = name if name.isidentifier() and len(name) <= QUOTE_LIMIT else quote(name)
        raise UsageError(
            f"{_join(where, shown)} is not a field of {where or 'a card'} (known: {', '.join(known)})"
        )
    values = {
        name: _field_value(data[name], hints[name], _join(where, name)) for name in known if name in data
    }
    for name, f in known.items():
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        if name not in data and not (has_default and (EXTRA in hints or f.metadata.get("optional"))):
            raise UsageError(f"{_join(where, name)} is missing")
    try:
        return cls(**values, **({EXTRA: unknown} if EXTRA in hints else {}))
    except UsageError as err:  # the section's own range checks
        raise UsageError(f"{where}: {err}" if where else str(err)) from None


def section_dict(section: Any) -> dict:
    """A section as JSON: an optional field that is None is left out, so a card that does not use it reads the same
    to a fastddpm that predates the field."""
    values = dataclasses.asdict(section)
    for f in dataclasses.fields(section):
        if f.metadata == OPTIONAL and values[f.name] is None:
            del values[f.name]
    return values


def read_file(cls: type, path: Path, what: str) -> Any:
    """read_section of a whole JSON file; refused in one line naming the file (and the field)."""
    try:
        return read_section(cls, json.loads(path.read_text()), "")
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UsageError(f"{path} is not a {what}: not JSON ({err})") from None
    except RecursionError:
        raise UsageError(f"{path} is not a {what}: nested too deeply to read") from None
    except UsageError as err:
        raise UsageError(f"{path} is not a {what}: {err}") from None
