"""The Data Science Bowl 2018 score, exactly as Kaggle defined it.

Per image, for each IoU threshold t in 0.50, 0.55, ..., 0.95, a true and a predicted
nucleus match where IoU > t (strictly greater); then

    precision(t) = TP(t) / (TP(t) + FP(t) + FN(t))

with TP the matched pairs, FP the unmatched predictions and FN the unmatched true
nuclei. The image score is the mean of precision(t) over the ten thresholds and the
dataset score is the mean of the image scores.

Conventions (Kaggle's, as in its "example metric implementation" kernel):

* Matching needs no assignment step: with IoU > 0.5 a true nucleus can match at most
  one prediction (two disjoint predictions cannot each cover more than half of the
  union with it), so TP is simply the count of pairs above the threshold.
* An image with no true and no predicted nuclei scores 1 (TP + FP + FN = 0: nothing
  to find and nothing wrongly found). With nuclei on one side only it scores 0.
* The comparison IoU > t is done in exact integer arithmetic
  (20 * intersection > 20t * union), so an IoU equal to a threshold (for example
  6 of 10 pixels at t = 0.6) never matches. This agrees with the kernel's floating
  point ``iou > np.arange(0.5, 1.0, 0.05)``, whose thresholds all round up, and
  cannot be tipped by rounding.

Everything is pure numpy: one contingency table per image from ``np.bincount`` over
combined label ids, no Python loop over nuclei or pairs.
"""

import numpy as np

from preprocessing.errors import NucleiError

# The thresholds t as exact twentieths: t = k / 20 for k = 10..19.
_THRESHOLD_TWENTIETHS = np.arange(10, 20, dtype=np.int64)
THRESHOLDS = _THRESHOLD_TWENTIETHS / 20.0  # float64 [10]: 0.50, 0.55, ..., 0.95

# Largest dense contingency table (cells) built with bincount; beyond it np.unique.
_MAX_DENSE_CELLS = 1 << 24


def _compact_ids(labels, name):
    """Renumber a label image's ids to 1..N (0 stays background).

    Args:
        labels: int [H, W], 0 = background, ids need not be consecutive.
        name: 'true' or 'predicted', for messages.

    Returns:
        (index, areas): integer [H*W] flat ids 0..N (the input's own dtype when its ids
        are already consecutive), and int64 [N] pixel counts.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise NucleiError(f"{name} labels must be 2-D [H, W], got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise NucleiError(f"{name} labels must be integers, got {labels.dtype}")
    flat = labels.ravel()
    if flat.size == 0:
        return flat.astype(np.int64), np.zeros(0, np.int64)
    low, high = int(flat.min()), int(flat.max())
    if low < 0:
        raise NucleiError(f"{name} labels hold negative id {low}; ids must be 0 (background) or positive")
    if high <= 2 * flat.size + 1024:  # the usual case: count by id directly
        counts = np.bincount(flat if flat.dtype.itemsize <= 4 else flat.astype(np.int64), minlength=high + 1)
        present = np.flatnonzero(counts[1:]) + 1
        if present.size == high:  # already 1..N: no renumbering needed
            return flat, counts[1:].astype(np.int64)
        lookup = np.zeros(high + 1, np.int64)
        lookup[present] = np.arange(1, present.size + 1)
        return lookup[flat], counts[present].astype(np.int64)
    ids, index, counts = np.unique(flat, return_inverse=True, return_counts=True)
    if ids[0] != 0:
        return index.ravel().astype(np.int64) + 1, counts
    return index.ravel().astype(np.int64), counts[1:]


def overlaps(true_labels, pred_labels):
    """Every (true, predicted) nucleus pair that shares pixels.

    Args:
        true_labels: int [H, W], 0 = background.
        pred_labels: int [H, W], same shape.

    Returns:
        dict with
            true_index, pred_index: int64 [P], 0-based nucleus numbers (in id order);
            intersection: int64 [P] shared pixels (all > 0);
            true_areas: int64 [n_true]; pred_areas: int64 [n_pred].
    """
    true_shape, pred_shape = np.shape(true_labels), np.shape(pred_labels)
    if true_shape != pred_shape:
        raise NucleiError(f"true labels are {true_shape} but predicted labels are {pred_shape}")
    true_index, true_areas = _compact_ids(true_labels, "true")
    pred_index, pred_areas = _compact_ids(pred_labels, "predicted")
    n_true, n_pred = true_areas.size, pred_areas.size
    both = (true_index > 0) & (pred_index > 0)
    # One combined id per (true, pred) pair; counting them is the contingency table.
    pair_ids = (true_index[both].astype(np.int64) - 1) * n_pred + (pred_index[both].astype(np.int64) - 1)
    if n_true * n_pred <= _MAX_DENSE_CELLS:
        table = np.bincount(pair_ids, minlength=n_true * n_pred)
        pair_ids = np.flatnonzero(table)
        intersection = table[pair_ids]
    else:  # very many nuclei: count only the pairs that occur
        pair_ids, intersection = np.unique(pair_ids, return_counts=True)
    return {
        "true_index": pair_ids // max(n_pred, 1),
        "pred_index": pair_ids % max(n_pred, 1),
        "intersection": intersection.astype(np.int64),
        "true_areas": true_areas.astype(np.int64),
        "pred_areas": pred_areas.astype(np.int64),
    }


def iou_matrix(true_labels, pred_labels):
    """IoU of every true nucleus with every predicted one.

    Args:
        true_labels: int [H, W], 0 = background.
        pred_labels: int [H, W], same shape.

    Returns:
        float64 [n_true, n_pred]; rows and columns follow increasing label id
        (ids absent from the image are skipped).
    """
    pairs = overlaps(true_labels, pred_labels)
    matrix = np.zeros((pairs["true_areas"].size, pairs["pred_areas"].size))
    union = _union(pairs)
    matrix[pairs["true_index"], pairs["pred_index"]] = pairs["intersection"] / union
    return matrix


def _union(pairs):
    """int64 [P]: pixels in either nucleus of each overlapping pair."""
    return (pairs["true_areas"][pairs["true_index"]] + pairs["pred_areas"][pairs["pred_index"]]
            - pairs["intersection"])


def image_score(true_labels, pred_labels):
    """Kaggle's DSB 2018 score of one image.

    Args:
        true_labels: int [H, W], 0 = background, one id per true nucleus.
        pred_labels: int [H, W], same shape, one id per predicted nucleus.

    Returns:
        dict with
            score: float, mean of per_threshold;
            per_threshold: float64 [10], TP / (TP + FP + FN) at each of THRESHOLDS;
            tp, fp, fn: int64 [10] counts at each threshold;
            n_true, n_pred: int nucleus counts.
    """
    pairs = overlaps(true_labels, pred_labels)
    n_true, n_pred = int(pairs["true_areas"].size), int(pairs["pred_areas"].size)
    union = _union(pairs)
    # matched[k, p]: pair p has IoU > THRESHOLDS[k], compared exactly as integers.
    matched = 20 * pairs["intersection"][None, :] > _THRESHOLD_TWENTIETHS[:, None] * union[None, :]
    tp = matched.sum(axis=1).astype(np.int64)
    fp = n_pred - tp
    fn = n_true - tp
    assert np.all(fp >= 0) and np.all(fn >= 0), "a nucleus matched twice above IoU 0.5"
    denominator = tp + fp + fn
    # No true and no predicted nuclei: a perfect answer, scored 1 (see module docstring).
    per_threshold = np.where(denominator > 0, tp / np.maximum(denominator, 1), 1.0)
    return {
        "score": float(per_threshold.mean()),
        "per_threshold": per_threshold,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "n_true": n_true,
        "n_pred": n_pred,
    }


def missing_image_score(true_labels):
    """Score of an image absent from a submission: 0 at every threshold (Kaggle's rule).

    true_labels: int [H, W]. Returns a dict shaped like :func:`image_score`'s.
    """
    n_true = int(_compact_ids(true_labels, "true")[1].size)
    zeros = np.zeros(len(THRESHOLDS), np.int64)
    return {
        "score": 0.0,
        "per_threshold": np.zeros(len(THRESHOLDS)),
        "tp": zeros,
        "fp": zeros.copy(),
        "fn": np.full(len(THRESHOLDS), n_true, np.int64),
        "n_true": n_true,
        "n_pred": 0,
    }


def dataset_score(pairs, image_types=None):
    """Kaggle's DSB 2018 score of a set of images: the mean of the image scores.

    Args:
        pairs: mapping image_id -> (true_labels, pred_labels), or an iterable of
            (image_id, true_labels, pred_labels); labels int [H, W]. A pred_labels
            of None means the image is missing from the submission: it scores 0.
        image_types: optional mapping image_id -> type name (e.g. 'fluorescence')
            for per-type means; ids it lacks count as 'unknown'.

    Returns:
        dict with
            score: float, mean over images;
            per_threshold: list[float] [10], mean precision over images per threshold;
            tp, fp, fn: list[int] [10], totals over images per threshold;
            per_image: list of dict(id, type, n_true, n_pred, score), input order;
            per_type: dict type -> mean score ({} without image_types);
            missing: list of ids scored 0 because pred_labels was None.
    """
    items = pairs.items() if hasattr(pairs, "items") else pairs
    per_image, precisions, missing = [], [], []
    totals = {name: np.zeros(len(THRESHOLDS), np.int64) for name in ("tp", "fp", "fn")}
    for item in items:
        if hasattr(pairs, "items"):
            image_id, (true_labels, pred_labels) = item
        else:
            image_id, true_labels, pred_labels = item
        if pred_labels is None:
            result = missing_image_score(true_labels)
            missing.append(image_id)
        else:
            try:
                result = image_score(true_labels, pred_labels)
            except NucleiError as error:
                raise NucleiError(f"image {image_id}: {error}") from None
        image_type = None if image_types is None else image_types.get(image_id, "unknown")
        per_image.append({"id": image_id, "type": image_type, "n_true": result["n_true"],
                          "n_pred": result["n_pred"], "score": result["score"]})
        precisions.append(result["per_threshold"])
        for name in totals:
            totals[name] += result[name]
    if not per_image:
        raise NucleiError("no images to score")
    per_type = {}
    if image_types is not None:
        for image_type in sorted({row["type"] for row in per_image}):
            scores = [row["score"] for row in per_image if row["type"] == image_type]
            per_type[image_type] = float(np.mean(scores))
    return {
        "score": float(np.mean([row["score"] for row in per_image])),
        "per_threshold": np.mean(precisions, axis=0).tolist(),
        "tp": totals["tp"].tolist(),
        "fp": totals["fp"].tolist(),
        "fn": totals["fn"].tolist(),
        "per_image": per_image,
        "per_type": per_type,
        "missing": missing,
    }
