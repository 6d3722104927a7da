"""Atomic file writes: a crash or Ctrl-C never leaves a half-written output."""

import json
import os
from pathlib import Path


def atomic_path(path):
    """Temporary sibling of ``path`` (same folder, so os.replace is atomic)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def save_json_atomic(path, obj):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic_path(path)
    with open(tmp, "w", encoding="utf-8") as file:
        json.dump(obj, file, indent=2, sort_keys=False, default=_jsonable)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)


def _jsonable(value):
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")


def save_weights_atomic(model, path):
    """model.save_weights to a temp file, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{os.getpid()}.tmp.{path.name}")  # keeps the .weights.h5 suffix Keras demands
    model.save_weights(tmp)
    os.replace(tmp, path)
