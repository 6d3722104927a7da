"""One style for every config: a dataclass with commented fields, validated when built.

Each config of the project (the two model configs, post-processing, ensemble, TTA merge, the
inference parameters) subclasses :class:`Settings`. A subclass is made a dataclass
automatically, so fields are declared the dataclass way::

    class PostprocessConfig(Settings):
        kind = "postprocess"
        dilate: int = 0  # grow every nucleus by this many pixels

and Matterport's habit of overriding defaults in a subclass works too (no annotations
needed for fields the parent already declares)::

    class MyConfig(mrcnn.config.Config):
        NAME = "mine"
        IMAGES_PER_GPU = 4

On disk a config is one JSON format, ``{"kind": KIND, "config": {field: value}}``, read by
:meth:`Settings.load`, which names the file and the field on every problem.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any, TypeVar

from preprocessing.errors import NucleiError
from preprocessing.files import save_json_atomic

S = TypeVar("S", bound="Settings")


class Settings:
    """Base of every config: dataclass fields, ``validate()``, JSON round trip."""

    kind = "settings"  # the "kind" written to and checked in JSON files

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        annotations = dict(cls.__dict__.get("__annotations__", {}))
        inherited = {f.name: f for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else {}
        for name, value in list(cls.__dict__.items()):
            # a Matterport-style override of an inherited field: keep the parent's type
            if name in inherited and name not in annotations:
                annotations[name] = inherited[name].type
            if name in annotations and isinstance(value, (dict, list, set)):
                setattr(cls, name, dataclasses.field(default_factory=lambda v=value: copy.deepcopy(v)))
        cls.__annotations__ = annotations
        dataclasses.dataclass(cls)
        generated_init, names = cls.__init__, set(cls.field_names())

        def __init__(self, *args: Any, **values: Any) -> None:
            unknown = set(values) - names
            if unknown:  # a NucleiError naming the field, not a TypeError
                raise NucleiError(f"unknown {type(self).kind} fields: {', '.join(sorted(unknown))}")
            generated_init(self, *args, **values)

        cls.__init__ = __init__

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, list) and isinstance(field.default, tuple):
                setattr(self, field.name, tuple(value))  # JSON has no tuples
        self.validate()

    def validate(self) -> None:
        """Raise NucleiError naming the field when a value is out of range (subclasses)."""

    # --- dict and JSON -------------------------------------------------------
    @classmethod
    def field_names(cls) -> list[str]:
        return [field.name for field in dataclasses.fields(cls)]

    def to_dict(self) -> dict[str, Any]:
        """Fields as JSON-able values (tuples become lists, nested settings dicts)."""
        out = {}
        for name in self.field_names():
            value = getattr(self, name)
            if isinstance(value, Settings):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            out[name] = value
        return out

    @classmethod
    def from_dict(cls: type[S], values: dict[str, Any], source: str | Path | None = None) -> S:
        """Build from a dict (e.g. read from JSON); unknown fields and bad values name ``source``."""
        if not isinstance(values, dict):
            raise NucleiError(f"{cls.kind} settings must be a JSON object, got {type(values).__name__}", source)
        unknown = set(values) - set(cls.field_names())
        if unknown:
            raise NucleiError(f"unknown {cls.kind} fields: {', '.join(sorted(unknown))}", source)
        for field in dataclasses.fields(cls):
            if field.name in values:
                problem = _type_problem(field.default, values[field.name])
                if problem:
                    raise NucleiError(f"{cls.kind} field {field.name} must be {problem}, got {values[field.name]!r}",
                                      source)
        try:
            return cls(**values)
        except NucleiError as error:
            if source is None or error.path is not None:
                raise
            raise NucleiError(str(error), source) from None
        except (TypeError, ValueError) as error:  # a value of the wrong type deep inside validate()
            raise NucleiError(f"bad {cls.kind} value: {error}", source) from None

    def replace(self: S, **changes: Any) -> S:
        """A copy with ``changes`` applied (validated again)."""
        return type(self).from_dict({**self.to_dict(), **changes})

    def save(self, path: str | Path) -> None:
        """Write ``{"kind": ..., "config": ...}`` atomically."""
        save_json_atomic(path, {"kind": self.kind, "config": self.to_dict()})

    @classmethod
    def load(cls: type[S], path: str | Path) -> S:
        """Read a file written by :meth:`save` (or an older layout :meth:`upgrade` knows)."""
        return cls.from_document(read_json(path), path)

    @classmethod
    def from_document(cls: type[S], document: Any, source: str | Path | None = None) -> S:
        """Settings from a parsed JSON document ``{"kind": ..., "config": {...}}``."""
        document = cls.upgrade(document)
        if not isinstance(document, dict) or "config" not in document:
            raise NucleiError(f"not a {cls.kind} file: expected {{\"kind\": \"{cls.kind}\", \"config\": {{...}}}}",
                              source)
        if document.get("kind") != cls.kind:
            raise NucleiError(f"not a {cls.kind} file (kind={document.get('kind')!r})", source)
        return cls.from_dict(document["config"], source)

    @classmethod
    def upgrade(cls, document: Any) -> Any:
        """Turn an older file layout into the current one (subclasses that had one)."""
        return document


def _type_problem(default: Any, value: Any) -> str | None:
    """What a JSON value for a field with this default should be, when it is not (else None).

    Only plain scalar defaults are checked (a None default or a container says nothing), so
    that a string where a number belongs names its field instead of failing deep in validate()."""
    if value is None:  # optional fields take null; validate() decides
        return None
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "true or false"
    if isinstance(default, int):
        return None if isinstance(value, int) and not isinstance(value, bool) else "a whole number"
    if isinstance(default, float):
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "a number"
    if isinstance(default, str):
        return None if isinstance(value, str) else "a string"
    return None


def read_json(path: str | Path) -> Any:
    """Parse a JSON file; a missing or malformed file raises NucleiError naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NucleiError("file not found", path) from None
    except IsADirectoryError:
        raise NucleiError("is a folder, expected a JSON file", path) from None
    except (OSError, UnicodeDecodeError) as error:
        raise NucleiError(f"cannot read: {error}", path) from None
    except json.JSONDecodeError as error:
        raise NucleiError(f"not valid JSON ({error})", path) from None


def config_path_for(weights_path: str | Path) -> Path:
    """The config JSON that belongs to a weights file: ``X.weights.h5`` -> ``X.json``.

    A run folder's ``best.weights.h5`` / ``last.weights.h5`` have no JSON of their own and
    fall back to the run's ``config.json``.
    """
    weights_path = Path(weights_path)
    name = weights_path.name
    stem = name[: -len(".weights.h5")] if name.endswith(".weights.h5") else weights_path.stem
    own = weights_path.with_name(stem + ".json")
    if own.is_file() or stem not in ("best", "last"):
        return own
    return weights_path.with_name("config.json")
