"""Atomic file writes: a crash, Ctrl-C or kill -9 never leaves a half-written output.

Every writer goes through a temporary sibling (same folder, so ``os.replace`` is atomic)
and removes it again when writing fails. A writer killed outright (kill -9, power loss)
cannot remove it: temporaries are named ``.<name>.partial.<random><suffix>`` so that
:func:`remove_stale_temporaries` can find them later (training does so on every start).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from preprocessing.errors import NucleiError


@contextlib.contextmanager
def atomic_target(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on failure it is removed.

    ``suffix`` ends the temporary name (Keras wants ``.weights.h5``, NumPy ``.npz``).
    """
    path = Path(path)
    if path.is_dir():
        raise NucleiError("is a folder, expected a file name", path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise NucleiError(f"cannot create the folder: {error.strerror or error}", path.parent) from None
    handle, temp_name = _mkstemp(path, suffix)
    os.close(handle)
    temp = Path(temp_name)
    try:
        yield temp
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


# Marks a temporary file of atomic_target in its name.
PARTIAL_MARK = ".partial."


def _mkstemp(path: Path, suffix: str) -> tuple[int, str]:
    try:
        return tempfile.mkstemp(prefix=f".{path.name}{PARTIAL_MARK}", suffix=suffix, dir=path.parent)
    except OSError as error:
        raise NucleiError(f"cannot write here: {error.strerror or error}", path.parent) from None


def write_text_atomically(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically."""
    with atomic_target(path) as temp:
        with open(temp, "w", encoding="utf-8", newline="") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())


def save_json_atomic(path: str | Path, obj: Any) -> None:
    """``json.dump`` to ``path`` atomically (NumPy values and paths become plain JSON)."""
    write_text_atomically(path, json.dumps(obj, indent=2, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (tuple, set)):
        return list(value)
    if hasattr(value, "to_dict"):  # settings objects
        return value.to_dict()
    raise TypeError(f"not JSON serialisable: {type(value)}")


def save_weights_atomic(model: Any, path: str | Path) -> None:
    """``model.save_weights`` to a temporary file, then rename it over ``path``."""
    with atomic_target(path, suffix=".weights.h5") as temp:  # Keras demands the suffix
        temp.unlink()  # h5py wants to create it
        model.save_weights(temp)


def is_temporary(name: str) -> bool:
    """True for the name of a temporary file an atomic writer of this project leaves when killed.

    ``.<name>.partial.<random><suffix>`` (atomic_target), and the older forms
    ``.<name>.<random>.tmp``, ``.<name>.tmp`` and ``.<name>.<random>.weights.h5``.
    """
    if not name.startswith(".") or name in (".", ".."):
        return False
    if PARTIAL_MARK in name:
        return True
    return ".tmp" in name[1:] or (name.endswith(".weights.h5") and name.count(".") >= 4)


def remove_stale_temporaries(folder: str | Path) -> int:
    """Delete temporary files left in ``folder`` (not its sub-folders) by writers killed
    mid-write (see :func:`is_temporary`); returns how many. Call it only while no writer is at work there."""
    folder = Path(folder)
    removed = 0
    if folder.is_dir():
        for temp in folder.iterdir():
            if is_temporary(temp.name) and temp.is_file() and not temp.is_symlink():
                temp.unlink(missing_ok=True)
                removed += 1
    return removed
