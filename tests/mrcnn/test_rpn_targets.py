import numpy as np

from mrcnn.boxes import decode
from mrcnn.config import TinyConfig
from mrcnn.rpn_targets import build_rpn_targets


def test_positive_negative_neutral_and_deltas():
    config = TinyConfig(RPN_TRAIN_ANCHORS_PER_IMAGE=256)
    anchors = np.array([[0, 0, 10, 10], [0, 0, 10, 11], [0, 2, 10, 12], [30, 30, 40, 40], [50, 50, 60, 60],
                        [0, 0, 20, 20]], np.float32)
    gt = np.array([[0, 0, 10, 10], [51, 52, 57, 58]], np.float32)
    match, deltas = build_rpn_targets(anchors, gt, config, np.random.default_rng(0))
    # IoUs with gt0: 1, 0.909, 0.667 (neutral), 0, 0, 0.25 (negative); gt1's best anchor is #4 (IoU 0.36)
    np.testing.assert_array_equal(match, [1, 1, 0, -1, 1, -1])
    np.testing.assert_allclose(decode(deltas[[0, 1, 4]], anchors[[0, 1, 4]], config.RPN_BBOX_STD_DEV),
                               gt[[0, 0, 1]], atol=1e-4)
    assert not deltas[[2, 3, 5]].any()


def test_sampling_caps_and_empty_image():
    config = TinyConfig(RPN_TRAIN_ANCHORS_PER_IMAGE=8)
    rng = np.random.default_rng(0)
    anchors = np.tile(np.array([[0, 0, 10, 10]], np.float32), (20, 1))
    anchors = np.concatenate([anchors, anchors + 100])
    match, _ = build_rpn_targets(anchors, np.array([[0, 0, 10, 10]], np.float32), config, rng)
    assert (match == 1).sum() == 4 and (match == -1).sum() == 4
    match, deltas = build_rpn_targets(anchors, np.zeros((0, 4), np.float32), config, rng)
    assert (match == -1).sum() == 8 and (match == 1).sum() == 0 and not deltas.any()
