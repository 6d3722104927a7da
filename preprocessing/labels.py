"""Label-image utilities both models and the tools share (pure numpy).

A label image is int [H, W]: 0 = background, one positive id per nucleus. Scores, where
given, are float [N] aligned with ids 1..N.
"""

from __future__ import annotations

import numpy as np


def compact(labels: np.ndarray, scores: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Renumber ids to 1..N in increasing order of old id; scores follow their nuclei.

    labels: int [H, W] with any ids >= 0 (gaps allowed); scores: float [max id] or None.
    Returns (labels int32 [H, W], scores float32 [N] or None).
    """
    labels = np.asarray(labels)
    high = int(labels.max()) if labels.size else 0
    present = np.flatnonzero(np.bincount(labels.ravel(), minlength=high + 1)[1:]) + 1
    lookup = np.zeros(high + 1, np.int32)
    lookup[present] = np.arange(1, present.size + 1, dtype=np.int32)
    new_scores = None if scores is None else np.asarray(scores, np.float32)[present - 1]
    return lookup[labels], new_scores


def relabel_consecutive(labels: np.ndarray) -> np.ndarray:
    """``compact`` without scores: int [H, W] -> int32 [H, W] with ids 1..N."""
    return compact(labels)[0]


def remove_small(labels: np.ndarray, min_size: int,
                 scores: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Drop nuclei with fewer than ``min_size`` pixels; renumber 1..N' (scores follow)."""
    labels = np.asarray(labels)
    if min_size > 1 and labels.max() > 0:
        sizes = np.bincount(labels.ravel())
        small = sizes < min_size
        small[0] = False
        labels = np.where(small[labels], 0, labels)
    return compact(labels, scores)


def mean_over_labels(labels: np.ndarray, values: np.ndarray) -> np.ndarray:
    """float32 [N]: mean of ``values`` [H, W] over each id 1..N of ``labels`` int [H, W]."""
    n = int(labels.max()) if labels.size else 0
    if n == 0:
        return np.zeros(0, np.float32)
    sums = np.bincount(labels.ravel(), weights=values.ravel(), minlength=n + 1)
    counts = np.bincount(labels.ravel(), minlength=n + 1)
    return (sums[1:] / np.maximum(counts[1:], 1)).astype(np.float32)
