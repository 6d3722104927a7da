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

   Square root: the big fluorescence kind gets more clusters than the small ones, but
   not so many that it splits into near-copies while colour stays one domain.

Names are readable and stable: ``<kind>-<most common size>``, e.g. ``fluo-360x360``;
clusters of a kind that share that size get ``-small`` / ``-large`` (three:
``-small`` / ``-medium`` / ``-large``; more: ``-1``, ``-2``, ...) by median nucleus
area (mean intensity without labels). The same features and seed always give the same
assignment (ids are sorted first; the seed drives a numpy Generator, never the global one).

Unlabelled images (a test set) are placed with :func:`nearest_domain`: same kind
rule, then the nearest centroid of that kind in the image-only features.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from scipy.cluster.vq import kmeans2

from preprocessing.errors import NucleiError
from preprocessing.files import save_json_atomic
from preprocessing.image_types import COLOUR_THRESHOLD, LIGHT_BACKGROUND_THRESHOLD
from preprocessing.settings import read_json

KINDS = ("fluo", "bright", "histo")
# Features used for clustering: those every image has, then those that need labels.
IMAGE_ONLY_FEATURES = ("log_height", "log_width", "mean_intensity", "background_lightness", "saturation", "red_minus_blue")
NUCLEUS_FEATURES = ("log_median_nucleus_area", "log_nuclei_per_megapixel")
DOMAINS_FORMAT = "nuclei-seg domains v1"
REFERENCE_FORMAT = "nuclei-seg domain reference v1"
# 10 gives stage1_train 6 grey-dark, 1 grey-light and 3 colour domains (clusters_per_kind):
# the colour images split by nucleus size (magnification), the grey ones by size and nuclei.
N_DOMAINS = 10
# Smallest standard deviation features are divided by (they are logs and 0..1 shares: 0.05 is
# a 5 % size change or 5 % of the intensity range).
MIN_FEATURE_SCALE = 0.05
# default_holdout holds out, of the colour and of the grey domains, the one closest to this
# share of that group's images.
HOLDOUT_SHARE = 0.15


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


def _feature_names(features: dict[str, dict[str, float]]) -> tuple[str, ...]:
    """Clustering features: nucleus ones only when every image has labels."""
    with_nuclei = all("median_nucleus_area" in f for f in features.values())
    return IMAGE_ONLY_FEATURES + (NUCLEUS_FEATURES if with_nuclei else ())


def _kind_scaling(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, scale) [d] of one kind's feature vectors [n, d]: the standard deviation, at
    least MIN_FEATURE_SCALE. A feature constant within the kind (every colour training image
    is 256x320) then plays no part in clustering, but a new image that differs in it (a
    512x680 test image) is still seen to be far away."""
    return vectors.mean(axis=0), np.maximum(vectors.std(axis=0), MIN_FEATURE_SCALE)


def assign_domains(features: dict[str, dict[str, float]], n_domains: int = N_DOMAINS, seed: int = 0) -> dict[str, str]:
    """Group images into acquisition domains (see the module doc for the method).

    Args:
        features: {image_id: image_features(...)}; nucleus features are used only if
            every image has them.
        n_domains: total number of clusters over all kinds (see clusters_per_kind);
            k-means may leave a cluster empty, so a few fewer domains can come out.
        seed: seeds k-means; the same features and seed give the same assignment.

    Returns:
        {image_id: domain name}, e.g. 'fluo-256x256-small', 'histo-256x320-large'.
    """
    if not features:
        raise NucleiError("no images to group into domains")
    names = _feature_names(features)
    ids = sorted(features)
    by_kind = {kind: [i for i in ids if kind_of(features[i]) == kind] for kind in KINDS}
    k_of = clusters_per_kind({kind: len(members) for kind, members in by_kind.items()}, n_domains)
    assignment = {}
    for kind, k in k_of.items():
        members = by_kind[kind]
        vectors = np.stack([_feature_vector(features[i], names) for i in members])
        mean, scale = _kind_scaling(vectors)
        _, cluster = _kmeans(_standardise(vectors, mean, scale), k, seed)
        groups = [[m for m, c in zip(members, cluster) if c == label] for label in range(cluster.max() + 1)]
        for name, group in zip(_cluster_names(kind, groups, features), groups):
            assignment.update({i: name for i in group})
    return {i: assignment[i] for i in ids}


def _cluster_names(kind: str, groups: list[list[str]], features: dict[str, dict[str, float]]) -> list[str]:
    """'<kind>-<most common HxW>' per group; groups sharing it get a suffix by median
    nucleus area (-small / -large, or -small / -medium / -large, else -1, -2, ...)."""
    def size(group):  # most common size; ties -> the smallest
        counts = Counter((int(features[i]["height"]), int(features[i]["width"])) for i in group)
        return min(counts, key=lambda hw: (-counts[hw], hw))

    def order_key(group):  # median nucleus area, else mean intensity, then first id
        values = [features[i].get("median_nucleus_area", features[i]["mean_intensity"]) for i in group]
        return float(np.median(values)), min(group)

    bases = [f"{kind}-{h}x{w}" for h, w in map(size, groups)]
    names = list(bases)
    for base in set(bases):
        same = sorted((g for g, b in enumerate(bases) if b == base), key=lambda g: order_key(groups[g]))
        if len(same) == 1:
            continue
        suffixes = {2: ["small", "large"], 3: ["small", "medium", "large"]}.get(len(same),
                                                                                [str(n + 1) for n in range(len(same))])
        for g, suffix in zip(same, suffixes):
            names[g] = f"{base}-{suffix}"
    return names


def domain_distances(features: dict[str, float], train_features: dict[str, dict[str, float]],
                     domains: dict[str, str]) -> dict[str, float]:
    """Distance of an image (labelled or not, e.g. a test image) to each training domain of
    its kind: Euclidean, to the domain centroid, in the image-only features (IMAGE_ONLY_FEATURES)
    standardised over that kind's training images (1 = one standard deviation).

    Args:
        features: image_features(image) of the new image (labels not needed).
        train_features: {image_id: image_features} of the images that were grouped.
        domains: {image_id: domain name} from assign_domains.

    Returns:
        {domain: distance} for the domains of the image's kind (every domain when no
        training image has that kind).
    """
    kind = kind_of(features)
    ids = sorted(domains)
    candidates = [i for i in ids if kind_of(train_features[i]) == kind] or ids
    vectors = np.stack([_feature_vector(train_features[i], IMAGE_ONLY_FEATURES) for i in candidates])
    mean, scale = _kind_scaling(vectors)
    points = _standardise(vectors, mean, scale)
    point = _standardise(_feature_vector(features, IMAGE_ONLY_FEATURES), mean, scale)
    member = np.array([domains[i] for i in candidates])
    return {name: float(np.linalg.norm(points[member == name].mean(axis=0) - point))
            for name in sorted(set(member.tolist()))}


def nearest_domain(features: dict[str, float], train_features: dict[str, dict[str, float]],
                   domains: dict[str, str]) -> str:
    """The training domain an image belongs to: same kind rule as assign_domains, then the
    nearest centroid (see domain_distances; ties go to the first name)."""
    distances = domain_distances(features, train_features, domains)
    return min(distances, key=lambda name: (distances[name], name))


# --- how familiar a new image is ------------------------------------------------------------------

def domain_reference(train_features: dict[str, dict[str, float]], domains: dict[str, str]) -> dict:
    """What :func:`reference_distance` needs of a training set, small enough to ship beside weights.

    Per kind: the scaling of domain_distances (image-only features), each domain's standardised
    centroid, and the largest distance of a training image to its own domain's centroid.

    Returns:
        {'format', 'features': [names], 'kinds': {kind: {'mean': [d], 'scale': [d],
        'centroids': {domain: [d]}, 'max_distance': float, 'images': int}}} (JSON-able).
    """
    ids = sorted(domains)
    kinds = {}
    for kind in KINDS:
        members = [i for i in ids if kind_of(train_features[i]) == kind]
        if not members:
            continue
        vectors = np.stack([_feature_vector(train_features[i], IMAGE_ONLY_FEATURES) for i in members])
        mean, scale = _kind_scaling(vectors)
        points = _standardise(vectors, mean, scale)
        names = np.array([domains[i] for i in members])
        centroids = {name: points[names == name].mean(axis=0) for name in sorted(set(names.tolist()))}
        own = [float(np.linalg.norm(point - centroids[name])) for point, name in zip(points, names)]
        kinds[kind] = {"mean": mean.tolist(), "scale": scale.tolist(),
                       "centroids": {name: c.tolist() for name, c in centroids.items()},
                       "max_distance": max(own), "images": len(members)}
    return {"format": REFERENCE_FORMAT, "features": list(IMAGE_ONLY_FEATURES), "kinds": kinds}


def reference_distance(features: dict[str, float], reference: dict) -> tuple[str | None, float, float]:
    """How far an image lies from the training set a reference describes.

    Args:
        features: image_features(image) (no labels needed).
        reference: from domain_reference (or load_reference).

    Returns:
        (nearest domain, distance to its centroid in standard deviations, the largest such
        distance of a training image of the same kind). An image of a kind the training set
        lacks gets (None, inf, 0.0).
    """
    entry = reference["kinds"].get(kind_of(features))
    if entry is None:
        return None, float("inf"), 0.0
    point = _standardise(_feature_vector(features, tuple(reference["features"])), np.array(entry["mean"]),
                         np.array(entry["scale"]))
    distances = {name: float(np.linalg.norm(point - np.array(c))) for name, c in entry["centroids"].items()}
    name = min(distances, key=lambda n: (distances[n], n))
    return name, distances[name], float(entry["max_distance"])


def save_reference(path: str | Path, reference: dict) -> None:
    """Write a domain_reference atomically."""
    save_json_atomic(path, reference)


def load_reference(path: str | Path) -> dict:
    """A file written by save_reference; NucleiError naming the file when it is not one."""
    payload = read_json(path)
    if not isinstance(payload, dict) or payload.get("format") != REFERENCE_FORMAT or "kinds" not in payload:
        raise NucleiError(f"not a domain reference file (expected \"format\": \"{REFERENCE_FORMAT}\")", path)
    return payload


# --- splits and scores ---------------------------------------------------------------------------

def _check_ids(ids: list[str], domains: dict[str, str]) -> list[str]:
    missing = [i for i in ids if i not in domains]
    if missing:
        raise NucleiError(f"{len(missing)} image ids have no domain, e.g. {missing[0]}")
    return sorted(ids)


def domain_holdout_split(ids: list[str], domains: dict[str, str], holdout: list[str]) -> tuple[list[str], list[str]]:
    """(train_ids, val_ids), sorted: val holds every image of the `holdout` domains."""
    ids = _check_ids(ids, domains)
    unknown = sorted(set(holdout) - set(domains.values()))
    if unknown:
        raise NucleiError(f"unknown hold-out domains: {', '.join(unknown)}")
    held = set(holdout)
    return [i for i in ids if domains[i] not in held], [i for i in ids if domains[i] in held]


def leave_one_domain_out(ids: list[str], domains: dict[str, str]) -> list[tuple[str, list[str], list[str]]]:
    """One fold per domain of `ids`, by domain name: [(domain, train_ids, val_ids)]."""
    ids = _check_ids(ids, domains)
    return [(name, *domain_holdout_split(ids, domains, [name])) for name in sorted({domains[i] for i in ids})]


def default_holdout(domains: dict[str, str]) -> list[str]:
    """The fixed hold-out: one colour ('histo-') and one grey domain, each the domain whose
    image count is closest to HOLDOUT_SHARE of its group (ties: fewer images, then name).
    A group with a single domain is not held out (training would never see that group)."""
    counts = Counter(domains.values())
    chosen = []
    for is_colour in (True, False):
        group = sorted(name for name in counts if name.startswith("histo-") == is_colour)
        if len(group) < 2:
            continue
        target = HOLDOUT_SHARE * sum(counts[name] for name in group)
        chosen.append(min(group, key=lambda name: (abs(counts[name] - target), counts[name], name)))
    return sorted(chosen)


def domain_scores(per_image_score: dict[str, float], domains: dict[str, str]) -> dict:
    """Scores per domain and the domain-balanced mean.

    Returns:
        {'per_domain': {domain: mean score}, 'counts': {domain: images scored},
         'balanced_mean': mean of the per-domain means (each domain weighs the same),
         'mean': plain mean over images}. Domains with no scored image are left out.
    """
    if not per_image_score:
        raise NucleiError("no per-image scores")
    ids = _check_ids(list(per_image_score), domains)
    names = sorted({domains[i] for i in ids})
    per_domain = {name: float(np.mean([per_image_score[i] for i in ids if domains[i] == name])) for name in names}
    return {
        "per_domain": per_domain,
        "counts": {name: sum(domains[i] == name for i in ids) for name in names},
        "balanced_mean": float(np.mean(list(per_domain.values()))),
        "mean": float(np.mean([per_image_score[i] for i in ids])),
    }


# --- files ---------------------------------------------------------------------------------------

def save_domains(path: str | Path, domains: dict[str, str], extra: dict | None = None) -> None:
    """Write {'format', 'domains': {id: name}, **extra} as JSON, atomically (temp file + rename)."""
    save_json_atomic(path, {"format": DOMAINS_FORMAT, "domains": dict(sorted(domains.items())), **(extra or {})})


def load_domains(path: str | Path) -> dict[str, str]:
    """{image_id: domain name} from a file written by save_domains; NucleiError naming the file
    when it is missing, not JSON, or not a domain file."""
    payload = read_json(path)
    if not isinstance(payload, dict) or payload.get("format") != DOMAINS_FORMAT:
        raise NucleiError(f"not a domain file (expected \"format\": \"{DOMAINS_FORMAT}\")", path)
    domains = payload.get("domains")
    if not isinstance(domains, dict) or not all(isinstance(v, str) for v in domains.values()):
        raise NucleiError("\"domains\" must map image ids to domain names (strings)", path)
    return domains
