"""Pyramid RoIAlign: pool a fixed-size feature patch for each box from its FPN level.

Each box is assigned the level ``k = k0 + log2(sqrt(h w) / canonical)`` clipped to
P2..P5 (Feature Pyramid Networks, eq. 1), then sampled with bilinear interpolation at
the centre of each of ``pool_size x pool_size`` bins (:func:`mrcnn.backend_ops.crop_and_resize`).
Under JAX (static shapes) every box is pooled from every level, as matrix products
(:func:`mrcnn.backend_ops.crop_and_resize_per_image`), and its own level kept.
"""

import keras
from keras import ops

from mrcnn import backend_ops, graph_boxes


def roi_levels(boxes, canonical_size=224, canonical_level=4, min_level=2, max_level=5):
    """boxes [..., 4] in pixels -> int32 [...] pyramid level of each box."""
    h = ops.maximum(boxes[..., 2] - boxes[..., 0], 1e-3)
    w = ops.maximum(boxes[..., 3] - boxes[..., 1], 1e-3)
    level = canonical_level + ops.log2(ops.sqrt(h * w) / float(canonical_size))
    return ops.clip(ops.cast(ops.round(level), "int32"), min_level, max_level)


def roi_align_level(feature, boxes, box_indices, stride, pool_size):
    """Pool boxes from one feature map.

    Args:
        feature: [B, h, w, C] feature map with ``stride`` pixels per cell.
        boxes: [N, 4] boxes in image pixels.
        box_indices: int32 [N] batch index of each box.
        pool_size: output side.

    Returns:
        [N, pool_size, pool_size, C].
    """
    shape = ops.shape(feature)
    boxes_norm = graph_boxes.crop_boxes_norm(boxes / float(stride), shape[1], shape[2], pool_size)
    return backend_ops.crop_and_resize(feature, boxes_norm, box_indices, (pool_size, pool_size))


@keras.saving.register_keras_serializable(package="mrcnn")
class PyramidRoIAlign(keras.layers.Layer):
    """Inputs: ``[boxes, P2, P3, P4, P5]``.

    Input shape:
        boxes: [batch, num_boxes, (y1, x1, y2, x2)] in pixels of the (padded) image.
        P2..P5: [batch, h_l, w_l, channels] at strides 4, 8, 16, 32.

    Output shape:
        [batch, num_boxes, pool_size, pool_size, channels].
    """

    def __init__(self, pool_size, canonical_size=224, canonical_level=4, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = int(pool_size)
        self.canonical_size = canonical_size
        self.canonical_level = canonical_level

    def call(self, inputs):
        boxes, *features = inputs
        boxes = ops.convert_to_tensor(boxes)
        batch, num = ops.shape(boxes)[0], ops.shape(boxes)[1]
        flat = ops.reshape(boxes, (-1, 4))
        batch_index = ops.repeat(ops.arange(batch, dtype="int32"), num)
        levels = roi_levels(flat, self.canonical_size, self.canonical_level, 2, 1 + len(features))
        channels = features[0].shape[-1]
        if backend_ops.static_shapes():  # XLA: pool every box from every level, keep its own
            boxes = ops.stop_gradient(boxes)
            levels = ops.reshape(levels, (batch, num))[:, :, None, None, None]
            pooled = 0.0
            for i, feature in enumerate(features):
                stride = 2 ** (i + 2)
                norm = graph_boxes.crop_boxes_norm(boxes / float(stride), feature.shape[1], feature.shape[2],
                                                   self.pool_size)
                level_pooled = backend_ops.crop_and_resize_per_image(feature, norm, (self.pool_size, self.pool_size))
                pooled = pooled + ops.where(ops.equal(levels, i + 2), level_pooled, 0.0)
            return pooled
        pooled, order = [], []
        for i, feature in enumerate(features):
            level = i + 2
            ix = ops.where(ops.equal(levels, level))[0]
            level_boxes = ops.stop_gradient(ops.take(flat, ix, axis=0))
            level_index = ops.take(batch_index, ix)
            pooled.append(roi_align_level(feature, level_boxes, level_index, 2 ** level, self.pool_size))
            order.append(ix)
        pooled = ops.concatenate(pooled, axis=0)
        order = ops.concatenate(order, axis=0)
        pooled = ops.take(pooled, ops.argsort(order), axis=0)  # back to box order
        return ops.reshape(pooled, (batch, num, self.pool_size, self.pool_size, channels))

    def compute_output_shape(self, input_shapes):
        boxes_shape = input_shapes[0]
        return (boxes_shape[0], boxes_shape[1], self.pool_size, self.pool_size, input_shapes[1][-1])

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "canonical_size": self.canonical_size,
                "canonical_level": self.canonical_level}
