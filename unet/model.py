"""U-Net builder: plain or MobileNetV2 encoder, dilated bottleneck, 3-class softmax head.

Only ``keras.layers`` are used, so the model builds under any Keras backend.
Input: float32 [batch, H, W, C] (H, W multiples of 2**depth; C from the config's
normalisation). Output: float32 [batch, H, W, 3] softmax over (body, border, background),
then with ``distance_head`` a fourth channel: the sigmoid distance map (unet.config.DISTANCE).
"""

import keras
from keras import layers

from unet.config import CLASSES, UNetConfig

# MobileNetV2 layers whose outputs feed the decoder, at strides 2, 4, 8, 16; the
# encoder output ('out_relu') is at stride 32.
MOBILENETV2_SKIPS = ("block_1_expand_relu", "block_3_expand_relu", "block_6_expand_relu", "block_13_expand_relu")


def conv_block(x, filters, config, name, dilation=1):
    """Two 3x3 convolutions, each followed by batch norm (optional) and ReLU."""
    for k in (1, 2):
        x = layers.Conv2D(filters, 3, padding="same", dilation_rate=dilation, use_bias=not config.batch_norm,
                          kernel_initializer="he_normal", name=f"{name}_conv{k}")(x)
        if config.batch_norm:
            x = layers.BatchNormalization(name=f"{name}_bn{k}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{k}")(x)
    return x


def dilated_bottleneck(x, filters, config):
    """Sum of parallel 3x3 convolutions at several dilation rates (wider context)."""
    x = conv_block(x, filters, config, "bottleneck")
    if config.dropout > 0:
        x = layers.SpatialDropout2D(config.dropout, name="bottleneck_dropout")(x)
    if len(config.bottleneck_dilations) > 1 or config.bottleneck_dilations[:1] not in ((), (1,)):
        branches = []
        for rate in config.bottleneck_dilations:
            branch = layers.Conv2D(filters, 3, padding="same", dilation_rate=int(rate), use_bias=False,
                                   kernel_initializer="he_normal", name=f"bottleneck_dil{rate}")(x)
            branches.append(branch)
        merged = layers.Add(name="bottleneck_dil_sum")(branches) if len(branches) > 1 else branches[0]
        if config.batch_norm:
            merged = layers.BatchNormalization(name="bottleneck_dil_bn")(merged)
        x = layers.Activation("relu", name="bottleneck_dil_relu")(merged)
    return x


def plain_encoder(inputs, config):
    """Returns (skips [depth] from stride 1 to 2**(depth-1), bottleneck input at stride 2**depth)."""
    filters = config.level_filters()
    skips, x = [], inputs
    for level in range(config.depth):
        x = conv_block(x, filters[level], config, f"enc{level}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"pool{level}")(x)
    return skips, x


def mobilenetv2_encoder(inputs, config):
    """MobileNetV2 encoder (torch-compatible build, ImageNet weights from a converted
    torchvision checkpoint, see unet/pretrained.py) with a full-resolution skip."""
    from preprocessing.mobilenetv2 import build_mobilenetv2_backbone, imagenet_normalization, load_encoder_weights

    backbone = build_mobilenetv2_backbone()
    if config.encoder_weights:
        load_encoder_weights(backbone, config.encoder_weights)
    x = inputs
    if config.input_channels != 3:
        x = layers.Conv2D(3, 1, name="to_rgb")(x)
    # The torchvision weights expect ImageNet-normalised RGB: (x - mean) / std from [0, 1].
    x = imagenet_normalization(name="to_imagenet_stats")(x)
    encoder = keras.Model(backbone.inputs, [backbone.get_layer(n).output for n in MOBILENETV2_SKIPS]
                          + [backbone.get_layer("out_relu").output], name="mobilenetv2")
    features = encoder(x)
    full = conv_block(inputs, config.base_filters, config, "enc_full")
    return [full] + list(features[:-1]), features[-1]


def build_unet(config=None):
    """Build the (uncompiled) U-Net described by ``config``."""
    config = config or UNetConfig()
    inputs = keras.Input((None, None, config.input_channels), name="image")
    if config.encoder == "plain":
        skips, x = plain_encoder(inputs, config)
    else:
        skips, x = mobilenetv2_encoder(inputs, config)
    filters = config.level_filters()
    x = dilated_bottleneck(x, filters[config.depth], config)
    for level in reversed(range(config.depth)):
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"up{level}")(x)
        x = layers.Concatenate(name=f"concat{level}")([x, skips[level]])
        x = conv_block(x, filters[level], config, f"dec{level}")
    outputs = layers.Conv2D(len(CLASSES), 1, activation="softmax", dtype="float32", name="classes")(x)
    if config.distance_head:
        # one tensor out, not two: tiling, TTA and the exported graph treat it as more channels
        distance = layers.Conv2D(1, 1, activation="sigmoid", dtype="float32", name="distance")(x)
        outputs = layers.Concatenate(dtype="float32", name="maps")([outputs, distance])
    return keras.Model(inputs, outputs, name="unet")
