"""Box geometry as ``keras.ops`` (any backend), for use inside Keras layers' ``call``.

Same conventions and formulas as :mod:`mrcnn.boxes` (the numpy reference, against
which these are tested): boxes ``(y1, x1, y2, x2)`` in continuous pixel coordinates.
"""

from keras import ops


def encode(boxes, reference, std_dev):
    """Deltas moving ``reference`` [..., 4] onto ``boxes`` [..., 4], divided by std_dev [4]."""
    rh = reference[..., 2] - reference[..., 0]
    rw = reference[..., 3] - reference[..., 1]
    ry = reference[..., 0] + 0.5 * rh
    rx = reference[..., 1] + 0.5 * rw
    h = boxes[..., 2] - boxes[..., 0]
    w = boxes[..., 3] - boxes[..., 1]
    y = boxes[..., 0] + 0.5 * h
    x = boxes[..., 1] + 0.5 * w
    eps = 1e-6
    deltas = ops.stack([(y - ry) / (rh + eps), (x - rx) / (rw + eps),
                       ops.log((h + eps) / (rh + eps)), ops.log((w + eps) / (rw + eps))], axis=-1)
    return deltas / ops.convert_to_tensor(std_dev, deltas.dtype)


def decode(deltas, reference, std_dev, max_log_scale=4.135):
    """Apply deltas [..., 4] (times std_dev) to ``reference`` [..., 4]; size changes capped at e**4.135."""
    deltas = deltas * ops.convert_to_tensor(std_dev, deltas.dtype)
    rh = reference[..., 2] - reference[..., 0]
    rw = reference[..., 3] - reference[..., 1]
    y = reference[..., 0] + 0.5 * rh + deltas[..., 0] * rh
    x = reference[..., 1] + 0.5 * rw + deltas[..., 1] * rw
    h = rh * ops.exp(ops.minimum(deltas[..., 2], max_log_scale))
    w = rw * ops.exp(ops.minimum(deltas[..., 3], max_log_scale))
    return ops.stack([y - 0.5 * h, x - 0.5 * w, y + 0.5 * h, x + 0.5 * w], axis=-1)


def clip(boxes, height, width):
    """Clip boxes [..., 4] to [0, height] x [0, width] (height, width: scalars or tensors)."""
    height = ops.cast(height, boxes.dtype)
    width = ops.cast(width, boxes.dtype)
    y1, x1, y2, x2 = (boxes[..., i] for i in range(4))
    return ops.stack([ops.clip(y1, 0.0, height), ops.clip(x1, 0.0, width),
                     ops.clip(y2, 0.0, height), ops.clip(x2, 0.0, width)], axis=-1)


def area(boxes):
    return ops.maximum(boxes[..., 2] - boxes[..., 0], 0.0) * ops.maximum(boxes[..., 3] - boxes[..., 1], 0.0)


def iou(boxes_a, boxes_b):
    """boxes_a [N, 4], boxes_b [M, 4] -> [N, M] IoU (0 where the union is 0)."""
    a = boxes_a[:, None, :]
    b = boxes_b[None, :, :]
    inter_h = ops.maximum(ops.minimum(a[..., 2], b[..., 2]) - ops.maximum(a[..., 0], b[..., 0]), 0.0)
    inter_w = ops.maximum(ops.minimum(a[..., 3], b[..., 3]) - ops.maximum(a[..., 1], b[..., 1]), 0.0)
    inter = inter_h * inter_w
    union = area(boxes_a)[:, None] + area(boxes_b)[None, :] - inter
    return ops.where(union > 0, inter / ops.maximum(union, 1e-12), 0.0)


def crop_boxes_norm(boxes, height, width, out_size):
    """Boxes [..., 4] in continuous pixel coordinates of a [height, width] map -> the
    normalised boxes for ``crop_and_resize`` that sample each of the
    ``out_size`` x ``out_size`` bins at its centre (RoIAlign, one sample per bin).

    crop_and_resize samples y_k = y1n (H - 1) + k (y2n - y1n)(H - 1) / (P - 1) in pixel
    index units, where pixel index i has its centre at continuous coordinate i + 0.5.
    """
    height = ops.cast(height, boxes.dtype)
    width = ops.cast(width, boxes.dtype)
    y1, x1, y2, x2 = (boxes[..., i] for i in range(4))
    half_h = 0.5 * (y2 - y1) / out_size
    half_w = 0.5 * (x2 - x1) / out_size
    ny1 = (y1 + half_h - 0.5) / ops.maximum(height - 1.0, 1.0)
    ny2 = (y2 - half_h - 0.5) / ops.maximum(height - 1.0, 1.0)
    nx1 = (x1 + half_w - 0.5) / ops.maximum(width - 1.0, 1.0)
    nx2 = (x2 - half_w - 0.5) / ops.maximum(width - 1.0, 1.0)
    return ops.stack([ny1, nx1, ny2, nx2], axis=-1)
