"""Anchor boxes, pure numpy.

Ordering (shared by the RPN head, the RPN targets and the proposal layer): levels
P2..P6 one after another; within a level, feature-map rows, then columns, then the
ratios in ``RPN_ANCHOR_RATIOS`` order. Anchors are centred on their feature cell:
cell ``(i, j)`` of a level with stride ``s`` has centre ``((i + 0.5) s, (j + 0.5) s)``
in pixel coordinates. An anchor of side ``scale`` and ratio ``r = width / height`` has
``height = scale / sqrt(r)`` and ``width = scale * sqrt(r)`` (area ``scale**2``).
Boxes are ``(y1, x1, y2, x2)`` in pixels, continuous coordinates (pixel ``k`` spans
``[k, k + 1)``).
"""

import numpy as np

from preprocessing.errors import NucleiError


def feature_shapes(image_shape, strides):
    """[(rows, cols)] of the feature map at each stride for an image (H, W).

    Uses ceil(H / stride), which is what 'same'-padded stride-2 convolutions give.
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    return [(-(-height // s), -(-width // s)) for s in strides]


def level_anchors(scale, ratios, shape, feature_stride, anchor_stride=1):
    """Anchors of one level.

    Args:
        scale: anchor side in pixels (square-equivalent).
        ratios: sequence of width / height ratios.
        shape: (rows, cols) of the feature map.
        feature_stride: pixels per feature cell.
        anchor_stride: place anchors on every n-th cell.

    Returns:
        float32 [rows * cols * len(ratios) / anchor_stride**2, (y1, x1, y2, x2)].
    """
    ratios = np.asarray(ratios, np.float64)
    heights = scale / np.sqrt(ratios)
    widths = scale * np.sqrt(ratios)
    rows = np.arange(0, shape[0], anchor_stride)
    cols = np.arange(0, shape[1], anchor_stride)
    cy = (rows + 0.5) * feature_stride
    cx = (cols + 0.5) * feature_stride
    cy, cx = np.meshgrid(cy, cx, indexing="ij")  # [rows, cols]
    cy = cy[:, :, None]
    cx = cx[:, :, None]
    boxes = np.stack(
        [cy - heights / 2, cx - widths / 2, cy + heights / 2, cx + widths / 2], axis=-1
    )  # [rows, cols, ratios, 4]
    return boxes.reshape(-1, 4).astype(np.float32)


def pyramid_anchors(image_shape, scales, ratios, strides, anchor_stride=1):
    """All anchors for an image (H, W): float32 [A, (y1, x1, y2, x2)], order as in the module doc."""
    if len(scales) != len(strides):
        raise NucleiError(f"{len(scales)} anchor scales for {len(strides)} pyramid levels")
    shapes = feature_shapes(image_shape, strides)
    return np.concatenate(
        [level_anchors(scale, ratios, shape, stride, anchor_stride)
         for scale, shape, stride in zip(scales, shapes, strides)], axis=0)


def anchors_for_config(config, image_shape):
    """Anchors for an image (H, W) under a :class:`mrcnn.config.Config`."""
    return pyramid_anchors(image_shape, config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS,
                           config.BACKBONE_STRIDES, config.RPN_ANCHOR_STRIDE)


def anchor_count(config, image_shape):
    """Number of anchors for an image (H, W) under a config."""
    per_cell = len(config.RPN_ANCHOR_RATIOS)
    total = 0
    for rows, cols in feature_shapes(image_shape, config.BACKBONE_STRIDES):
        s = config.RPN_ANCHOR_STRIDE
        total += (-(-rows // s)) * (-(-cols // s)) * per_cell
    return total
