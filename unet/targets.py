"""U-Net training targets from an instance label image (pure numpy/OpenCV).

Three classes, as the DSB 2018 winners used them:

* body: nucleus pixels away from its edge;
* border: an inner band along each nucleus' edge, whose width grows with the
  nucleus' size, plus the background gap where two nuclei touch or nearly touch;
* background: everything else.

Seeds for the watershed come from the body class, so touching nuclei get separate
seeds even when their union is one blob.

With a distance head (UNetConfig.distance_head) the target adds, per pixel, the distance to its
nucleus' edge over that nucleus' largest (:func:`distance_target`).
"""

import cv2
import numpy as np
from scipy import ndimage

from unet.config import CLASSES

BODY, BORDER, BACKGROUND = (CLASSES.index(name) for name in ("body", "border", "background"))

# Background pixels that see two different nuclei within this radius are contact pixels.
CONTACT_RADIUS = 2


def _disk(radius):
    y, x = np.ogrid[-radius:radius + 1, -radius:radius + 1]
    return x * x + y * y <= radius * radius


def border_widths(labels, factor, max_width):
    """Per nucleus band width, int32 [N + 1] indexed by label id (index 0 unused).

    width = clip(round(sqrt(area) * factor), 1, max_width).
    """
    areas = np.bincount(labels.ravel())
    widths = np.clip(np.round(np.sqrt(areas) * factor), 1, max_width).astype(np.int32)
    widths[0] = 0
    return widths


# Label ids go through OpenCV's morphology as float32 (ten times faster than scipy's grey
# erosion on int32, same result): exact for ids below 2**24.
MAX_LABEL_ID = 2 ** 24 - 1


def _as_float_ids(labels):
    if labels.size and int(labels.max()) > MAX_LABEL_ID:
        raise ValueError(f"label ids above {MAX_LABEL_ID} are not supported")
    return np.ascontiguousarray(labels, np.float32)


def edge_band(labels, radius):
    """bool [H, W]: nucleus pixels within ``radius`` of a pixel of another label (or background)."""
    ids = _as_float_ids(labels)
    footprint = _disk(radius).astype(np.uint8)
    low = cv2.erode(ids, footprint, borderType=cv2.BORDER_REPLICATE)
    high = cv2.dilate(ids, footprint, borderType=cv2.BORDER_REPLICATE)
    return (labels > 0) & ((low != ids) | (high != ids))


def contact_pixels(labels, radius=CONTACT_RADIUS):
    """bool [H, W]: background pixels with two different nuclei within ``radius``."""
    ids = _as_float_ids(labels)
    footprint = _disk(radius).astype(np.uint8)
    high = cv2.dilate(ids, footprint, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    big = float(MAX_LABEL_ID + 1)
    low = cv2.erode(np.where(labels > 0, ids, np.float32(big)), footprint, borderType=cv2.BORDER_CONSTANT,
                    borderValue=big)
    return (labels == 0) & (high > 0) & (low < big) & (low != high)


def make_targets(labels, border_width_factor=0.08, border_width_max=3):
    """labels: int32 [H, W] -> classes: uint8 [H, W] with values BODY, BORDER, BACKGROUND."""
    labels = np.asarray(labels, np.int32)
    classes = np.full(labels.shape, BACKGROUND, np.uint8)
    if labels.max() == 0:
        return classes
    widths = border_widths(labels, border_width_factor, border_width_max)
    pixel_width = widths[labels]
    border = np.zeros(labels.shape, bool)
    for width in range(1, border_width_max + 1):
        if np.any(widths[1:] == width):
            border |= edge_band(labels, width) & (pixel_width == width)
    classes[labels > 0] = BODY
    classes[border] = BORDER
    classes[contact_pixels(labels)] = BORDER
    return classes


def distance_target(labels):
    """labels: int [H, W] -> float32 [H, W] in [0, 1]: each nucleus pixel's distance to the nearest
    pixel outside its nucleus (background or another nucleus), over the largest in that nucleus;
    0 on the background. Every nucleus peaks at 1 whatever its size, so one threshold finds the
    cores of small and large nuclei alike."""
    labels = np.asarray(labels, np.int32)
    distance = np.zeros(labels.shape, np.float32)
    if labels.max() == 0:
        return distance
    # pixels whose 4-neighbourhood holds another label are at distance 1 (the edge); the rest
    # add their Euclidean distance to the nearest edge pixel
    inner = (labels > 0) & ~edge_band(labels, 1)
    distance = cv2.distanceTransform(inner.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    distance = np.where(labels > 0, distance + 1.0, 0.0).astype(np.float32)
    peaks = ndimage.maximum(distance, labels, np.arange(int(labels.max()) + 1)).astype(np.float32)
    peaks[0] = 1.0
    return (distance / np.maximum(peaks[labels], 1.0)).astype(np.float32)


def training_target(labels, config):
    """What the loss compares the network's output with, for one crop (labels int [H, W]):
    classes uint8 [H, W], or with ``config.distance_head`` float32 [H, W, 2] (class id, distance)."""
    classes = make_targets(labels, config.border_width_factor, config.border_width_max)
    if not config.distance_head:
        return classes
    return np.stack([classes.astype(np.float32), distance_target(labels)], axis=-1)
