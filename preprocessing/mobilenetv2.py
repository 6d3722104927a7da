"""Pretrained MobileNetV2 encoder: a torchvision-compatible Keras build and its weights file.

``build_mobilenetv2_backbone()`` is ``keras.applications.MobileNetV2(include_top=False)``
with the two details that make torchvision's ImageNet weights reproduce torchvision's
outputs (to ~1e-6): every stride-2 3x3 convolution pads one pixel on *all* sides
(``ZeroPadding2D(((1, 1), (1, 1)))`` then a "valid" convolution, as torch's ``padding=1``;
Keras's "same" pads only bottom/right on even sizes), and batch-norm epsilon 1e-5.
Layer names are those of ``keras.applications.MobileNetV2`` (plus ``Conv1_pad``), so
the U-Net skip layers ``block_1_expand_relu`` ... ``out_relu`` exist. Output shapes
are identical to the stock model's: [batch, H/32, W/32, 1280] for an input
[batch, H, W, 3] with H, W multiples of 32.

Input: float32 RGB normalised as torchvision expects, ``(x/255 - mean) / std`` with the
ImageNet ``IMAGENET_MEAN`` / ``IMAGENET_STD``; ``imagenet_normalization()`` is that
layer for inputs already in [0, 1] (it is *not* the [-1, 1] scaling that Keras's own
MobileNetV2 weights expect).

The weights file (``weights/mobilenetv2_imagenet.weights.h5``, written by
``python -m tools.convert_weights``) stores variables *by layer name*, unlike Keras 3's
``save_weights`` (which keys layers by auto-generated class names)::

    /                      attrs: format, plus provenance (source, sha256, license, ...)
    /layers/<layer name>   attrs: variables = [variable names in layer.weights order]
    /layers/<layer name>/<variable name>   float32 dataset of the variable's shape

so ``load_encoder_weights`` fits it into any model whose layers carry those names
(this build, or the stock ``keras.applications.MobileNetV2``).
"""

import warnings
from pathlib import Path

import numpy as np

from preprocessing.errors import NucleiError
from preprocessing.normalize import IMAGENET_MEAN, IMAGENET_STD  # noqa: F401  (the encoder's input statistics)

FORMAT = "nuclei-seg named layer weights v1"
TORCH_BN_EPSILON = 1e-5
# (expansion t, output channels c, repeats n, first stride s): MobileNetV2 with alpha 1.0.
MOBILENETV2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                      (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def imagenet_normalization(name="imagenet_normalization"):
    """Keras layer: RGB in [0, 1] -> (x - IMAGENET_MEAN) / IMAGENET_STD, shape unchanged."""
    from keras import layers

    return layers.Normalization(mean=list(IMAGENET_MEAN), variance=[s * s for s in IMAGENET_STD], name=name)


def _conv_bn_relu6(x, filters, kernel, stride, name, bn_name, relu_name, epsilon, momentum, depthwise=False):
    """Conv (torch padding: k//2 on every side) + BN + ReLU6 (relu_name None: no ReLU)."""
    from keras import layers

    if stride == 2:
        x = layers.ZeroPadding2D(((1, 1), (1, 1)), name=name.replace("depthwise", "pad")
                                 if depthwise else f"{name}_pad")(x)
        padding = "valid"
    else:
        padding = "same"  # stride 1, 3x3 or 1x1: same as torch's symmetric padding
    if depthwise:
        x = layers.DepthwiseConv2D(kernel, strides=stride, padding=padding, use_bias=False, name=name)(x)
    else:
        x = layers.Conv2D(filters, kernel, strides=stride, padding=padding, use_bias=False, name=name)(x)
    x = layers.BatchNormalization(epsilon=epsilon, momentum=momentum, name=bn_name)(x)
    if relu_name:
        x = layers.ReLU(6.0, name=relu_name)(x)
    return x


def _inverted_residual(x, in_channels, expansion, out_channels, stride, block_id, epsilon, momentum):
    """One MobileNetV2 block; names as keras.applications ('expanded_conv_' for block 0)."""
    from keras import layers

    inputs = x
    prefix = f"block_{block_id}_" if block_id else "expanded_conv_"
    if block_id:
        x = _conv_bn_relu6(x, in_channels * expansion, 1, 1, prefix + "expand", prefix + "expand_BN",
                           prefix + "expand_relu", epsilon, momentum)
    x = _conv_bn_relu6(x, None, 3, stride, prefix + "depthwise", prefix + "depthwise_BN",
                       prefix + "depthwise_relu", epsilon, momentum, depthwise=True)
    x = _conv_bn_relu6(x, out_channels, 1, 1, prefix + "project", prefix + "project_BN", None, epsilon, momentum)
    if stride == 1 and in_channels == out_channels:
        x = layers.Add(name=prefix + "add")([inputs, x])
    return x


def build_mobilenetv2_backbone(input_shape=(None, None, 3), epsilon=TORCH_BN_EPSILON, momentum=0.99,
                               name="mobilenetv2_torch", input_tensor=None):
    """Torchvision-compatible MobileNetV2 without the classifier (see the module docstring).

    Input [batch, H, W, 3] ImageNet-normalised RGB; output 'out_relu' [batch, H/32, W/32, 1280].
    ``momentum`` only affects training (Keras convention; torch's momentum 0.1 is Keras 0.9).
    ``input_tensor``: a symbolic tensor (e.g. ``keras.Input``) [batch, H, W, 3] to build on
    instead of a new input (``input_shape`` is then ignored), as ``keras.applications``'
    ``input_tensor``: the layers are applied to it directly, so a model built from that tensor
    holds them flat (by name), not as one nested model.
    """
    import keras

    if input_tensor is None:
        inputs = keras.Input(input_shape, name="input_layer")
    else:
        if len(input_tensor.shape) != 4 or input_tensor.shape[-1] != 3:
            raise NucleiError(f"MobileNetV2 input_tensor must be [batch, H, W, 3], got {tuple(input_tensor.shape)}")
        inputs = input_tensor
    x = _conv_bn_relu6(inputs, 32, 3, 2, "Conv1", "bn_Conv1", "Conv1_relu", epsilon, momentum)
    channels, block_id = 32, 0
    for expansion, out_channels, repeats, first_stride in MOBILENETV2_STAGES:
        for repeat in range(repeats):
            stride = first_stride if repeat == 0 else 1
            x = _inverted_residual(x, channels, expansion, out_channels, stride, block_id, epsilon, momentum)
            channels, block_id = out_channels, block_id + 1
    x = _conv_bn_relu6(x, 1280, 1, 1, "Conv_1", "Conv_1_bn", "out_relu", epsilon, momentum)
    return keras.Model(inputs, x, name=name)


def _variable_name(variable):
    """'kernel', 'gamma', ... (Keras 3 variables may carry a 'layer/kernel' path)."""
    return variable.path.rsplit("/", 1)[-1] if hasattr(variable, "path") else variable.name.split(":")[0]


def save_layer_weights(model, path, attrs=None):
    """Write every weighted layer of ``model`` by name (layout in the module docstring).

    ``attrs``: provenance strings/numbers stored on the file's root.
    """
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.attrs["format"] = FORMAT
        for key, value in (attrs or {}).items():
            f.attrs[key] = value
        root = f.create_group("layers")
        for layer in model.layers:
            if not layer.weights:
                continue
            group = root.create_group(layer.name)
            names = [_variable_name(v) for v in layer.weights]
            assert len(set(names)) == len(names), (layer.name, names)
            group.attrs["variables"] = names
            for variable_name, value in zip(names, layer.get_weights()):
                group.create_dataset(variable_name, data=np.asarray(value, dtype=np.float32))


def read_layer_weights(path):
    """{layer name: {variable name: array}} and the root attributes, from a named weights file."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise NucleiError("encoder weights file not found (see weights/README.md for how to make it)", path)
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT or "layers" not in f:
                raise NucleiError(f"not a named-layer weights file (format {FORMAT!r}, written by "
                                  "python -m tools.convert_weights); Keras save_weights files do not fit", path)
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
            layers = {name: {var: group[var][()] for var in group.attrs["variables"]}
                      for name, group in f["layers"].items()}
    except OSError as error:
        raise NucleiError(f"cannot read encoder weights: {error}", path) from None
    return layers, attrs


def _torch_compatible(model):
    """True where every BN uses epsilon 1e-5 and no stride-2 layer uses Keras's asymmetric padding."""
    from keras import layers

    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization) and abs(layer.epsilon - TORCH_BN_EPSILON) > 1e-9:
            return False
        if isinstance(layer, layers.ZeroPadding2D) and tuple(map(tuple, layer.padding)) != ((1, 1), (1, 1)):
            return False
        if isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D)) and layer.strides != (1, 1) \
                and layer.padding == "same":
            return False
    return True


def load_encoder_weights(backbone, path):
    """Set every weighted layer of ``backbone`` from the named weights file at ``path``.

    Layers are matched by name and variables by name; every weighted layer of the
    backbone must be in the file with the same shapes (extra layers in the file are
    ignored). Raises NucleiError naming the file and the first misfits otherwise.
    Warns when the backbone is not torch-compatible but the weights are torchvision's
    (stock keras.applications.MobileNetV2: features then differ slightly; see
    weights/README.md).
    """
    stored, attrs = read_layer_weights(path)
    problems, assignments = [], []
    for layer in backbone.layers:
        if not layer.weights:
            continue
        if layer.name not in stored:
            problems.append(f"layer {layer.name!r} missing")
            continue
        values = stored[layer.name]
        for variable in layer.weights:
            name = _variable_name(variable)
            if name not in values:
                problems.append(f"{layer.name}/{name} missing")
            elif tuple(values[name].shape) != tuple(variable.shape):
                problems.append(f"{layer.name}/{name} has shape {tuple(values[name].shape)}, "
                                f"the model needs {tuple(variable.shape)}")
            else:
                assignments.append((variable, values[name]))
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise NucleiError(f"encoder weights do not fit model {backbone.name!r}: {shown}", path)
    for variable, value in assignments:
        variable.assign(value.astype(variable.dtype))
    if attrs.get("padding") == "torch" and not _torch_compatible(backbone):
        warnings.warn(f"{path}: torchvision weights loaded into a model with Keras padding / BN epsilon; "
                      "use preprocessing.mobilenetv2.build_mobilenetv2_backbone() for torchvision's exact features",
                      stacklevel=2)
    return backbone
