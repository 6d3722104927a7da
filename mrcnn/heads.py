"""Box/class head and mask head, applied to every RoI's pooled features."""

import keras
from keras import ops

from mrcnn.backend_ops import static_shapes


@keras.saving.register_keras_serializable(package="mrcnn")
class BoxHead(keras.layers.Layer):
    """Two fully connected layers, then class logits and class-specific box deltas.

    Input shape: [batch, rois, pool, pool, channels].

    Output: ``(logits [batch, rois, classes], probs [batch, rois, classes],
    deltas [batch, rois, classes, (dy, dx, dh, dw)])``, float32 also when the layers compute
    in bfloat16.

    ``suffix`` ends every sub-layer's name: '' for the single (or first cascade) head, whose
    names the shipped weights carry; '_stage2', '_stage3' for the other Cascade R-CNN stages.
    """

    def __init__(self, num_classes: int, fc_size: int = 1024, suffix: str = "", **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.fc_size = int(fc_size)
        self.suffix = str(suffix)
        self.fc1 = keras.layers.Dense(fc_size, activation="relu", name=f"mrcnn_box_fc1{suffix}")
        self.fc2 = keras.layers.Dense(fc_size, activation="relu", name=f"mrcnn_box_fc2{suffix}")
        self.class_logits = keras.layers.Dense(num_classes, name=f"mrcnn_class_logits{suffix}")
        self.bbox = keras.layers.Dense(num_classes * 4, name=f"mrcnn_bbox_fc{suffix}",
                                       kernel_initializer=keras.initializers.RandomNormal(stddev=0.001))

    def call(self, pooled):
        shape = ops.shape(pooled)
        size = pooled.shape[2] * pooled.shape[3] * pooled.shape[4]
        x = ops.reshape(pooled, (shape[0] * shape[1], size))
        x = self.fc2(self.fc1(x))
        # float32 out whatever the compute dtype: scores and box decoding need it
        logits = ops.cast(ops.reshape(self.class_logits(x), (shape[0], shape[1], self.num_classes)), "float32")
        deltas = ops.cast(ops.reshape(self.bbox(x), (shape[0], shape[1], self.num_classes, 4)), "float32")
        return logits, ops.softmax(logits, axis=-1), deltas

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "fc_size": self.fc_size,
                "suffix": self.suffix}


@keras.saving.register_keras_serializable(package="mrcnn")
class MaskHead(keras.layers.Layer):
    """3x3 convs, then 2x transposed convs up to the mask size, then one logit map per class.

    Input shape: [batch, rois, pool, pool, channels].

    Output shape: [batch, rois, pool * 2**upsamplings, same, classes] (logits, float32 also
    when the layers compute in bfloat16).
    """

    def __init__(self, num_classes, channels=256, convs=4, upsamplings=1, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.channels = int(channels)
        self.convs = int(convs)
        self.upsamplings = int(upsamplings)
        self.conv_layers = [keras.layers.Conv2D(channels, 3, padding="same", activation="relu",
                                                name=f"mrcnn_mask_conv{i + 1}") for i in range(convs)]
        self.deconv_layers = [keras.layers.Conv2DTranspose(channels, 2, strides=2, activation="relu",
                                                           name=f"mrcnn_mask_deconv{i + 1}")
                              for i in range(upsamplings)]
        self.out = keras.layers.Conv2D(num_classes, 1, name="mrcnn_mask")

    def call(self, pooled):
        shape = ops.shape(pooled)
        pool, channels = pooled.shape[2], pooled.shape[4]
        x = ops.reshape(pooled, (shape[0] * shape[1], pool, pool, channels))
        for layer in self.conv_layers:
            x = layer(x)
        for layer in self.deconv_layers:
            x = upsample_as_matmul(layer, x) if static_shapes() else layer(x)
        x = ops.cast(self.out(x), "float32")
        size = pool * 2 ** self.upsamplings
        return ops.reshape(x, (shape[0], shape[1], size, size, self.num_classes))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "channels": self.channels,
                "convs": self.convs, "upsamplings": self.upsamplings}


def upsample_as_matmul(layer, x):
    """``layer(x)`` for a 2x2, stride-2 ``Conv2DTranspose``, as one matrix product.

    Each input pixel becomes a 2x2 block: out[2i + a, 2j + b] = kernel[a, b] @ x[i, j] + bias.
    Same numbers and weights as the layer; used under JAX, where XLA on a CPU takes ~50 times
    longer for the transposed conv's weight gradient than for this product's.

    Args:
        x: [n, h, w, in].

    Returns:
        [n, 2h, 2w, out].
    """
    if not layer.built:
        layer.build(x.shape)
    kernel = ops.cast(layer.kernel, x.dtype)  # [2, 2, out, in]
    n, h, w = ops.shape(x)[0], x.shape[1], x.shape[2]
    y = ops.einsum("nijc,aboc->niajbo", x, kernel)
    y = ops.reshape(y, (n, 2 * h, 2 * w, kernel.shape[2])) + ops.cast(layer.bias, x.dtype)
    return layer.activation(y)
