"""Acquisition domains: which training images come from the same kind of acquisition.

DSB 2018 validation images drawn at random share acquisitions (microscope, stain,
magnification) with training images, so a random or type-stratified split overstates
how well a model does on a new acquisition. Here images are grouped into domains from
simple statistics, and whole domains are held out.

How images are grouped (deliberately transparent, two stages):

1. a rule splits by kind, the same rule as :func:`preprocessing.image_types.classify_image`:
   'histo' (colour), 'bright' (grey, light background), 'fluo' (grey, dark background).
   Kind is the biggest difference between acquisitions and k-means on mixed features
   would sometimes blur it; the rule never does;
2. within each kind, k-means (``scipy.cluster.vq.kmeans2``, seeded, best of several
   starts) on standardised features: log image height and width, mean intensity,
   background lightness, saturation, red-minus-blue (pink/yellow vs purple), and,
   when every image has labels, log median nucleus area and log nuclei per megapixel.
   The number of clusters of a kind grows with the square root of its image count.

Names are readable and stable: ``<kind>-<most common size>``, e.g. ``fluo-256x256``,
``histo-256x320``; where two clusters of a kind share that size, ``-small`` /
``-large`` (then ``-2``, ``-3`` ...) by median nucleus area (or image area) tells them
apart. The same features always give the same assignment (ids are sorted first).

Unlabelled images (a test set) are placed with :func:`nearest_domain`: same kind
rule, then the nearest centroid of that kind in the image-only features.
"""

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
from scipy.cluster.vq import kmeans2

from preprocessing.errors import NucleiError
from preprocessing.image_types import COLOUR_THRESHOLD, LIGHT_BACKGROUND_THRESHOLD

KINDS = ("fluo", "bright", "histo")
# Features used for clustering: those every image has, then those that need labels.
IMAGE_FEATURES = ("log_height", "log_width", "mean_intensity", "background_lightness", "saturation", "red_minus_blue")
NUCLEUS_FEATURES = ("log_median_nucleus_area", "log_nuclei_per_megapixel")
DOMAINS_FORMAT = "nuclei-seg domains v1"


# --- features ------------------------------------------------------------------------------------

def image_features(image: np.ndarray, labels: np.ndarray | None = None) -> dict[str, float]:
    """Acquisition statistics of one image.

    Args:
        image: uint8 [H, W, 3].
        labels: int [H, W] instance labels (0 = background) or None.

    Returns:
        dict of floats. Always: height, width, colour_spread (mean |R-G|, |G-B|, 0..255),
        is_colour (0/1), mean_intensity (0..1), background_lightness (median grey, 0..1),
        light_background (0/1, mean grey above image_types' threshold), saturation (mean
        HSV saturation, 0..1), hue (saturation-weighted circular mean, degrees 0..360),
        red_minus_blue (mean R - B, -1..1: > 0 pink / yellow, < 0 purple / blue).
        With labels also: nucleus_count, median_nucleus_area (pixels; 0 if none),
        nuclei_per_megapixel, nucleus_coverage (share of pixels in nuclei).
        is_colour and light_background follow classify_image exactly (same pixels).
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise NucleiError(f"expected image uint8 [H, W, 3], got {image.dtype} {list(image.shape)}")
    height, width = image.shape[:2]
    # the subsampling of classify_image, so kind here and image type there always agree
    step = max(1, int(np.sqrt(height * width / 65536)))
    pixels = image[::step, ::step].astype(np.int16)
    spread = (np.abs(pixels[..., 0] - pixels[..., 1]).mean() + np.abs(pixels[..., 1] - pixels[..., 2]).mean()) / 2
    rgb = pixels.astype(np.float32) / 255
    grey = rgb.mean(axis=2)
    high, low = rgb.max(axis=2), rgb.min(axis=2)
    saturation = np.where(high > 0, (high - low) / np.maximum(high, 1e-6), 0.0)
    features = {
        "height": float(height),
        "width": float(width),
        "colour_spread": float(spread),
        "is_colour": float(spread > COLOUR_THRESHOLD),
        "mean_intensity": float(grey.mean()),
        "background_lightness": float(np.median(grey)),
        "light_background": float(pixels.mean() > LIGHT_BACKGROUND_THRESHOLD),
        "saturation": float(saturation.mean()),
        "hue": _mean_hue(rgb, saturation),
        "red_minus_blue": float((rgb[..., 0] - rgb[..., 2]).mean()),
    }
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (height, width):
            raise NucleiError(f"labels {list(labels.shape)} do not match image {[height, width]}")
        areas = np.bincount(labels.ravel())[1:]
        areas = areas[areas > 0]
        features.update({
            "nucleus_count": float(len(areas)),
            "median_nucleus_area": float(np.median(areas)) if len(areas) else 0.0,
            "nuclei_per_megapixel": float(len(areas) * 1e6 / (height * width)),
            "nucleus_coverage": float(areas.sum() / (height * width)),
        })
    return features


def _mean_hue(rgb: np.ndarray, weight: np.ndarray) -> float:
    """Circular mean of HSV hue (degrees 0..360) of rgb float [h, w, 3], weighted [h, w]."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    # hue angle from the opponent-colour plane (same angle as HSV hue up to a small warp)
    x = r - (g + b) / 2
    y = np.sqrt(3) / 2 * (g - b)
    angle = np.arctan2(y, x)
    total = weight.sum()
    if total <= 0:
        return 0.0
    mean = np.arctan2((weight * np.sin(angle)).sum(), (weight * np.cos(angle)).sum())
    return float(np.degrees(mean) % 360)


def kind_of(features: dict[str, float]) -> str:
    """'histo' (colour), 'bright' (grey, light background) or 'fluo' (grey, dark)."""
    if features["is_colour"]:
        return "histo"
    return "bright" if features["light_background"] else "fluo"


def _feature_vector(features: dict[str, float], names: tuple[str, ...]) -> np.ndarray:
    """float64 [len(names)]: the clustering features (logs of sizes and counts)."""
    derived = dict(features)
    derived["log_height"] = np.log(features["height"])
    derived["log_width"] = np.log(features["width"])
    if "median_nucleus_area" in features:
        derived["log_median_nucleus_area"] = np.log1p(features["median_nucleus_area"])
        derived["log_nuclei_per_megapixel"] = np.log1p(features["nuclei_per_megapixel"])
    return np.array([derived[name] for name in names], np.float64)


# --- clustering ----------------------------------------------------------------------------------

def clusters_per_kind(counts: dict[str, int], n_domains: int) -> dict[str, int]:
    """How many clusters each kind gets: at least one each, the rest in proportion to
    sqrt(image count) (largest remainder; ties by kind order), never more than its images.

    counts: {kind: number of images}, kinds with 0 images left out.
    """
    kinds = [kind for kind in KINDS if counts.get(kind, 0) > 0]
    if n_domains < len(kinds):
        raise NucleiError(f"n_domains={n_domains} is fewer than the {len(kinds)} image kinds present")
    weight = np.array([np.sqrt(counts[kind]) for kind in kinds])
    share = n_domains * weight / weight.sum()
    k = np.maximum(1, np.floor(share)).astype(int)
    for index in np.argsort(-(share - np.floor(share)), kind="stable"):
        if k.sum() >= n_domains:
            break
        k[index] += 1
    return {kind: int(min(n, counts[kind])) for kind, n in zip(kinds, k)}


def _standardise(vectors: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return (vectors - mean) / scale


def _kmeans(points: np.ndarray, k: int, seed: int, restarts: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Best of `restarts` k-means++ runs (lowest within-cluster sum of squares).

    points: float64 [n, d] -> (centroids float64 [k', d], assignment int [n]); empty
    clusters are dropped, so k' <= k.
    """
    if k <= 1 or len(points) <= 1:
        return points.mean(axis=0, keepdims=True), np.zeros(len(points), int)
    rng = np.random.default_rng(seed)
    best = None
    for _ in range(restarts):
        centroids, assignment = kmeans2(points, k, minit="++", seed=rng)
        inertia = ((points - centroids[assignment]) ** 2).sum()
        if best is None or inertia < best[0] - 1e-9:
            best = (inertia, centroids, assignment)
    _, centroids, assignment = best
    used = np.unique(assignment)
    return centroids[used], np.searchsorted(used, assignment)
