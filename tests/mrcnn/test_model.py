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
    trimmed = model.infer(x)  # infer trims (a TF graph, or eager elsewhere)
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


def test_bfloat16_model_computes_its_layers_in_bfloat16_and_its_boxes_in_float32(model, tmp_path):
    model.save_model(tmp_path / "h.weights.h5")
    half = MrcnnPredictor.from_path(tmp_path / "h.weights.h5", precision="bfloat16").model
    assert keras.config.dtype_policy().name == "float32"  # restored after the bfloat16 build
    for layer in (half.backbone.get_layer("tiny_c2"), half.backbone.get_layer("fpn_p2"), half.rpn_head.shared,
                  half.box_head.fc1, half.mask_head.out):
        assert layer.compute_dtype == "bfloat16" and layer.variable_dtype == "float32", layer.name
    for layer in (half.inference_proposals, half.detection, half.box_align):
        assert layer.compute_dtype == "float32", layer.name
    assert model.box_head.fc1.compute_dtype == "float32"
    x = np.random.default_rng(4).normal(size=(1, 128, 64, 3)).astype(np.float32)
    single_rpn, half_rpn = model._rpn(x, False), half._rpn(x, False)
    assert all(keras.backend.standardize_dtype(f.dtype) == "float32" for f in half_rpn[0])  # features for RoIAlign
    probs, half_probs = (keras.ops.convert_to_numpy(out[2]) for out in (single_rpn, half_rpn))
    assert half_probs.dtype == np.float32
    assert 0 < np.abs(probs - half_probs).max() < 0.05  # bfloat16 differs, but only in the low bits
    out = half.infer(x)
    assert all(out[k].dtype == np.float32 for k in ("boxes", "scores", "masks"))
    assert half.get_config()["precision"] == "bfloat16"
    with pytest.raises(NucleiError, match="precision"):
        MrcnnPredictor.from_path(tmp_path / "h.weights.h5", precision="float16")


def test_mask_head_trains_on_the_positive_slots_only_with_the_same_losses(monkeypatch):
    from mrcnn.targets import DetectionTargetLayer
    from tests.mrcnn.synthetic import square_nuclei_batch

    keras.utils.set_random_seed(4)
    model = MaskRCNN(TinyConfig())
    batch = square_nuclei_batch(model.config, np.random.default_rng(4))
    seed = model.detection_targets.seed_generator.state
    start = keras.ops.convert_to_numpy(seed.value)
    calls = []  # RoIs per image the mask head ran on
    mask_head_call = type(model.mask_head).call

    def counting_call(self, pooled):
        calls.append(pooled.shape[1])
        return mask_head_call(self, pooled)

    monkeypatch.setattr(type(model.mask_head), "call", counting_call)
    heads_on_slots = {k: float(v) for k, v in model.compute_losses(batch).items()}
    monkeypatch.setattr(DetectionTargetLayer, "positive_slots", property(lambda self: self.num_rois))
    seed.assign(start)  # the same draw of RoIs
    heads_on_all = {k: float(v) for k, v in model.compute_losses(batch).items()}
    rois = model.config.TRAIN_ROIS_PER_IMAGE
    assert calls == [int(rois * model.config.ROI_POSITIVE_RATIO), rois]
    assert heads_on_slots["mrcnn_mask_loss"] > 0
    for name, value in heads_on_all.items():
        np.testing.assert_allclose(heads_on_slots[name], value, rtol=1e-5, err_msg=name)
