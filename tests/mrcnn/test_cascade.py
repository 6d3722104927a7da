"""Cascade R-CNN: the refinement between stages, the cascade graph, and the single-stage model unchanged."""

from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
from keras import ops

from mrcnn import cascade
from mrcnn.boxes import decode
from mrcnn.config import Config, TinyConfig
from mrcnn.model import LOSS_NAMES, MaskRCNN, load_model, stage_loss_names, warm_start_cascade
from mrcnn.weights import iter_layers
from preprocessing.errors import NucleiError
from tests.mrcnn.synthetic import square_nuclei_batch as tiny_batch

ROOT = Path(__file__).resolve().parents[2]
STD = (0.1, 0.1, 0.2, 0.2)


def leaf_names(model):
    return [layer.name for layer in iter_layers(model) if layer.weights]


# ------------------------------------------------------------------ pure parts
def test_stages_follow_the_config():
    (single,) = cascade.stages(Config(ROI_POSITIVE_IOU=0.55, BBOX_STD_DEV=(0.2, 0.2, 0.3, 0.3)))
    assert single == (0.55, (0.2, 0.2, 0.3, 0.3), 1.0)
    three = cascade.stages(Config(CASCADE_STAGES=3))
    assert [s.positive_iou for s in three] == [0.5, 0.6, 0.7]
    assert three[2].bbox_std_dev == (0.033, 0.033, 0.067, 0.067)
    assert [s.loss_weight for s in three] == [1.0, 0.5, 0.25]
    assert [cascade.stage_suffix(k) for k in range(3)] == ["", "_stage2", "_stage3"]


def test_refine_boxes_uses_each_rois_class_keeps_padding_and_clips():
    rois = np.array([[[10, 10, 30, 30], [0, 0, 0, 0], [50, 50, 70, 95]]], np.float32)
    deltas = np.zeros((1, 3, 3, 4), np.float32)
    deltas[0, 0, 2] = [1.0, -1.0, 0.5, 0.0]  # class 2 moves RoI 0; class 1 would not
    deltas[0, 1, :] = 5.0  # padding: must stay a zero row
    deltas[0, 2, 1] = [0.0, 2.0, 0.0, 0.0]  # pushes RoI 2 past the right border
    ids = np.array([[2, 1, 1]], np.int32)
    tensors = [ops.convert_to_tensor(a) for a in (rois, deltas, ids, np.array([100, 100], np.int32))]
    out = ops.convert_to_numpy(cascade.refine_boxes(*tensors[:3], STD, tensors[3]))
    np.testing.assert_allclose(out[0, 0], decode(deltas[0, 0, 2][None], rois[0, 0][None], STD)[0], atol=1e-4)
    np.testing.assert_array_equal(out[0, 1], 0.0)
    np.testing.assert_allclose(out[0, 2], [50, 59, 70, 100], atol=1e-4)  # shifted by 0.2 * 45, clipped at 100


def test_refine_class_ids_best_foreground_or_target():
    probs = np.array([[[0.9, 0.04, 0.06], [0.1, 0.7, 0.2], [0.2, 0.3, 0.5]]], np.float32)
    np.testing.assert_array_equal(ops.convert_to_numpy(cascade.refine_class_ids(probs)), [[2, 1, 2]])
    targets = np.array([[1, 0, -1]], np.int32)  # positive of class 1, negative, padding
    np.testing.assert_array_equal(ops.convert_to_numpy(cascade.refine_class_ids(probs, targets)), [[1, 1, 2]])


def test_mean_scores():
    a, b = np.full((1, 2, 2), 0.2, np.float32), np.full((1, 2, 2), 0.6, np.float32)
    np.testing.assert_allclose(ops.convert_to_numpy(cascade.mean_scores([a, b])), 0.4)
    assert cascade.mean_scores([a]) is a


@pytest.mark.parametrize("overrides, word", [
    ({"CASCADE_STAGES": 0}, "CASCADE_STAGES"),
    ({"CASCADE_STAGES": 2}, "CASCADE_IOUS"),  # three IoUs for two stages
    ({"CASCADE_IOUS": (0.5, 1.2, 0.7)}, "CASCADE_IOUS"),
    ({"CASCADE_BBOX_STD_DEVS": ((0.1, 0.1, 0.2),)}, "CASCADE_BBOX_STD_DEVS"),
    ({"CASCADE_STAGES": 3, "CASCADE_LOSS_WEIGHTS": (1.0, 0.5)}, "CASCADE_LOSS_WEIGHTS"),
    ({"MASK_PASTE": "nearest"}, "MASK_PASTE"),
])
def test_bad_cascade_and_paste_values(overrides, word):
    with pytest.raises(NucleiError, match=word):
        Config(**overrides)


def test_two_stage_config_and_json_round_trip(tmp_path):
    config = TinyConfig(CASCADE_STAGES=2, CASCADE_IOUS=(0.5, 0.65), CASCADE_LOSS_WEIGHTS=(1.0, 1.0),
                        CASCADE_BBOX_STD_DEVS=((0.1, 0.1, 0.2, 0.2), (0.05, 0.05, 0.1, 0.1)))
    config.save(tmp_path / "c.json")
    again = Config.load(tmp_path / "c.json")
    assert again.CASCADE_BBOX_STD_DEVS == ((0.1, 0.1, 0.2, 0.2), (0.05, 0.05, 0.1, 0.1))
    assert cascade.stages(again) == cascade.stages(config)


# ------------------------------------------------------------------ the cascade graph
@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return MaskRCNN(TinyConfig(CASCADE_STAGES=3, DETECTION_MIN_CONFIDENCE=0.0))


def test_cascade_layers_have_their_own_names(model):
    names = set(leaf_names(model))
    for base in ("mrcnn_box_fc1", "mrcnn_box_fc2", "mrcnn_class_logits", "mrcnn_bbox_fc"):
        assert {base, base + "_stage2", base + "_stage3"} <= names
    assert len(model.box_heads()) == 3 and len(model.stage_targets()) == 3
    assert [t.positive_iou for t in model.stage_targets()] == [0.5, 0.6, 0.7]
    assert model.detection.bbox_std_dev == (0.033, 0.033, 0.067, 0.067)  # boxes from the last stage


def test_cascade_inference_shapes_and_mean_scores(model):
    images = np.random.default_rng(0).normal(size=(2, 128, 64, 3)).astype(np.float32)
    out = model.infer(images)
    d = model.config.DETECTION_MAX_INSTANCES
    assert out["boxes"].shape == (2, d, 4) and out["scores"].shape == (2, d) and out["count"].shape == (2,)
    assert out["masks"].shape == (2, d, 14, 14) and out["count"].min() > 0
    # by hand: each stage on the boxes the previous one refined; the detections are the last
    # stage's boxes scored by the mean of the three stages' probabilities
    x = ops.convert_to_tensor(images)
    features, _, probs, deltas, anchors, size = model._rpn(x, False)
    rois = model.inference_proposals([probs, deltas, anchors, size])
    stage_probs = []
    for k, head in enumerate(model.box_heads()):
        if k:
            rois = cascade.refine_boxes(rois, box_deltas, cascade.refine_class_ids(class_probs),
                                        model.stages[k - 1].bbox_std_dev, size)
        _, class_probs, box_deltas = head(model.box_align([rois] + features[:4]))
        stage_probs.append(class_probs)
    eager = model(x, training=False)
    mean = model.detection([rois, ops.mean(ops.stack(stage_probs), axis=0), box_deltas, size])
    last = model.detection([rois, stage_probs[-1], box_deltas, size])
    for name, want, other in zip(("boxes", "class_ids", "scores", "count"), mean, last):
        np.testing.assert_allclose(ops.convert_to_numpy(eager[name]), ops.convert_to_numpy(want), atol=1e-5)
    assert not np.allclose(ops.convert_to_numpy(eager["scores"]), ops.convert_to_numpy(last[2]), atol=1e-4)


def test_cascade_training_losses(model):
    batch = tiny_batch(model.config, np.random.default_rng(1))
    losses = model.compute_losses(batch)
    assert set(losses) == set(LOSS_NAMES) | set(stage_loss_names(3))
    assert all(np.isfinite(float(v)) and ops.ndim(v) == 0 for v in losses.values())
    for kind in ("class", "bbox"):  # the reported loss is the stages' weighted sum
        stages = [float(losses[f"mrcnn_{kind}_loss_stage{k}"]) for k in (1, 2, 3)]
        np.testing.assert_allclose(float(losses[f"mrcnn_{kind}_loss"]), np.dot([1.0, 0.5, 0.25], stages), rtol=1e-5)
    assert float(losses["mrcnn_class_loss_stage3"]) > 0


def test_each_stage_samples_at_its_own_iou():
    config = TinyConfig(CASCADE_STAGES=3)
    batch = tiny_batch(config, np.random.default_rng(2))
    gt = [ops.convert_to_tensor(batch[k]) for k in ("gt_class_ids", "gt_boxes", "gt_masks")]
    shifted = batch["gt_boxes"] + np.array([4, 0, 4, 0], np.float32) * (batch["gt_class_ids"][..., None] > 0)
    r = config.TRAIN_ROIS_PER_IMAGE
    positives = []
    for layer in MaskRCNN(config).stage_targets():  # 20 x 20 boxes moved by 4 px: IoU 0.667 with their nucleus
        rois, ids, deltas, masks = layer([ops.convert_to_tensor(shifted)] + gt)
        assert tuple(rois.shape) == (2, r, 4) and tuple(ids.shape) == (2, r) and tuple(masks.shape) == (2, r, 14, 14)
        positives.append(int((ops.convert_to_numpy(ids) == 1).sum()))
    assert positives == [12, 12, 6]  # 2 images x (3 moved boxes + 3 gt boxes); at 0.7 only the gt boxes


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="GradientTape")
def test_no_gradient_through_the_refined_boxes(model):
    import tensorflow as tf

    batch = tiny_batch(model.config, np.random.default_rng(3))
    with tf.GradientTape(persistent=True) as tape:
        losses = model.compute_losses(batch)
        stage1 = losses["mrcnn_class_loss_stage1"] + losses["mrcnn_bbox_loss_stage1"]
    first_head = model.box_head.trainable_variables
    assert all(g is not None for g in tape.gradient(stage1, first_head))
    # stage 1's head reaches stage 2 only through the boxes it refined: the gradient stops there
    assert all(g is None for g in tape.gradient(losses["mrcnn_class_loss_stage2"], first_head))
    second = model.cascade_heads[0]
    assert all(g is not None for g in tape.gradient(losses["mrcnn_class_loss_stage2"],
                                                    [second.fc1.kernel, second.fc2.kernel, second.class_logits.kernel]))


def test_cascade_weights_round_trip(model, tmp_path):
    x = np.random.default_rng(4).normal(size=(1, 64, 64, 3)).astype(np.float32)
    model.save_model(tmp_path / "c.weights.h5")
    again = load_model(tmp_path / "c.weights.h5")
    assert again.config.CASCADE_STAGES == 3
    np.testing.assert_allclose(model.infer(x)["scores"], again.infer(x)["scores"], atol=1e-5)


def test_warm_start_from_a_single_stage_model(tmp_path):
    keras.utils.set_random_seed(5)
    single = MaskRCNN(TinyConfig())
    single.save_model(tmp_path / "s.weights.h5")
    three = MaskRCNN(TinyConfig(CASCADE_STAGES=3))
    report = warm_start_cascade(three, tmp_path / "s.weights.h5")
    assert sorted(report["from_first_stage"]) == sorted(f"{b}_stage{k}" for k in (2, 3) for b in (
        "mrcnn_box_fc1", "mrcnn_box_fc2", "mrcnn_class_logits", "mrcnn_bbox_fc"))
    np.testing.assert_array_equal(three.cascade_heads[1].fc1.kernel.numpy(), single.box_head.fc1.kernel.numpy())
    np.testing.assert_array_equal(three.mask_head.out.kernel.numpy(), single.mask_head.out.kernel.numpy())
    with pytest.raises(NucleiError, match="CASCADE_STAGES"):
        warm_start_cascade(single, tmp_path / "s.weights.h5")


# ------------------------------------------------------------------ one stage: today's model
def test_single_stage_model_is_unchanged():
    model = MaskRCNN(TinyConfig())
    assert leaf_names(model) == [
        "fpn_p4", "fpn_p3", "fpn_p2", "fpn_p5", "fpn_c2p2", "fpn_c3p3", "fpn_c4p4", "fpn_c5p5", "tiny_c5",
        "tiny_c5_down", "tiny_c4", "tiny_c4_down", "tiny_c3", "tiny_c3_down", "tiny_c2", "tiny_c2_down", "tiny_stem",
        "rpn_bbox_pred", "rpn_class_raw", "rpn_conv_shared", "mrcnn_bbox_fc", "mrcnn_class_logits", "mrcnn_box_fc2",
        "mrcnn_box_fc1", "mrcnn_mask", "mrcnn_mask_deconv1", "mrcnn_mask_conv2", "mrcnn_mask_conv1"]
    assert len(model.weights) == 56 and sum(int(np.prod(w.shape)) for w in model.weights) == 304878
    assert not hasattr(model, "cascade_heads") and model.loss_names == LOSS_NAMES


def test_shipped_weights_load_into_the_single_stage_model():
    path = ROOT / "weights" / "mrcnn.weights.h5"
    model = MaskRCNN(Config.load(ROOT / "weights" / "mrcnn.json").replace(BACKBONE_WEIGHTS=None))
    assert len(model.weights) == 299 and len(leaf_names(model)) == 124  # 56-pixel masks: mrcnn_mask_deconv2
    model.load_weights(str(path))
    with h5py.File(path, "r") as f:  # every value of the file is in the model, and nothing else
        stored = []
        f.visititems(lambda name, obj: stored.append(float(np.abs(obj[()].astype(np.float64)).sum()))
                     if isinstance(obj, h5py.Dataset) else None)
    ours = [float(np.abs(w.numpy().astype(np.float64)).sum()) for w in model.weights]
    assert len(stored) == len(ours)
    np.testing.assert_allclose(sorted(stored), sorted(ours), rtol=1e-6)
