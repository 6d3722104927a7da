"""Pyramid RoIAlign: pool a fixed-size feature patch for each box from its FPN level.

Each box is assigned the level ``k = k0 + log2(sqrt(h w) / canonical)`` clipped to
P2..P5 (Feature Pyramid Networks, eq. 1), then sampled with bilinear interpolation at
the centre of each of ``pool_size x pool_size`` bins via ``tf.image.crop_and_resize``.
"""

import keras
import tensorflow as tf

from mrcnn import graph_boxes


def roi_levels(boxes, canonical_size=224, canonical_level=4, min_level=2, max_level=5):
    """boxes [..., 4] in pixels -> int32 [...] pyramid level of each box."""
    h = tf.maximum(boxes[..., 2] - boxes[..., 0], 1e-3)
    w = tf.maximum(boxes[..., 3] - boxes[..., 1], 1e-3)
    level = canonical_level + tf.math.log(tf.sqrt(h * w) / float(canonical_size)) / tf.math.log(2.0)
    return tf.clip_by_value(tf.cast(tf.round(level), tf.int32), min_level, max_level)


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
    shape = tf.shape(feature)
    boxes_norm = graph_boxes.crop_boxes_norm(boxes / float(stride), shape[1], shape[2], pool_size)
    return tf.image.crop_and_resize(feature, boxes_norm, box_indices, (pool_size, pool_size),
                                    method="bilinear", extrapolation_value=0.0)


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
        boxes = tf.convert_to_tensor(boxes)
        batch = tf.shape(boxes)[0]
        num = tf.shape(boxes)[1]
        flat = tf.reshape(boxes, [-1, 4])
        batch_index = tf.repeat(tf.range(batch, dtype=tf.int32), num)
        levels = roi_levels(flat, self.canonical_size, self.canonical_level, 2, 1 + len(features))
        pooled, order = [], []
        for i, feature in enumerate(features):
            level = i + 2
            ix = tf.where(tf.equal(levels, level))[:, 0]
            level_boxes = tf.stop_gradient(tf.gather(flat, ix))
            level_index = tf.stop_gradient(tf.gather(batch_index, ix))
            pooled.append(roi_align_level(feature, level_boxes, level_index, 2 ** level, self.pool_size))
            order.append(ix)
        pooled = tf.concat(pooled, axis=0)
        order = tf.concat(order, axis=0)
        pooled = tf.gather(pooled, tf.argsort(order))  # back to box order
        channels = features[0].shape[-1]
        return tf.reshape(pooled, [batch, num, self.pool_size, self.pool_size, channels])

    def compute_output_shape(self, input_shapes):
        boxes_shape = input_shapes[0]
        return (boxes_shape[0], boxes_shape[1], self.pool_size, self.pool_size, input_shapes[1][-1])

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "canonical_size": self.canonical_size,
                "canonical_level": self.canonical_level}
