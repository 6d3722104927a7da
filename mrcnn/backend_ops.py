"""The few graph ops Mask R-CNN needs that ``keras.ops`` lacks, for every Keras backend.

On TensorFlow these are TensorFlow's own kernels (``tf.image.crop_and_resize``,
``tf.image.non_max_suppression``, ``tf.map_fn``), so the graph compiles with
``tf.function`` as before. On the other backends (PyTorch, which trains the model on
GPU machines without TensorFlow) they are written with ``keras.ops`` and run eagerly;
NMS uses torchvision's kernel when it is installed. The ``keras.ops`` versions are
tested against the TensorFlow ones (they run on TensorFlow too).
"""

import keras
from keras import ops


def is_tensorflow():
    return keras.backend.backend() == "tensorflow"


# ------------------------------------------------------------------ crop and resize
def crop_and_resize(image, boxes, box_indices, size):
    """Bilinear crops, ``tf.image.crop_and_resize`` semantics (extrapolation value 0).

    Args:
        image: [B, H, W, C].
        boxes: [N, (y1, x1, y2, x2)] normalised: y = y1 (H - 1) + k (y2 - y1)(H - 1) / (P - 1).
        box_indices: int32 [N] batch index of each box.
        size: (P, Q) output size.

    Returns:
        [N, P, Q, C].
    """
    if is_tensorflow():
        import tensorflow as tf

        return tf.image.crop_and_resize(image, boxes, box_indices, tuple(size), method="bilinear",
                                        extrapolation_value=0.0)
    return crop_and_resize_gather(image, boxes, box_indices, size)


def _sample_points(start, end, extent, count):
    """Sample coordinates [N, count] in pixel index units along one axis."""
    extent = ops.cast(extent, "float32")
    if count == 1:
        return (0.5 * (start + end) * (extent - 1.0))[:, None]
    steps = ops.arange(count, dtype="float32")[None, :] / float(count - 1)
    return start[:, None] * (extent - 1.0) + steps * ((end - start) * (extent - 1.0))[:, None]


def crop_and_resize_gather(image, boxes, box_indices, size):
    """:func:`crop_and_resize` with ``keras.ops`` gathers (any backend; differentiable in ``image``)."""
    height, width = ops.shape(image)[1], ops.shape(image)[2]
    channels = image.shape[-1]
    boxes = ops.cast(boxes, "float32")
    ys = _sample_points(boxes[:, 0], boxes[:, 2], height, size[0])  # [N, P]
    xs = _sample_points(boxes[:, 1], boxes[:, 3], width, size[1])  # [N, Q]
    inside_y = ops.logical_and(ys >= 0.0, ys <= ops.cast(height, "float32") - 1.0)
    inside_x = ops.logical_and(xs >= 0.0, xs <= ops.cast(width, "float32") - 1.0)
    y0 = ops.floor(ys)
    x0 = ops.floor(xs)
    wy = (ys - y0)[:, :, None, None]  # [N, P, 1, 1]
    wx = (xs - x0)[:, None, :, None]  # [N, 1, Q, 1]
    y0 = ops.cast(y0, "int32")
    x0 = ops.cast(x0, "int32")
    y1 = ops.clip(y0 + 1, 0, height - 1)
    x1 = ops.clip(x0 + 1, 0, width - 1)
    y0 = ops.clip(y0, 0, height - 1)
    x0 = ops.clip(x0, 0, width - 1)
    flat = ops.reshape(image, (-1, channels))  # [B*H*W, C]
    base = ops.cast(box_indices, "int32")[:, None, None] * (height * width)

    def corner(yy, xx):
        index = base + yy[:, :, None] * width + xx[:, None, :]  # [N, P, Q]
        return ops.take(flat, ops.reshape(index, (-1,)), axis=0)

    n = ops.shape(boxes)[0]
    shape = (n, size[0], size[1], channels)
    top = (ops.reshape(corner(y0, x0), shape) * (1.0 - wx) + ops.reshape(corner(y0, x1), shape) * wx)
    bottom = (ops.reshape(corner(y1, x0), shape) * (1.0 - wx) + ops.reshape(corner(y1, x1), shape) * wx)
    out = top * (1.0 - wy) + bottom * wy
    inside = ops.logical_and(inside_y[:, :, None], inside_x[:, None, :])[..., None]
    return ops.where(inside, out, ops.zeros_like(out))


# ------------------------------------------------------------------ non-maximum suppression
def _iou_matrix(boxes):
    """boxes [K, 4] -> [K, K] IoU."""
    y1, x1, y2, x2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = ops.maximum(y2 - y1, 0.0) * ops.maximum(x2 - x1, 0.0)
    ih = ops.maximum(ops.minimum(y2[:, None], y2[None, :]) - ops.maximum(y1[:, None], y1[None, :]), 0.0)
    iw = ops.maximum(ops.minimum(x2[:, None], x2[None, :]) - ops.maximum(x1[:, None], x1[None, :]), 0.0)
    inter = ih * iw
    union = area[:, None] + area[None, :] - inter
    return ops.where(union > 0, inter / ops.maximum(union, 1e-12), 0.0)


def greedy_nms_keep(boxes, iou_threshold):
    """bool [K] boxes kept by greedy NMS; ``boxes`` [K, 4] sorted best first.

    Exact greedy suppression as a fixed point: repeat "a box survives unless a kept better
    box overlaps it" until nothing changes. After round t the first t boxes are final, so it
    ends within K rounds; suppression chains are short, so it takes a handful in practice.
    """
    k = ops.shape(boxes)[0]
    overlap = _iou_matrix(boxes) > iou_threshold
    better = ops.arange(k)[:, None] < ops.arange(k)[None, :]  # row i ranks before column j
    suppresses = ops.cast(ops.logical_and(overlap, better), "float32")  # [i, j]: i would remove j
    keep = ops.ones((k,), "float32")
    for _ in range(int(k) + 1):
        removed = ops.matmul(keep[None, :], suppresses)[0] > 0
        new_keep = ops.cast(ops.logical_not(removed), "float32")
        if bool(ops.all(new_keep == keep)):
            break
        keep = new_keep
    return keep > 0


def nms_indices(boxes, scores, max_output, iou_threshold, score_threshold=None):
    """Indices (int32 [D], D <= max_output, best first) of the boxes [K, 4] greedy NMS keeps
    (only boxes scoring above ``score_threshold`` take part, as in TensorFlow)."""
    if is_tensorflow():
        import tensorflow as tf

        kwargs = {} if score_threshold is None else {"score_threshold": score_threshold}
        return tf.image.non_max_suppression(boxes, scores, max_output, iou_threshold, **kwargs)
    order = ops.flip(ops.argsort(scores), 0)
    if score_threshold is not None:
        order = ops.take(order, ops.where(ops.take(scores, order) > score_threshold)[0])
    boxes = ops.take(boxes, order, axis=0)
    scores = ops.take(scores, order)
    try:  # torchvision's kernel is exact greedy NMS and fast on the GPU
        import torchvision

        keep = torchvision.ops.nms(_xyxy(boxes), scores, float(iou_threshold))
    except ImportError:
        keep = ops.where(greedy_nms_keep(boxes, iou_threshold))[0]
    return ops.cast(ops.take(order, keep[:max_output]), "int32")


def _xyxy(boxes):
    """(y1, x1, y2, x2) -> (x1, y1, x2, y2) as torchvision wants."""
    return ops.stack([boxes[:, 1], boxes[:, 0], boxes[:, 3], boxes[:, 2]], axis=1)


# ------------------------------------------------------------------ dynamic shapes
def shuffle(x):
    """Random permutation of the first axis."""
    if is_tensorflow():
        import tensorflow as tf

        return tf.random.shuffle(x)
    n = ops.shape(x)[0]
    return ops.take(x, ops.argsort(keras.random.uniform((n,))), axis=0)


def map_images(fn, inputs, output_shapes, output_dtypes):
    """``fn`` over the first axis of each tensor in ``inputs``; results stacked.

    ``output_shapes``/``output_dtypes``: per output, its shape and dtype for one image
    (TensorFlow needs them to build the loop; eager backends loop in Python).
    """
    if is_tensorflow():
        import tensorflow as tf

        signature = tuple(tf.TensorSpec(s, d) for s, d in zip(output_shapes, output_dtypes))
        return tf.map_fn(lambda args: fn(*args), tuple(inputs), fn_output_signature=signature)
    batch = ops.shape(inputs[0])[0]
    results = [fn(*(t[i] for t in inputs)) for i in range(int(batch))]
    return tuple(ops.stack([r[j] for r in results], axis=0) for j in range(len(output_shapes)))


def take_rows(x, index):
    """``x`` [B, N, ...], ``index`` int [B, K] -> [B, K, ...]: rows ``index[b]`` of each ``x[b]``.

    On TensorFlow one batched gather: Keras's ``take_along_axis`` transposes int64 indices, which
    oneDNN answers with an E-level log line ("oneDNN supports DT_INT64 only ...").
    """
    if is_tensorflow():
        import tensorflow as tf

        return tf.gather(x, ops.cast(index, "int32"), batch_dims=1)
    trailing = tuple(x.shape[2:])
    full = ops.reshape(index, tuple(ops.shape(index)) + (1,) * len(trailing))
    if trailing:
        full = ops.broadcast_to(full, tuple(ops.shape(index)) + trailing)
    return ops.take_along_axis(x, full, axis=1)


def take_class(params, class_ids):
    """``params`` [B, R, C, ...] -> [B, R, ...], the entry of each row's class ``class_ids`` int [B, R]."""
    if is_tensorflow():  # one batched gather (see take_rows)
        import tensorflow as tf

        return tf.gather(params, ops.cast(class_ids, "int32"), axis=2, batch_dims=2)
    index = ops.cast(class_ids, "int32")[:, :, None]
    trailing = tuple(params.shape[3:])
    for _ in trailing:
        index = index[..., None]
    if trailing:
        index = ops.broadcast_to(index, tuple(ops.shape(class_ids)) + (1,) + trailing)
    return ops.squeeze(ops.take_along_axis(params, index, axis=2), axis=2)
