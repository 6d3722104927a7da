"""Deterministic train/validation split, stratified by image type, and the split.json beside a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from preprocessing.errors import NucleiError


def stratified_split(image_ids, image_types, val_fraction=0.2, seed=0):
    """Split ids so each image type is represented in validation in proportion.

    Args:
        image_ids: sequence of str.
        image_types: sequence of str, same length.
        val_fraction: share of each type that goes to validation (0 <= f < 1);
            every type with at least 2 images gets at least one validation image.
        seed: the split depends only on the seed and the sorted ids.

    Returns:
        (train_ids, val_ids): sorted lists of str.
    """
    if not 0 <= val_fraction < 1:
        raise NucleiError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if len(image_ids) != len(image_types):
        raise NucleiError("image_ids and image_types differ in length")
    rng = np.random.default_rng(seed)
    pairs = sorted(zip(image_ids, image_types))
    train, val = [], []
    for image_type in sorted(set(image_types)):
        ids = [i for i, t in pairs if t == image_type]
        order = rng.permutation(len(ids))
        n_val = int(round(len(ids) * val_fraction))
        if val_fraction > 0 and len(ids) >= 2:
            n_val = max(1, n_val)
        n_val = min(n_val, len(ids) - 1) if len(ids) > 1 else 0
        val += [ids[k] for k in order[:n_val]]
        train += [ids[k] for k in order[n_val:]]
    return sorted(train), sorted(val)


def save_split(path: str | Path, train_ids: list[str], val_ids: list[str], about: dict[str, Any] | None = None) -> None:
    """Write ``{"train": [...], "val": [...], ...about}`` atomically (training writes it into its run folder)."""
    from preprocessing.files import save_json_atomic

    save_json_atomic(path, {"train": list(train_ids), "val": list(val_ids), **(about or {})})


def read_split(path: str | Path) -> tuple[list[str], list[str]] | None:
    """(train ids, val ids) of a split.json, or None when the file does not exist."""
    from preprocessing.settings import read_json

    path = Path(path)
    if not path.is_file():
        return None
    split = read_json(path)
    if not isinstance(split, dict) or not isinstance(split.get("train"), list) or not isinstance(
            split.get("val"), list):
        raise NucleiError('split.json must hold {"train": [ids], "val": [ids]}', path)
    return split["train"], split["val"]
