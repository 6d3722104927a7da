"""RPN training targets, pure numpy: which anchors are objects, and their box deltas.

Rules (Faster R-CNN): an anchor is positive if its IoU with some nucleus is at least
``RPN_POSITIVE_IOU`` or it is (one of) the best anchors for some nucleus; negative if
its IoU with every nucleus is below ``RPN_NEGATIVE_IOU``; neutral otherwise. Then
``RPN_TRAIN_ANCHORS_PER_IMAGE`` anchors are sampled, at most half positive; the rest
become neutral (0) and carry no loss.
"""

import numpy as np

from mrcnn.boxes import encode


def _max_iou(anchors, gt_boxes, chunk=16384):
    """Per anchor best IoU and gt index, and per gt best IoU, computed in chunks (memory)."""
    n = len(anchors)
    best_iou = np.zeros(n, np.float32)
    best_gt = np.zeros(n, np.int64)
    gt_best = np.zeros(len(gt_boxes), np.float32)
    g = gt_boxes.astype(np.float32)
    g_area = (g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1])
    for start in range(0, n, chunk):
        a = anchors[start:start + chunk].astype(np.float32)
        a_area = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
        ih = np.minimum(a[:, None, 2], g[None, :, 2]) - np.maximum(a[:, None, 0], g[None, :, 0])
        iw = np.minimum(a[:, None, 3], g[None, :, 3]) - np.maximum(a[:, None, 1], g[None, :, 1])
        inter = np.clip(ih, 0, None) * np.clip(iw, 0, None)
        iou = inter / np.maximum(a_area[:, None] + g_area[None, :] - inter, 1e-9)
        best_gt[start:start + chunk] = iou.argmax(axis=1)
        best_iou[start:start + chunk] = iou.max(axis=1)
        np.maximum(gt_best, iou.max(axis=0), out=gt_best)
    return best_iou, best_gt, gt_best


def build_rpn_targets(anchors, gt_boxes, config, rng):
    """Targets for one image.

    Args:
        anchors: float32 [A, 4] (pixels).
        gt_boxes: float32 [G, 4] (pixels), G may be 0.
        config: a Config (RPN_* fields).
        rng: numpy Generator (sampling).

    Returns:
        match: int32 [A] 1 positive, -1 negative, 0 neutral.
        deltas: float32 [A, 4] encoded with RPN_BBOX_STD_DEV (zero except at positives).
    """
    n = len(anchors)
    match = np.zeros(n, np.int32)
    deltas = np.zeros((n, 4), np.float32)
    gt_boxes = np.asarray(gt_boxes, np.float32).reshape(-1, 4)
    if len(gt_boxes):
        best_iou, best_gt, gt_best = _max_iou(anchors, gt_boxes)
        match[best_iou < config.RPN_NEGATIVE_IOU] = -1
        # every nucleus gets its best anchor(s), even when the IoU is low
        for start in range(0, n, 16384):
            a = anchors[start:start + 16384]
            ih = np.minimum(a[:, None, 2], gt_boxes[None, :, 2]) - np.maximum(a[:, None, 0], gt_boxes[None, :, 0])
            iw = np.minimum(a[:, None, 3], gt_boxes[None, :, 3]) - np.maximum(a[:, None, 1], gt_boxes[None, :, 1])
            inter = np.clip(ih, 0, None) * np.clip(iw, 0, None)
            area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
            area_g = (gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1])
            iou = inter / np.maximum(area_a[:, None] + area_g[None, :] - inter, 1e-9)
            hit = (iou >= gt_best[None, :] - 1e-6) & (gt_best[None, :] > 0)
            rows, cols = np.nonzero(hit)
            match[start + rows] = 1
            best_gt[start + rows] = cols  # such an anchor regresses to the nucleus it is best for
        match[best_iou >= config.RPN_POSITIVE_IOU] = 1
    else:
        match[:] = -1
    total = config.RPN_TRAIN_ANCHORS_PER_IMAGE
    positive = np.flatnonzero(match == 1)
    if len(positive) > total // 2:
        match[rng.choice(positive, len(positive) - total // 2, replace=False)] = 0
        positive = np.flatnonzero(match == 1)
    negative = np.flatnonzero(match == -1)
    extra = len(negative) - (total - len(positive))
    if extra > 0:
        match[rng.choice(negative, extra, replace=False)] = 0
    if len(positive):
        deltas[positive] = encode(gt_boxes[best_gt[positive]], anchors[positive], config.RPN_BBOX_STD_DEV)
    return match, deltas
