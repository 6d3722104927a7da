"""tools.average_weights: the weighted mean of runs' weights, loadable as one model."""

import h5py
import keras
import numpy as np
import pytest

from preprocessing.errors import NucleiError
from tools.average_weights import main
from tools.weightfiles.average import average_weights_files
from tools.weightfiles.half import halve_weights_file


def _model(filters=16):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(filters, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization()(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


def _saved(tmp_path, name, seed, filters=16):
    keras.utils.set_random_seed(seed)
    model = _model(filters)
    path = tmp_path / f"{name}.weights.h5"
    model.save_weights(path)
    return model, path


def test_average_is_the_weighted_mean_of_every_array_batch_norm_statistics_included(tmp_path):
    first, a = _saved(tmp_path, "a", 0)
    second, b = _saved(tmp_path, "b", 1)
    first.layers[2].moving_variance.assign(np.full(16, 3.0, np.float32))
    first.save_weights(a)
    with h5py.File(a, "a") as file:  # a checkpoint's optimizer state, as RUN/last.weights.h5 has
        file.create_group("optimizer").create_dataset("vars/0", data=np.ones(3, np.float32))
    soup = average_weights_files([a, b], tmp_path / "soup.weights.h5", fractions=[0.75, 0.25])
    with h5py.File(soup) as file:
        assert "optimizer" not in file  # one run's trajectory, not part of the averaged model
    fresh = _model()
    fresh.load_weights(soup)
    for left, right, mixed in zip(first.weights, second.weights, fresh.weights):
        expected = 0.75 * np.asarray(left) + 0.25 * np.asarray(right)
        np.testing.assert_allclose(np.asarray(mixed), expected, rtol=1e-6, atol=1e-7)
    assert not np.allclose(np.asarray(fresh.weights[0]), np.asarray(first.weights[0]))
    variance = np.asarray(fresh.layers[2].moving_variance)
    np.testing.assert_allclose(variance, 0.75 * 3.0 + 0.25 * np.asarray(second.layers[2].moving_variance), rtol=1e-6)


def test_equal_fractions_by_default_and_float16_files_stay_float16(tmp_path):
    _, a = _saved(tmp_path, "a", 0)
    _, b = _saved(tmp_path, "b", 1)
    half_a = halve_weights_file(a, tmp_path / "ha.weights.h5")
    half_b = halve_weights_file(b, tmp_path / "hb.weights.h5")
    soup = average_weights_files([half_a, half_b], tmp_path / "soup.weights.h5")
    with h5py.File(soup) as out, h5py.File(half_a) as fa, h5py.File(half_b) as fb:
        names = []
        out.visititems(lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
        assert names
        for name in names:
            assert out[name].dtype == fa[name].dtype
            if out[name].dtype == np.float16:
                mean = (fa[name][()].astype(np.float64) + fb[name][()]) / 2
                np.testing.assert_allclose(out[name][()], mean, rtol=1e-3, atol=1e-3)


def test_the_command_writes_the_soup_and_names_bad_input(tmp_path, capsys):
    _, a = _saved(tmp_path, "a", 0)
    _, b = _saved(tmp_path, "b", 1)
    assert main([str(tmp_path / "s.weights.h5"), str(a), str(b), "--fractions", "0.5,0.5"]) == 0
    assert "average of 2 files" in capsys.readouterr().out
    assert main([str(tmp_path / "t.weights.h5"), str(a), str(b), "--fractions", "0.7,0.7"]) != 0
    assert "sum to 1" in capsys.readouterr().err
    assert not (tmp_path / "t.weights.h5").exists()


def test_other_architectures_and_missing_files_are_named(tmp_path):
    _, a = _saved(tmp_path, "a", 0)
    _, wide = _saved(tmp_path, "wide", 1, filters=8)
    with pytest.raises(NucleiError, match="wide.weights.h5.*shape"):
        average_weights_files([a, wide], tmp_path / "x.weights.h5")
    with pytest.raises(NucleiError, match="not found"):
        average_weights_files([a, tmp_path / "absent.weights.h5"], tmp_path / "x.weights.h5")
    with pytest.raises(NucleiError, match="two or more"):
        average_weights_files([a], tmp_path / "x.weights.h5")
    with pytest.raises(NucleiError, match="2 fractions given for 3|3 fractions given for 2"):
        average_weights_files([a, a], tmp_path / "x.weights.h5", fractions=[0.2, 0.3, 0.5])
    junk = tmp_path / "junk.weights.h5"
    junk.write_text("not hdf5")
    with pytest.raises(NucleiError, match="junk.weights.h5.*HDF5"):
        average_weights_files([a, junk], tmp_path / "x.weights.h5")
    assert not (tmp_path / "x.weights.h5").exists()


def test_the_first_files_config_is_written_beside_the_soup_and_kinds_must_agree(tmp_path):
    import json

    _, a = _saved(tmp_path, "a", 0)
    _, b = _saved(tmp_path, "b", 1)
    (tmp_path / "a.json").write_text(json.dumps({"kind": "mrcnn", "config": {"LEARNING_RATE": 0.001}}))
    (tmp_path / "b.json").write_text(json.dumps({"kind": "mrcnn", "config": {"LEARNING_RATE": 0.0004}}))
    average_weights_files([a, b], tmp_path / "soup.weights.h5")
    assert json.loads((tmp_path / "soup.json").read_text())["config"]["LEARNING_RATE"] == 0.001
    (tmp_path / "b.json").write_text(json.dumps({"kind": "unet", "config": {}}))
    with pytest.raises(NucleiError, match="b.json.*kind 'unet'"):
        average_weights_files([a, b], tmp_path / "mixed.weights.h5")
    assert not (tmp_path / "mixed.weights.h5").exists()
