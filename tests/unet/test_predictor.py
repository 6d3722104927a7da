"""UNetPredictor: the freeing forward pass gives Keras' own output bit for bit; its memory estimate."""

import keras
import numpy as np
import pytest

from unet.config import UNetConfig
from unet.model import build_unet
from unet.predictor import UNetPredictor, run_freeing


@pytest.fixture(scope="module")
def tiny():
    config = UNetConfig(depth=2, base_filters=4, max_filters=8, bottleneck_dilations=(1, 2), crop_size=32,
                        dropout=0.5)
    return UNetPredictor(build_unet(config), config)


def test_freeing_forward_pass_equals_keras_call_exactly(tiny):
    batch = np.random.default_rng(0).random((2, 48, 64, 3)).astype(np.float32)
    expected = keras.ops.convert_to_numpy(tiny.model(batch, training=False))
    eager = UNetPredictor(tiny.model, tiny.config, compiled=False)
    got = eager.predict_batch(batch)
    assert got.dtype == np.float32 and got.shape == (2, 48, 64, 3)
    np.testing.assert_array_equal(got, expected)  # dropout off, batch norm in inference mode
    np.testing.assert_array_equal(eager.predict_batch(batch), got)  # deterministic


def test_compiled_forward_pass_matches_and_keeps_a_bounded_set_of_graphs(monkeypatch):
    import unet.predictor as predictor_module

    config = UNetConfig(depth=2, base_filters=4, max_filters=8, bottleneck_dilations=(1, 2), crop_size=32)
    compiled = UNetPredictor(build_unet(config), config)
    monkeypatch.setattr(predictor_module, "COMPILED_SHAPES", 2)
    rng = np.random.default_rng(4)
    for shape in [(1, 32, 32, 3), (2, 32, 48, 3), (1, 32, 32, 3), (1, 64, 32, 3), (2, 32, 48, 3), (1, 64, 32, 3),
                  (1, 32, 32, 3), (1, 16, 16, 3)]:
        batch = rng.random(shape).astype(np.float32)
        expected = keras.ops.convert_to_numpy(compiled.model(batch, training=False))
        got = compiled.predict_batch(batch)
        assert got.dtype == np.float32 and got.shape == shape
        np.testing.assert_allclose(got, expected, atol=1e-5)
    # each traced on its second use; (1, 32, 32) was traced first, so dropped for (1, 64, 32), and
    # starts over as a first sight, as the new (1, 16, 16) does
    assert list(compiled._graphs) == [(2, 32, 48, 3), (1, 64, 32, 3)]
    assert compiled._seen_once == {(1, 32, 32, 3), (1, 16, 16, 3)}


def test_nested_functional_models_run_the_same_way():
    inner_in = keras.Input((None, None, 3))
    inner = keras.Model(inner_in, [keras.layers.Conv2D(4, 3, padding="same")(inner_in),
                                   keras.layers.AveragePooling2D(2)(inner_in)])
    outer_in = keras.Input((None, None, 3))
    a, b = inner(outer_in)
    b = keras.layers.UpSampling2D(2)(b)
    merged = keras.layers.Concatenate()([a, b, outer_in])
    out = keras.layers.BatchNormalization()(keras.layers.Dropout(0.5)(merged))
    model = keras.Model(outer_in, {"maps": out, "pooled": b})
    x = np.random.default_rng(1).random((1, 16, 24, 3)).astype(np.float32)
    expected = model(x, training=False)
    got = run_freeing(model, x)
    assert set(got) == {"maps", "pooled"}
    for key in got:
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(got[key]), keras.ops.convert_to_numpy(expected[key]))


def test_memory_estimate_follows_the_config():
    small = UNetPredictor(None, UNetConfig(base_filters=16, max_filters=64))
    shipped = UNetPredictor(None, UNetConfig(base_filters=32, max_filters=192))
    assert 1000 < shipped.activation_bytes_per_pixel < 1500  # measured ~1.1 KB (bench/bench_memory.py)
    assert small.activation_bytes_per_pixel < shipped.activation_bytes_per_pixel


def test_bfloat16_predictor_is_close_to_float32_and_leaves_the_global_policy(tmp_path):
    from preprocessing.errors import NucleiError

    config = UNetConfig(depth=2, base_filters=4, max_filters=8, bottleneck_dilations=(1,), crop_size=32)
    keras.utils.set_random_seed(5)
    build_unet(config).save_weights(tmp_path / "t.weights.h5")
    config.save(tmp_path / "t.json")
    single = UNetPredictor.from_path(tmp_path / "t.weights.h5")
    half = UNetPredictor.from_path(tmp_path / "t.weights.h5", precision="bfloat16")
    assert keras.config.dtype_policy().name == "float32"  # restored after the bfloat16 build
    assert half.model.get_layer("dec0_conv1").compute_dtype == "bfloat16"
    assert single.model.get_layer("dec0_conv1").compute_dtype == "float32"
    batch = np.random.default_rng(6).random((1, 32, 64, 3)).astype(np.float32)
    a, b = single.predict_batch(batch), half.predict_batch(batch)
    assert b.dtype == np.float32 and b.shape == a.shape
    assert 0 < np.abs(a - b).max() < 0.05  # bfloat16 differs, but only in the low bits
    np.testing.assert_allclose(b.sum(axis=-1), 1.0, atol=1e-5)  # the softmax ran in float32
    with pytest.raises(NucleiError, match="precision"):
        UNetPredictor.from_path(tmp_path / "t.weights.h5", precision="float16")
