"""Region Proposal Network: anchors in the graph and the shared RPN head.

The head runs one 3x3 conv + two 1x1 convs over every pyramid level P2..P6 and
concatenates the results in anchor order (:mod:`mrcnn.anchors`): levels, rows,
columns, ratios.
"""

import keras
import numpy as np
from keras import ops


def graph_anchors(height, width, scales, ratios, strides, anchor_stride=1):
    """Anchors for an image of (height, width) (ints or scalar tensors) as ``keras.ops``.

    Returns float32 [A, (y1, x1, y2, x2)], identical to :func:`mrcnn.anchors.pyramid_anchors`.
    """
    ratios = np.asarray(ratios, np.float64)
    out = []
    for scale, stride in zip(scales, strides):
        heights = ops.convert_to_tensor((scale / np.sqrt(ratios)).astype(np.float32))
        widths = ops.convert_to_tensor((scale * np.sqrt(ratios)).astype(np.float32))
        rows = (height + stride - 1) // stride
        cols = (width + stride - 1) // stride
        cy = (ops.cast(ops.arange(0, rows, anchor_stride), "float32") + 0.5) * stride
        cx = (ops.cast(ops.arange(0, cols, anchor_stride), "float32") + 0.5) * stride
        cy, cx = ops.meshgrid(cy, cx, indexing="ij")
        cy = cy[:, :, None]
        cx = cx[:, :, None]
        boxes = ops.stack([cy - heights / 2, cx - widths / 2, cy + heights / 2, cx + widths / 2], axis=-1)
        out.append(ops.reshape(boxes, (-1, 4)))
    return ops.concatenate(out, axis=0)


@keras.saving.register_keras_serializable(package="mrcnn")
class RpnHead(keras.layers.Layer):
    """Shared RPN head over the pyramid.

    Input: list of feature maps ``[P2..P6]``, each [batch, h_l, w_l, channels].

    Output: ``(logits, probs, deltas)``:
        logits: [batch, anchors, 2] (background, object),
        probs: [batch, anchors, 2] softmax of the logits,
        deltas: [batch, anchors, (dy, dx, dh, dw)] scaled by RPN_BBOX_STD_DEV;
    all float32 also when the layers compute in bfloat16.
    """

    def __init__(self, anchors_per_location, channels=512, anchor_stride=1, **kwargs):
        super().__init__(**kwargs)
        self.anchors_per_location = anchors_per_location
        self.channels = channels
        self.anchor_stride = anchor_stride
        self.shared = keras.layers.Conv2D(channels, 3, strides=anchor_stride, padding="same", activation="relu",
                                          name="rpn_conv_shared")
        self.class_conv = keras.layers.Conv2D(2 * anchors_per_location, 1, name="rpn_class_raw")
        self.bbox_conv = keras.layers.Conv2D(4 * anchors_per_location, 1, name="rpn_bbox_pred",
                                             kernel_initializer=keras.initializers.RandomNormal(stddev=0.01))

    def call(self, features):
        logits, deltas = [], []
        for feature in features:
            x = self.shared(feature)
            batch = ops.shape(x)[0]
            logits.append(ops.reshape(self.class_conv(x), (batch, -1, 2)))
            deltas.append(ops.reshape(self.bbox_conv(x), (batch, -1, 4)))
        # float32 out whatever the compute dtype: proposals are ranked by these scores
        logits = ops.cast(ops.concatenate(logits, axis=1), "float32")
        return logits, ops.softmax(logits, axis=-1), ops.cast(ops.concatenate(deltas, axis=1), "float32")

    def get_config(self):
        return {**super().get_config(), "anchors_per_location": self.anchors_per_location,
                "channels": self.channels, "anchor_stride": self.anchor_stride}
