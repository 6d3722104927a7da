"""Post-processing of instance label images, whatever model made them (pure numpy / SciPy).

Every step takes ``labels`` int [H, W] (0 = background, one id per nucleus) and
``scores`` float [N] aligned with ids 1..N (or None) and returns the same pair, ids
renumbered 1..N' with scores kept aligned. No step ever makes nuclei overlap (a label
image cannot) or moves a pixel from one nucleus to another: growth goes into
background only.

:class:`PostprocessConfig` switches each step; :func:`postprocess` runs them in the
order minimum score -> fill holes -> closing -> minimum size -> inverted nuclei -> maximum
count -> dilation. One step looks at the image as well (:func:`remove_inverted`): a nucleus
lighter than its surroundings in a stained image, or darker in a fluorescence one, is not one.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.segmentation import expand_labels

from preprocessing.errors import NucleiError
from preprocessing.labels import compact, remove_small
from preprocessing.settings import Settings


class PostprocessConfig(Settings):
    """Which post-processing steps run (all off by default) and their sizes."""

    kind = "postprocess"

    # Grow every nucleus by this many pixels into background (0 = off); contested
    # pixels go to the nearest nucleus, so nuclei never grow into each other.
    dilate: int = 0
    # Fill holes inside each nucleus (only background pixels are filled).
    fill_holes: bool = False
    # Morphological closing of each nucleus with a disk of this radius (0 = off).
    closing: int = 0
    # Drop nuclei smaller than this many pixels (0 = off).
    min_size: int = 0
    # Drop nuclei whose score is below this (0 = off; needs scores): a detector's
    # confidence cut, tuned after the fact instead of re-running the network.
    min_score: float = 0.0
    # Keep at most this many nuclei, the highest scores (or largest without scores); 0 = no limit.
    max_count: int = 0
    # Drop nuclei that stand out from the ring around them the wrong way for their kind of image
    # (lighter in a stained image: pale goblet cells and vacuoles in H&E outlined as nuclei;
    # darker in a fluorescence one, and darker than its background too); no threshold, the sign
    # decides (nucleus_contrast). Needs the image.
    drop_inverted: bool = False

    def validate(self) -> None:
        for name in ("dilate", "closing", "min_size", "max_count"):
            value = getattr(self, name)
            if int(value) != value or value < 0:
                raise NucleiError(f"post-processing {name} must be a whole number >= 0, got {value}")
            setattr(self, name, int(value))
        self.fill_holes = bool(self.fill_holes)
        self.drop_inverted = bool(self.drop_inverted)
        if not 0.0 <= float(self.min_score) < 1.0:
            raise NucleiError(f"post-processing min_score must be in [0, 1), got {self.min_score}")
        self.min_score = float(self.min_score)


def _scores_or_none(scores, count):
    if scores is None:
        return None
    scores = np.asarray(scores, np.float32)
    assert scores.shape == (count,), f"scores {scores.shape} do not match {count} nuclei"
    return scores


def _disk(radius):
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return yy ** 2 + xx ** 2 <= radius ** 2


def _per_nucleus_growth(labels, grow, margin):
    """Apply ``grow(mask bool [h, w]) -> bool [h, w]`` to each nucleus; new pixels only from background.

    A pixel wanted by two nuclei stays background. Returns int32 [H, W].
    """
    out = labels.astype(np.int32, copy=True)
    claimed = np.zeros(labels.shape, np.int32)  # first claimant id, -1 when contested
    height, width = labels.shape
    for index, window in enumerate(ndimage.find_objects(labels), start=1):
        if window is None:
            continue
        y0, y1 = max(window[0].start - margin, 0), min(window[0].stop + margin, height)
        x0, x1 = max(window[1].start - margin, 0), min(window[1].stop + margin, width)
        mask = labels[y0:y1, x0:x1] == index
        new = grow(mask) & ~mask & (labels[y0:y1, x0:x1] == 0)
        region = claimed[y0:y1, x0:x1]
        region[new & (region != 0)] = -1
        region[new & (region == 0)] = index
    gained = claimed > 0
    out[gained] = claimed[gained]
    return out


def fill_holes(labels, scores=None):
    """Fill the holes of each nucleus (background pixels it encloses). Same shapes in and out."""
    out = _per_nucleus_growth(np.asarray(labels), ndimage.binary_fill_holes, margin=0)
    return out, _scores_or_none(scores, int(out.max()) if out.size else 0)


def closing(labels, radius, scores=None):
    """Morphological closing of each nucleus with a disk of ``radius``; fills gaps and notches."""
    labels = np.asarray(labels)
    if radius <= 0:
        return labels.astype(np.int32), scores
    disk = _disk(radius)

    def close(mask):
        padded = np.pad(mask, radius)
        return ndimage.binary_closing(padded, structure=disk)[radius:-radius, radius:-radius]

    return _per_nucleus_growth(labels, close, margin=radius), scores


def dilate(labels, pixels, scores=None):
    """Grow each nucleus by ``pixels`` (Euclidean) into background, never into a neighbour.

    Background pixels within ``pixels`` of several nuclei go to the nearest one.
    labels int [H, W] -> (int32 [H, W], scores unchanged).
    """
    labels = np.asarray(labels)
    if pixels <= 0:
        return labels.astype(np.int32), scores
    return expand_labels(labels, distance=pixels).astype(np.int32), scores


def remove_unsure(labels, min_score, scores=None):
    """Drop nuclei whose score is below ``min_score`` (no-op without scores); renumber 1..N'."""
    labels = np.asarray(labels)
    if min_score <= 0 or scores is None or labels.max() == 0:
        return compact(labels, scores)
    keep = np.concatenate([[False], np.asarray(scores) >= min_score])
    return compact(np.where(keep[labels], labels, 0), scores)


def nucleus_contrast(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """How each nucleus stands out from the ring of free pixels around it.

    Args:
        image: uint8 [H, W, 3].
        labels: int [H, W], ids 1..N.

    Returns:
        float64 [N], > 0 when the nucleus stands out as a nucleus should: darker in a stained
        image (histology, brightfield: nuclei absorb light), brighter in a fluorescence one
        (nuclei emit it). The mean LAB lightness (0..1) of the nucleus against the ring of free
        pixels around it (the nucleus dilated by half its equivalent radius, at least 2 px, less
        every nucleus's pixels). In fluorescence the larger of that and the contrast against
        the median of the image's unlabelled pixels: there the background is the absence of
        signal, so a dim nucleus beside a bright structure, darker than its ring, still counts
        (in a stained image all tissue is darker than the bare glass: no evidence). 0 where
        nothing can be measured (no free pixel around it, none in the image).
    """
    import cv2

    from preprocessing.image_types import classify_image
    from preprocessing.normalize import lightness

    labels = np.asarray(labels)
    if labels.shape != image.shape[:2]:
        raise NucleiError(f"labels {list(labels.shape)} and image {list(image.shape)} differ in size")
    light = lightness(image).astype(np.float64)
    # by kind of image, not by mean lightness, which dense H&E tissue pulls below half
    sign = 1.0 if classify_image(image) == "fluorescence" else -1.0
    count = int(labels.max()) if labels.size else 0
    contrast = np.zeros(count)
    occupied = labels > 0
    if occupied.all():
        return contrast  # no background pixel anywhere: nothing to compare with
    background = float(np.median(light[~occupied])) if sign > 0 else None
    areas = np.bincount(labels.ravel(), minlength=count + 1)
    height, width = labels.shape
    for index, window in enumerate(ndimage.find_objects(labels), start=1):
        if window is None:
            continue
        radius = max(2, round(0.5 * np.sqrt(areas[index] / np.pi)))
        y0, y1 = max(window[0].start - radius, 0), min(window[0].stop + radius, height)
        x0, x1 = max(window[1].start - radius, 0), min(window[1].stop + radius, width)
        inside = labels[y0:y1, x0:x1] == index
        disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        ring = cv2.dilate(inside.astype(np.uint8), disk).astype(bool) & ~occupied[y0:y1, x0:x1]
        patch = light[y0:y1, x0:x1]
        inner = patch[inside].mean()
        measured = [sign * (inner - patch[ring].mean())] if ring.any() else []
        if background is not None:
            measured.append(inner - background)
        contrast[index - 1] = max(measured, default=0.0)
    return contrast


def remove_inverted(labels, image, scores=None):
    """Drop nuclei whose :func:`nucleus_contrast` is negative; renumber 1..N' (scores follow)."""
    labels, scores = compact(np.asarray(labels), scores)
    if labels.max() == 0:
        return labels, scores
    keep = np.concatenate([[False], nucleus_contrast(np.asarray(image), labels) >= 0])
    return compact(np.where(keep[labels], labels, 0), scores)


def keep_top(labels, max_count, scores=None):
    """Keep the ``max_count`` highest-scoring nuclei (largest ones without scores); renumber."""
    labels = np.asarray(labels)
    count = int(labels.max()) if labels.size else 0
    if max_count <= 0 or count <= max_count:
        return compact(labels, scores)
    if scores is not None:
        priority = np.asarray(scores, np.float64)
    else:
        priority = np.bincount(labels.ravel(), minlength=count + 1)[1:].astype(np.float64)
    keep = np.zeros(count + 1, bool)
    keep[1 + np.argsort(-priority, kind="stable")[:max_count]] = True
    return compact(np.where(keep[labels], labels, 0), scores)


def postprocess(labels, scores=None, config=None, image=None):
    """Run the switched-on steps of ``config`` (a PostprocessConfig).

    Args:
        labels: int [H, W], 0 = background, ids 1..N.
        scores: float [N] per nucleus, or None.
        image: uint8 [H, W, 3] the labels are of; needed by ``drop_inverted``.

    Returns:
        (labels int32 [H, W] ids 1..N', scores float32 [N'] or None).
    """
    config = config or PostprocessConfig()
    labels, scores = compact(labels, scores)
    if config.min_score:
        labels, scores = remove_unsure(labels, config.min_score, scores)
    if config.fill_holes:
        labels, scores = fill_holes(labels, scores)
    if config.closing:
        labels, scores = closing(labels, config.closing, scores)
    if config.min_size:
        labels, scores = remove_small(labels, config.min_size, scores)
    if config.drop_inverted:
        if image is None:
            raise NucleiError("post-processing drop_inverted needs the image")
        labels, scores = remove_inverted(labels, image, scores)
    if config.max_count:
        labels, scores = keep_top(labels, config.max_count, scores)
    if config.dilate:
        labels, scores = dilate(labels, config.dilate, scores)
    return labels, scores
