"""From detections to label images, pure numpy: paste RoI masks, resolve overlaps.

A detection's mask is M x M probabilities over its box. ``'soft'`` pasting (the default,
``Config.MASK_PASTE``) samples them bilinearly at every pixel of the box, then thresholds:
the outline is as smooth at a 100-pixel box as at a 10-pixel one. ``'binary'`` thresholds the
M x M mask first and blows its cells up (nearest neighbour): outlines in steps of box / M.
"""

import cv2
import numpy as np


PASTE_MODES = ("soft", "binary")


def paste_mask(mask: np.ndarray, box, image_shape, threshold: float = 0.5, mode: str = "soft") -> np.ndarray:
    """One RoI mask into the image.

    Args:
        mask: float [M, M] probabilities over the box.
        box: (y1, x1, y2, x2) pixels (continuous).
        image_shape: (H, W).
        threshold: a pixel belongs to the nucleus at this probability.
        mode: 'soft': the probabilities are sampled bilinearly at each covered pixel centre,
            then thresholded (a smooth outline at any box size); 'binary': the M x M mask is
            thresholded first, then each pixel takes the cell its centre falls in (blocky
            outlines of M x M cells).

    Returns:
        bool [H, W].
    """
    if mode not in PASTE_MODES:
        raise ValueError(f"mode must be one of {PASTE_MODES}, got {mode!r}")
    height, width = image_shape[:2]
    out = np.zeros((height, width), bool)
    y1, x1, y2, x2 = (float(v) for v in box)
    if y2 - y1 < 1e-3 or x2 - x1 < 1e-3:
        return out
    r0, c0 = max(int(np.floor(y1)), 0), max(int(np.floor(x1)), 0)
    r1, c1 = min(int(np.ceil(y2)), height), min(int(np.ceil(x2)), width)
    if r1 <= r0 or c1 <= c0:
        return out
    m = mask.shape[0]
    # each covered pixel centre in mask cell units (mask cells at (k + 0.5) * size / M)
    ys = ((np.arange(r0, r1) + 0.5 - y1) / (y2 - y1) * m - 0.5).astype(np.float32)
    xs = ((np.arange(c0, c1) + 0.5 - x1) / (x2 - x1) * m - 0.5).astype(np.float32)
    if mode == "binary":
        rows = np.clip(np.floor(ys + 0.5).astype(np.int64), 0, m - 1)
        cols = np.clip(np.floor(xs + 0.5).astype(np.int64), 0, mask.shape[1] - 1)
        out[r0:r1, c0:c1] = (np.asarray(mask) >= threshold)[rows[:, None], cols[None, :]]
        return out
    map_y, map_x = np.meshgrid(ys, xs, indexing="ij")
    values = cv2.remap(mask.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    out[r0:r1, c0:c1] = values >= threshold
    return out


def detections_to_labels(boxes, scores, masks, image_shape, threshold=0.5, min_pixels=1, mode="soft"):
    """Paint detections into one label image; where masks overlap the highest score keeps the pixel.

    Args:
        boxes: [D, 4] pixels; scores: [D]; masks: float [D, M, M].
        mode: how each mask is pasted ('soft' or 'binary', see :func:`paste_mask`).

    Returns:
        labels int32 [H, W] (ids 1..N in order of decreasing score), scores float32 [N],
        keep int [N] (index of each id's detection).
    """
    height, width = image_shape[:2]
    labels = np.zeros((height, width), np.int32)
    order = np.argsort(-np.asarray(scores), kind="stable")
    kept, next_id = [], 1
    for index in order:  # best first: a pixel already taken stays with the better detection
        pasted = paste_mask(masks[index], boxes[index], (height, width), threshold, mode)
        pasted &= labels == 0
        if pasted.sum() < min_pixels:
            continue
        labels[pasted] = next_id
        kept.append(int(index))
        next_id += 1
    kept = np.asarray(kept, np.int64)
    return labels, np.asarray(scores, np.float32)[kept] if len(kept) else np.zeros(0, np.float32), kept
