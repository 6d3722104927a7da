"""From U-Net probability maps to nucleus instances: seeded watershed (pure numpy/scikit-image).

seeds = connected components of P(body) > seed_threshold (or of the predicted distance map,
``seed_source='distance'``; small ones dropped);
foreground = P(body) + P(border) > foreground_threshold;
each foreground pixel joins a seed by watershed on -P(body) (or another growth surface,
``WATERSHED_SURFACES``), foreground
components without any seed become one nucleus each; holes are filled and
nuclei below the minimum size are dropped.
"""

import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed

from preprocessing.labels import remove_small
from unet.config import DISTANCE, SEED_SOURCES, WATERSHED_SURFACES
from unet.targets import BACKGROUND, BODY, BORDER


def fill_holes_per_label(labels):
    """Fill holes inside each nucleus without touching neighbours; int32 [H, W] -> same."""
    out = labels.copy()
    for index, window in enumerate(ndimage.find_objects(labels), start=1):
        if window is None:
            continue
        mask = labels[window] == index
        filled = ndimage.binary_fill_holes(mask)
        holes = filled & ~mask & (out[window] == 0)
        out[window][holes] = index
    return out


def seed_unseeded_blobs(markers, foreground, first_id=None):
    """Make each connected component of ``foreground`` that holds no marker a marker of its own
    (faint or tiny nuclei the seeds missed still count).

    Args:
        markers: int [H, W] watershed markers, 0 = none.
        foreground: bool [H, W].
        first_id: id of the first new marker (default: markers.max() + 1).

    Returns:
        (markers int [H, W], number of markers added: ids first_id .. first_id + n - 1).
    """
    blobs, n_blobs = ndimage.label(foreground)
    if n_blobs == 0:
        return markers, 0
    seeded = np.zeros(n_blobs + 1, bool)
    seeded[np.unique(blobs[markers > 0])] = True
    unseeded = ~seeded[blobs] & (blobs > 0)
    if not unseeded.any():
        return markers, 0
    extra, n_extra = ndimage.label(unseeded)
    first_id = int(markers.max()) + 1 if first_id is None else int(first_id)
    return np.where(extra > 0, extra + (first_id - 1), markers), n_extra


def _distance_map(probabilities, what):
    if probabilities.shape[-1] <= DISTANCE:
        raise ValueError(f"{what} needs the distance map of a U-Net with distance_head; these maps have "
                         f"{probabilities.shape[-1]} channels")
    return probabilities[..., DISTANCE]


def growth_surface(probabilities, foreground, surface="body"):
    """The watershed landscape: float [H, W] (see WATERSHED_SURFACES) from probabilities
    float [H, W, 3 or 4] (body, border, background[, distance]) and foreground bool [H, W]."""
    if surface == "predicted_distance":
        return -_distance_map(probabilities, "watershed_surface='predicted_distance'")
    if surface == "body":
        return -probabilities[..., BODY]
    if surface == "body_minus_border":
        return probabilities[..., BORDER] - probabilities[..., BODY]
    if surface == "distance":
        return -ndimage.distance_transform_edt(foreground)
    raise ValueError(f"unknown watershed surface {surface!r}; choose from {', '.join(WATERSHED_SURFACES)}")


def probabilities_to_labels(probabilities, foreground_threshold=0.5, seed_threshold=0.7,
                            min_seed_size=3, min_nucleus_size=8, surface="body", seed_source="body"):
    """probabilities: float [H, W, 3] softmax (body, border, background), or [H, W, 4] with the
    distance map after it -> labels int32 [H, W].

    ``surface``: what the seeds grow over (WATERSHED_SURFACES); ``seed_source``: the map whose
    components above ``seed_threshold`` are the seeds (SEED_SOURCES)."""
    if seed_source not in SEED_SOURCES:
        raise ValueError(f"unknown seed source {seed_source!r}; choose from {', '.join(SEED_SOURCES)}")
    seed_map = (probabilities[..., BODY] if seed_source == "body"
                else _distance_map(probabilities, "seed_source='distance'"))
    foreground = (1.0 - probabilities[..., BACKGROUND]) > foreground_threshold
    seeds, _ = ndimage.label(seed_map > seed_threshold)
    seeds, _ = remove_small(seeds, min_seed_size)
    seeds[~foreground] = 0
    seeds, _ = seed_unseeded_blobs(seeds, foreground)
    labels = watershed(growth_surface(probabilities, foreground, surface), markers=seeds, mask=foreground)
    labels = fill_holes_per_label(labels.astype(np.int32))
    return remove_small(labels, min_nucleus_size)[0]


def labels_from_config(probabilities, config):
    """Same as probabilities_to_labels with thresholds from a UNetConfig."""
    return probabilities_to_labels(probabilities, config.foreground_threshold, config.seed_threshold,
                                   config.min_seed_size, config.min_nucleus_size, config.watershed_surface,
                                   config.seed_source)
