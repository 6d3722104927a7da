"""The few graph ops Mask R-CNN needs that ``keras.ops`` lacks, for every Keras backend.

On TensorFlow these are TensorFlow's own kernels (``tf.image.crop_and_resize``,
``tf.image.non_max_suppression``, ``tf.map_fn``), so the graph compiles with
``tf.function`` as before. On the other backends they are written with ``keras.ops``:
PyTorch runs them eagerly (NMS uses torchvision's kernel when it is installed); JAX
compiles the whole train step with XLA, so there every shape is static
(:func:`static_shapes`): NMS answers a fixed number of rows and a count, per-image work
is ``jax.vmap``. The ``keras.ops`` versions are tested against the TensorFlow ones
(they run on TensorFlow too).
"""

import keras
from keras import ops


def is_tensorflow():
    return keras.backend.backend() == "tensorflow"


def static_shapes():
    """True on the backend whose train step is compiled whole (JAX / XLA): no op may give a
    data-dependent shape there (no boolean masks, no ``where`` with one argument)."""
    return keras.backend.backend() == "jax"


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
    """Sample coordinates [..., count] in pixel index units along one axis (start, end [...])."""
    extent = ops.cast(extent, "float32")
    if count == 1:
        return (0.5 * (start + end) * (extent - 1.0))[..., None]
    steps = ops.arange(count, dtype="float32") / float(count - 1)
    return start[..., None] * (extent - 1.0) + steps * ((end - start) * (extent - 1.0))[..., None]


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


def crop_and_resize_per_image(image, boxes, size):
    """:func:`crop_and_resize` of each image's own boxes, as two matrix products per image.

    Bilinear sampling along one axis is a [P, H] matrix of tent weights, so a crop is
    ``Wy @ image @ Wx^T``; no gather, so the gradient in ``image`` is matrix products too
    (a gather's gradient is a scatter, which XLA runs slowly; this is what the compiled JAX
    step pools with). Same values as :func:`crop_and_resize`, extrapolation 0.

    Args:
        image: [B, H, W, C] (H and W static).
        boxes: [B, N, (y1, x1, y2, x2)] normalised as :func:`crop_and_resize`'s.
        size: (P, Q) output size.

    Returns:
        [B, N, P, Q, C].
    """
    height, width = int(image.shape[1]), int(image.shape[2])
    boxes = ops.cast(boxes, "float32")

    def weights(start, end, extent, count):  # [B, N, count, extent]
        points = _sample_points(start, end, extent, count)
        inside = ops.logical_and(points >= 0.0, points <= extent - 1.0)[..., None]
        tent = ops.relu(1.0 - ops.abs(points[..., None] - ops.arange(extent, dtype="float32")))
        return ops.where(inside, tent, 0.0)

    wy = ops.cast(weights(boxes[..., 0], boxes[..., 2], height, size[0]), image.dtype)
    wx = ops.cast(weights(boxes[..., 1], boxes[..., 3], width, size[1]), image.dtype)
    rows = ops.einsum("bnph,bhwc->bnpwc", wy, image)
    return ops.einsum("bnqw,bnpwc->bnpqc", wx, rows)


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


def greedy_nms_keep(boxes, iou_threshold, candidates=None):
    """bool [K] boxes kept by greedy NMS; ``boxes`` [K, 4] sorted best first; only boxes where
    bool ``candidates`` [K] holds (default all) take part.

    Exact greedy suppression as a fixed point: repeat "a candidate survives unless a kept
    better box overlaps it" until nothing changes. After round t the first t boxes are final,
    so it ends within K rounds; suppression chains are short, so it takes a handful in
    practice. Static shapes throughout (``ops.while_loop``): it compiles under XLA.
    """
    boxes = ops.convert_to_tensor(boxes, "float32")
    k = ops.shape(boxes)[0]
    if candidates is None:
        candidates = ops.ones((k,), "bool")
    candidates = ops.cast(candidates, "bool")
    overlap = _iou_matrix(boxes) > iou_threshold
    better = ops.arange(k)[:, None] < ops.arange(k)[None, :]  # row i ranks before column j
    # [i, j]: candidate i, if kept, removes j
    suppresses = ops.logical_and(ops.logical_and(overlap, better), candidates[:, None])

    def step(keep, _):
        removed = ops.any(ops.logical_and(suppresses, keep[:, None]), axis=0)
        new_keep = ops.logical_and(candidates, ops.logical_not(removed))
        return new_keep, ops.any(ops.not_equal(new_keep, keep))

    keep, _ = ops.while_loop(lambda keep, changed: changed, step, (candidates, ops.convert_to_tensor(True)))
    return keep


def nms_indices(boxes, scores, max_output, iou_threshold, score_threshold=None):
    """Indices (int32 [D], D <= max_output, best first) of the boxes [K, 4] greedy NMS keeps
    (only boxes scoring above ``score_threshold`` take part, as in TensorFlow). Eager or
    TensorFlow graphs only: D depends on the data (see :func:`nms_padded`)."""
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


def nms_padded(boxes, scores, max_output, iou_threshold, score_threshold=None):
    """Greedy NMS with a fixed-size answer, for every backend.

    Args:
        boxes: [K, 4]; scores: [K] (any order).
        max_output: rows out (a Python int).

    Returns:
        (indices int32 [max_output], count int32 []): the first ``count`` indices are the kept
        boxes, best first (the same as :func:`nms_indices`); the rest are 0.
    """
    if not static_shapes():
        keep = nms_indices(boxes, scores, max_output, iou_threshold, score_threshold)
        count = ops.shape(keep)[0]
        return ops.pad(keep, [[0, max_output - count]]), ops.cast(count, "int32")
    return nms_padded_static(boxes, scores, max_output, iou_threshold, score_threshold)


def nms_padded_static(boxes, scores, max_output, iou_threshold, score_threshold=None):
    """:func:`nms_padded` with static shapes only (what JAX runs; ``boxes.shape[0]`` must be known)."""
    k = int(boxes.shape[0])
    order = ops.cast(ops.flip(ops.argsort(scores), 0), "int32")
    sorted_scores = ops.take(scores, order)
    candidates = None if score_threshold is None else sorted_scores > score_threshold
    keep = greedy_nms_keep(ops.take(boxes, order, axis=0), iou_threshold, candidates)
    # the kept positions in rank order: top_k of a key that falls with rank and is 0 if dropped
    key = ops.where(keep, k - ops.arange(k, dtype="int32"), 0)
    if max_output > k:
        key = ops.pad(key, [[0, max_output - k]])
    key, position = ops.top_k(key, max_output, sorted=True)
    count = ops.minimum(ops.sum(ops.cast(keep, "int32")), max_output)
    indices = ops.take(order, ops.minimum(position, k - 1))
    return ops.where(key > 0, indices, 0), ops.cast(count, "int32")


def _xyxy(boxes):
    """(y1, x1, y2, x2) -> (x1, y1, x2, y2) as torchvision wants."""
    return ops.stack([boxes[:, 1], boxes[:, 0], boxes[:, 3], boxes[:, 2]], axis=1)


# ------------------------------------------------------------------ per-image work and gathers
def map_images(fn, inputs, output_shapes, output_dtypes):
    """``fn`` over the first axis of each tensor in ``inputs``; results stacked.

    ``output_shapes``/``output_dtypes``: per output, its shape and dtype for one image
    (TensorFlow needs them to build the loop; JAX vectorises ``fn`` with ``jax.vmap``, so it
    must be static-shaped there; PyTorch loops in Python).
    """
    if is_tensorflow():
        import tensorflow as tf

        signature = tuple(tf.TensorSpec(s, d) for s, d in zip(output_shapes, output_dtypes))
        return tf.map_fn(lambda args: fn(*args), tuple(inputs), fn_output_signature=signature)
    if static_shapes():
        import jax

        return tuple(jax.vmap(fn)(*inputs))
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
