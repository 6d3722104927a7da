"""Box geometry, pure numpy: areas, IoU, delta encoding/decoding, masks <-> boxes.

Boxes are ``(y1, x1, y2, x2)`` in pixel coordinates, continuous (pixel ``k`` spans
``[k, k + 1)``), so a mask whose rows run from ``r0`` to ``r1`` inclusive has
``y1 = r0`` and ``y2 = r1 + 1``. Deltas are ``(dy, dx, dh, dw)``: centre shifts in units
of the reference box size and log size ratios, divided by ``std_dev``.
"""

import numpy as np


def box_area(boxes):
    """boxes: [N, 4] -> [N] areas (0 for degenerate boxes)."""
    boxes = np.asarray(boxes, np.float64)
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def iou_matrix(boxes_a, boxes_b):
    """IoU of every pair: boxes_a [N, 4], boxes_b [M, 4] -> float32 [N, M] (0 where the union is 0)."""
    a = np.asarray(boxes_a, np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, np.float64).reshape(-1, 4)
    y1 = np.maximum(a[:, None, 0], b[None, :, 0])
    x1 = np.maximum(a[:, None, 1], b[None, :, 1])
    y2 = np.minimum(a[:, None, 2], b[None, :, 2])
    x2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(y2 - y1, 0, None) * np.clip(x2 - x1, 0, None)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return iou.astype(np.float32)


def encode(boxes, reference, std_dev=(1.0, 1.0, 1.0, 1.0)):
    """Deltas that move ``reference`` [N, 4] onto ``boxes`` [N, 4] -> float32 [N, 4]."""
    boxes = np.asarray(boxes, np.float64)
    reference = np.asarray(reference, np.float64)
    rh = reference[:, 2] - reference[:, 0]
    rw = reference[:, 3] - reference[:, 1]
    ry = reference[:, 0] + 0.5 * rh
    rx = reference[:, 1] + 0.5 * rw
    h = boxes[:, 2] - boxes[:, 0]
    w = boxes[:, 3] - boxes[:, 1]
    y = boxes[:, 0] + 0.5 * h
    x = boxes[:, 1] + 0.5 * w
    deltas = np.stack([(y - ry) / rh, (x - rx) / rw, np.log(h / rh), np.log(w / rw)], axis=1)
    return (deltas / np.asarray(std_dev, np.float64)).astype(np.float32)


def decode(deltas, reference, std_dev=(1.0, 1.0, 1.0, 1.0)):
    """Apply deltas [N, 4] to ``reference`` boxes [N, 4] -> float32 [N, 4] (inverse of encode)."""
    deltas = np.asarray(deltas, np.float64) * np.asarray(std_dev, np.float64)
    reference = np.asarray(reference, np.float64)
    rh = reference[:, 2] - reference[:, 0]
    rw = reference[:, 3] - reference[:, 1]
    y = reference[:, 0] + 0.5 * rh + deltas[:, 0] * rh
    x = reference[:, 1] + 0.5 * rw + deltas[:, 1] * rw
    h = rh * np.exp(deltas[:, 2])
    w = rw * np.exp(deltas[:, 3])
    return np.stack([y - 0.5 * h, x - 0.5 * w, y + 0.5 * h, x + 0.5 * w], axis=1).astype(np.float32)


def clip_boxes(boxes, height, width):
    """Clip [N, 4] boxes to the image [0, height] x [0, width]."""
    boxes = np.asarray(boxes, np.float32).copy()
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, height)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, width)
    return boxes


def masks_to_boxes(masks):
    """bool [H, W, N] -> float32 [N, (y1, x1, y2, x2)] tight boxes (zeros for empty masks)."""
    masks = np.asarray(masks, bool)
    n = masks.shape[2]
    boxes = np.zeros((n, 4), np.float32)
    rows_any = masks.any(axis=1)  # [H, N]
    cols_any = masks.any(axis=0)  # [W, N]
    for i in range(n):
        rows = np.flatnonzero(rows_any[:, i])
        cols = np.flatnonzero(cols_any[:, i])
        if rows.size:
            boxes[i] = (rows[0], cols[0], rows[-1] + 1, cols[-1] + 1)
    return boxes


def labels_to_boxes(labels):
    """int [H, W] labels 1..N -> (float32 [N, 4] boxes, int32 [N] ids) via scipy's find_objects."""
    from scipy import ndimage

    labels = np.asarray(labels)
    slices = ndimage.find_objects(labels)
    ids, boxes = [], []
    for index, slc in enumerate(slices):
        if slc is None:
            continue
        ids.append(index + 1)
        boxes.append((slc[0].start, slc[1].start, slc[0].stop, slc[1].stop))
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(ids, np.int32)


def nms(boxes, scores, iou_threshold, max_output=None):
    """Greedy non-maximum suppression: indices kept, best score first (reference implementation)."""
    boxes = np.asarray(boxes, np.float32)
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep = []
    while order.size and (max_output is None or len(keep) < max_output):
        best = order[0]
        keep.append(int(best))
        if order.size == 1:
            break
        ious = iou_matrix(boxes[best:best + 1], boxes[order[1:]])[0]
        order = order[1:][ious <= iou_threshold]
    return np.asarray(keep, np.int64)
