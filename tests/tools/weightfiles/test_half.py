"""tools.half_weights: float16 storage, same float32 model after loading."""

import keras
import numpy as np
import pytest

from preprocessing.errors import NucleiError
from tools.weightfiles.half import halve_weights_file


def _model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(16, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization()(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


def test_halved_file_loads_into_the_float32_model(tmp_path):
    keras.utils.set_random_seed(0)
    model = _model()
    model.layers[2].moving_variance.assign(np.linspace(0.5, 2.0, 16).astype(np.float32))
    full = tmp_path / "m.weights.h5"
    model.save_weights(full)
    half = halve_weights_file(full, tmp_path / "h.weights.h5")
    assert half.stat().st_size < full.stat().st_size
    fresh = _model()
    fresh.load_weights(half)
    for before, after in zip(model.weights, fresh.weights):
        assert after.dtype == "float32"
        np.testing.assert_allclose(np.asarray(after), np.asarray(before), rtol=1e-3, atol=1e-4)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(fresh.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-2, atol=1e-2)


def test_model_only_drops_a_checkpoints_optimizer_state(tmp_path):
    import h5py

    keras.utils.set_random_seed(0)
    model = _model()
    model.compile(optimizer="adam", loss="mse")
    x = np.random.default_rng(0).normal(size=(4, 8, 8, 3)).astype(np.float32)
    model.fit(x, np.zeros((4, 8, 8, 2), np.float32), verbose=0)
    checkpoint = tmp_path / "last.weights.h5"
    model.save_weights(checkpoint)
    with h5py.File(checkpoint) as file:
        assert "optimizer" in file  # what a compiled model's checkpoint carries
    whole = halve_weights_file(checkpoint, tmp_path / "whole.weights.h5")
    slim = halve_weights_file(checkpoint, tmp_path / "slim.weights.h5", model_only=True)
    with h5py.File(slim) as file:
        assert "optimizer" not in file
    assert slim.stat().st_size < whole.stat().st_size
    fresh = _model()
    fresh.load_weights(slim)
    np.testing.assert_allclose(fresh.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-2, atol=1e-2)


def test_bad_input_is_named(tmp_path):
    with pytest.raises(NucleiError, match="not found"):
        halve_weights_file(tmp_path / "absent.weights.h5", tmp_path / "x.weights.h5")
    junk = tmp_path / "junk.weights.h5"
    junk.write_text("not hdf5")
    with pytest.raises(NucleiError, match="HDF5"):
        halve_weights_file(junk, tmp_path / "x.weights.h5")
    assert not (tmp_path / "x.weights.h5").exists()
