import keras
import numpy as np
import pytest

from mrcnn.config import TinyConfig
from mrcnn.model import MaskRCNN, load_model
from mrcnn.predictor import MrcnnPredictor
from preprocessing.errors import NucleiError


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return MaskRCNN(TinyConfig(DETECTION_MIN_CONFIDENCE=0.0))


def test_inference_outputs(model):
    out = model.infer(np.random.default_rng(0).normal(size=(2, 128, 64, 3)).astype(np.float32))
    d = model.config.DETECTION_MAX_INSTANCES
    assert out["boxes"].shape == (2, d, 4) and out["scores"].shape == (2, d)
    assert out["masks"].shape == (2, d, 14, 14) and out["count"].shape == (2,)
    assert out["boxes"][..., [0, 2]].max() <= 128 and out["boxes"][..., [1, 3]].max() <= 64


def test_trimmed_detections_give_the_same_masks_for_the_kept_rows():
    keras.utils.set_random_seed(3)
    model = MaskRCNN(TinyConfig(DETECTION_MIN_CONFIDENCE=0.0))
    x = np.random.default_rng(3).normal(size=(2, 128, 64, 3)).astype(np.float32)
    scores = keras.ops.convert_to_numpy(model(x, training=False)["scores"])
    # a cut that keeps a few detections in one image and more in the other
    model.detection.min_confidence = float(np.sort(scores[0])[-10])
    full = {k: keras.ops.convert_to_numpy(v) for k, v in model(x, training=False).items()}
    trimmed = model.infer(x)  # the TF graph path trims
    kept = max(int(full["count"].max()), 1)
    assert kept < model.config.DETECTION_MAX_INSTANCES  # the test would not test trimming otherwise
    assert trimmed["masks"].shape == (2, kept, 14, 14)
    np.testing.assert_array_equal(trimmed["count"], full["count"])
    for b, n in enumerate(full["count"]):
        np.testing.assert_allclose(trimmed["masks"][b, :n], full["masks"][b, :n], atol=1e-5)
        np.testing.assert_allclose(trimmed["boxes"][b], full["boxes"][b], atol=1e-3)


def test_weights_and_config_round_trip(model, tmp_path):
    x = np.random.default_rng(1).normal(size=(1, 64, 64, 3)).astype(np.float32)
    model.save_model(tmp_path / "m.weights.h5")
    assert (tmp_path / "m.json").is_file()
    again = load_model(tmp_path / "m.weights.h5")
    a, b = model.infer(x), again.infer(x)
    np.testing.assert_allclose(a["scores"], b["scores"], atol=1e-5)
    np.testing.assert_allclose(a["masks"], b["masks"], atol=1e-5)


def test_keras_file_loads_in_safe_mode(model, tmp_path):
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.saving.load_model(path, safe_mode=True)
    x = np.random.default_rng(2).normal(size=(1, 64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(model.infer(x)["scores"], again.infer(x)["scores"], atol=1e-5)


def test_training_stages(model):
    names = lambda: {l.name for l in model._flatten_layers() if l.weights and l.trainable
                     and not list(l._flatten_layers(include_self=False))}
    model.set_trainable("heads")
    heads = names()
    assert "fpn_p2" in heads and "mrcnn_mask" in heads and "rpn_class_raw" in heads and "tiny_c3" not in heads
    model.set_trainable("4+")
    assert {"tiny_c4", "tiny_c5"} <= names() and "tiny_c3" not in names()
    model.set_trainable(r"mrcnn_.*")
    assert names() and all(n.startswith("mrcnn_") for n in names())
    with pytest.raises(NucleiError):
        model.set_trainable("nothing_matches_this")
    model.set_trainable("all")


def test_predictor_from_path(model, tmp_path):
    model.save_model(tmp_path / "p.weights.h5")
    predictor = MrcnnPredictor.from_path(tmp_path / "p.weights.h5")
    labels, scores = predictor.predict(np.random.default_rng(3).integers(0, 255, (70, 90, 3), dtype=np.uint8))
    assert labels.shape == (70, 90) and labels.dtype == np.int32 and len(scores) == labels.max()
    with pytest.raises(NucleiError, match="not found"):
        MrcnnPredictor.from_path(tmp_path / "none.weights.h5")
