"""preprocessing.mobilenetv2: the torchvision-compatible MobileNetV2 build and the named weights file."""

import warnings

import numpy as np
import pytest

from preprocessing.errors import NucleiError
from unet.model import MOBILENETV2_SKIPS
from preprocessing.mobilenetv2 import (IMAGENET_MEAN, IMAGENET_STD, build_mobilenetv2_backbone, imagenet_normalization,
                             load_encoder_weights, read_layer_weights, save_layer_weights)


@pytest.fixture(scope="module")
def backbones():
    """(torch-compatible build, stock keras.applications.MobileNetV2), both without top."""
    import keras

    stock = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(None, None, 3))
    return build_mobilenetv2_backbone(), stock


def _weighted(model):
    return {layer.name: [tuple(v.shape) for v in layer.weights] for layer in model.layers if layer.weights}


def test_same_weighted_layers_and_feature_shapes_as_keras_applications(backbones):
    import keras

    ours, stock = backbones
    assert _weighted(ours) == _weighted(stock)
    names = list(MOBILENETV2_SKIPS) + ["out_relu"]
    images = np.zeros((1, 64, 96, 3), np.float32)
    shapes = []
    for model in backbones:
        features = keras.Model(model.inputs, [model.get_layer(n).output for n in names])
        shapes.append([f.shape for f in features.predict(images, verbose=0)])
    assert shapes[0] == shapes[1]
    assert shapes[0][-1] == (1, 2, 3, 1280) and shapes[0][0] == (1, 32, 48, 96)


def test_torch_padding_and_epsilon(backbones):
    ours, _ = backbones
    assert ours.get_layer("Conv1_pad").padding == ((1, 1), (1, 1)) and ours.get_layer("Conv1").padding == "valid"
    assert ours.get_layer("block_13_pad").padding == ((1, 1), (1, 1))
    assert ours.get_layer("block_2_depthwise").padding == "same"
    assert {layer.epsilon for layer in ours.layers if hasattr(layer, "epsilon")} == {1e-5}


def test_imagenet_normalization():
    x = np.array([[[[0.0, 0.5, 1.0]]]], np.float32)
    want = (x - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(np.asarray(imagenet_normalization()(x)), want, rtol=1e-6)


def test_save_then_load_by_name(backbones, tmp_path):
    ours, stock = backbones
    rng = np.random.default_rng(0)
    for variable in ours.weights:
        variable.assign(rng.normal(size=variable.shape).astype("float32"))
    path = tmp_path / "named.weights.h5"
    save_layer_weights(ours, path, {"padding": "torch"})
    layers, attrs = read_layer_weights(path)
    assert attrs["padding"] == "torch" and set(layers) == set(_weighted(ours))
    with warnings.catch_warnings(record=True) as caught:  # stock padding/epsilon: loads, but says so
        warnings.simplefilter("always")
        load_encoder_weights(stock, path)
    assert any("build_mobilenetv2_backbone" in str(w.message) for w in caught)
    np.testing.assert_array_equal(stock.get_layer("block_7_project").get_weights()[0],
                                  ours.get_layer("block_7_project").get_weights()[0])


def test_load_errors_name_the_file(backbones, tmp_path):
    import keras

    ours, _ = backbones
    with pytest.raises(NucleiError, match="not found"):
        load_encoder_weights(ours, tmp_path / "missing.weights.h5")
    keras_file = tmp_path / "keras.weights.h5"
    small = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="Conv1")])
    small.save_weights(keras_file)
    with pytest.raises(NucleiError, match="not a named-layer weights file"):
        load_encoder_weights(ours, keras_file)
    misfit = tmp_path / "misfit.weights.h5"
    save_layer_weights(small, misfit)
    with pytest.raises(NucleiError, match=r"misfit.weights.h5.*Conv1/kernel has shape \(4, 2\).*bn_Conv1"):
        load_encoder_weights(ours, misfit)
