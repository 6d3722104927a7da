"""Backbones (ResNet50, ResNet101, MobileNetV2, a tiny test net) with a Feature Pyramid.

``build_backbone(config)`` returns a functional ``keras.Model``: image
``[batch, H, W, 3]`` (H, W multiples of 64) -> ``[P2, P3, P4, P5, P6]``, each
``[batch, H / s, W / s, TOP_DOWN_PYRAMID_SIZE]`` at strides 4, 8, 16, 32, 64.

Backbone layers keep ``keras.applications`` names, so weights saved from those
models load by name (:mod:`mrcnn.weights`). Nothing here downloads weights
(``weights=None`` always). FPN layers are named ``fpn_*`` (Matterport's names).

MobileNetV2 at alpha 1.0 is always :func:`preprocessing.mobilenetv2.build_mobilenetv2_backbone`
(torchvision padding and BN epsilon, same layer names plus ``*_pad`` layers) built on
the input tensor, so its layers stay flat in the returned model (the training stages
freeze them by name); with ``config.BACKBONE_WEIGHTS`` set, the named-layer ImageNet
file is loaded into it right after building. (Keras's own MobileNetV2 pads stride-2
layers asymmetrically: the same weights in it would see the image shifted by a few pixels.)
"""

import re

import keras

from preprocessing.errors import NucleiError

# Feature layers giving C2..C5 at strides 4, 8, 16, 32.
FEATURE_LAYERS = {
    "resnet50": ("conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out"),
    "resnet101": ("conv2_block3_out", "conv3_block4_out", "conv4_block23_out", "conv5_block3_out"),
    "mobilenetv2": ("block_2_add", "block_5_add", "block_12_add", "block_16_project_BN"),
    "tiny": ("tiny_c2", "tiny_c3", "tiny_c4", "tiny_c5"),
}


def _application(config, inputs):
    """The classification network without its top, built on ``inputs`` [batch, H, W, 3].

    The architecture depends on BACKBONE and BACKBONE_ALPHA only, never on whether
    BACKBONE_WEIGHTS is set: a trained model is rebuilt without the ImageNet file and
    must get exactly the layers (and padding) it was trained with.
    """
    name = config.BACKBONE
    if name == "mobilenetv2" and config.BACKBONE_ALPHA == 1.0:
        return _torch_layout_mobilenetv2(config, inputs)
    if name == "resnet50":
        return keras.applications.ResNet50(include_top=False, weights=None, input_tensor=inputs)
    if name == "resnet101":
        return keras.applications.ResNet101(include_top=False, weights=None, input_tensor=inputs)
    if name == "mobilenetv2":
        return keras.applications.MobileNetV2(include_top=False, weights=None, input_tensor=inputs,
                                              alpha=config.BACKBONE_ALPHA)
    raise NucleiError(f"unknown backbone {name!r}")


def _torch_layout_mobilenetv2(config, inputs):
    """Torch-compatible MobileNetV2 (alpha 1.0) on ``inputs``, with ``config.BACKBONE_WEIGHTS``
    loaded when set.

    Returns the sub-model ``inputs [batch, H, W, 3] -> out_relu [batch, H/32, W/32, 1280]``
    made of the backbone layers only (the weights are loaded into exactly those).
    """
    from preprocessing.mobilenetv2 import build_mobilenetv2_backbone, load_encoder_weights

    app = build_mobilenetv2_backbone(input_tensor=inputs, name="mobilenetv2_pretrained")
    if config.BACKBONE_WEIGHTS:
        return load_encoder_weights(app, config.BACKBONE_WEIGHTS)
    return app


def _tiny(inputs):
    """Plain conv net (no batch norm) for tests: C2..C5 with 16..64 channels."""
    x = inputs
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="tiny_stem")(x)
    outputs = []
    for level, channels in zip((2, 3, 4, 5), (24, 32, 48, 64)):
        x = keras.layers.Conv2D(channels, 3, strides=2, padding="same", activation="relu",
                                name=f"tiny_c{level}_down")(x)
        x = keras.layers.Conv2D(channels, 3, padding="same", activation="relu", name=f"tiny_c{level}")(x)
        outputs.append(x)
    return outputs


def build_backbone(config):
    """The backbone + FPN as one functional model named 'backbone'."""
    inputs = keras.Input(shape=(None, None, config.IMAGE_CHANNEL_COUNT), name="input_image")
    if config.BACKBONE == "tiny":
        c2, c3, c4, c5 = _tiny(inputs)
    else:
        app = _application(config, inputs)
        c2, c3, c4, c5 = (app.get_layer(name).output for name in FEATURE_LAYERS[config.BACKBONE])
    size = config.TOP_DOWN_PYRAMID_SIZE
    p5 = keras.layers.Conv2D(size, 1, name="fpn_c5p5")(c5)
    p4 = keras.layers.Add(name="fpn_p4add")([
        keras.layers.UpSampling2D(2, name="fpn_p5upsampled")(p5), keras.layers.Conv2D(size, 1, name="fpn_c4p4")(c4)])
    p3 = keras.layers.Add(name="fpn_p3add")([
        keras.layers.UpSampling2D(2, name="fpn_p4upsampled")(p4), keras.layers.Conv2D(size, 1, name="fpn_c3p3")(c3)])
    p2 = keras.layers.Add(name="fpn_p2add")([
        keras.layers.UpSampling2D(2, name="fpn_p3upsampled")(p3), keras.layers.Conv2D(size, 1, name="fpn_c2p2")(c2)])
    p2 = keras.layers.Conv2D(size, 3, padding="same", name="fpn_p2")(p2)
    p3 = keras.layers.Conv2D(size, 3, padding="same", name="fpn_p3")(p3)
    p4 = keras.layers.Conv2D(size, 3, padding="same", name="fpn_p4")(p4)
    p5 = keras.layers.Conv2D(size, 3, padding="same", name="fpn_p5")(p5)
    p6 = keras.layers.MaxPooling2D(1, strides=2, name="fpn_p6")(p5)
    return keras.Model(inputs, [p2, p3, p4, p5, p6], name="backbone")


def layer_stage(backbone_name, layer_name):
    """ResNet-style stage (1..5) of a backbone layer, or None for FPN / head layers.

    Used by the training stages '3+', '4+', '5+' (stage >= n is trained).
    """
    if layer_name.startswith(("fpn_", "rpn_", "mrcnn_")) or layer_name == "input_image":
        return None
    if backbone_name in ("resnet50", "resnet101"):
        match = re.match(r"conv(\d)_", layer_name)
        return int(match.group(1)) if match else 1
    if backbone_name == "mobilenetv2":
        match = re.match(r"block_(\d+)_", layer_name)
        if match:
            block = int(match.group(1))
            return 2 if block <= 2 else 3 if block <= 5 else 4 if block <= 12 else 5
        if layer_name.startswith(("Conv_1", "out_relu")):
            return 5
        return 1  # Conv1, bn_Conv1, expanded_conv_*
    if backbone_name == "tiny":
        match = re.match(r"tiny_c(\d)", layer_name)
        return int(match.group(1)) if match else 1
    return 1
