import numpy as np
from keras import ops

from mrcnn.proposals import ProposalLayer


def test_top_boxes_after_nms_are_clipped_and_padded():
    anchors = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [-5, -5, 5, 5]], np.float32)
    probs = np.array([[[0.1, 0.9], [0.2, 0.8], [0.3, 0.7], [0.4, 0.6]]], np.float32)
    deltas = np.zeros((1, 4, 4), np.float32)
    layer = ProposalLayer(proposal_count=5, nms_threshold=0.5, pre_nms_limit=4, rpn_bbox_std_dev=(0.1, 0.1, 0.2, 0.2))
    out = ops.convert_to_numpy(layer([ops.convert_to_tensor(probs), ops.convert_to_tensor(deltas), ops.convert_to_tensor(anchors), ops.convert_to_tensor([25, 25])]))
    # anchor 1 overlaps anchor 0 (IoU 0.68) and is suppressed; anchor 2 is clipped to 25
    np.testing.assert_allclose(out[0], [[0, 0, 10, 10], [20, 20, 25, 25], [0, 0, 5, 5], [0, 0, 0, 0], [0, 0, 0, 0]])


def test_deltas_move_boxes():
    anchors = np.array([[10, 10, 20, 20]], np.float32)
    probs = np.array([[[0.0, 1.0]]], np.float32)
    deltas = np.array([[[0.5 / 0.1, 0.0, 0.0, np.log(2) / 0.2]]], np.float32)
    layer = ProposalLayer(1, 0.7, 1, (0.1, 0.1, 0.2, 0.2))
    out = ops.convert_to_numpy(layer([ops.convert_to_tensor(probs), ops.convert_to_tensor(deltas), ops.convert_to_tensor(anchors), ops.convert_to_tensor([100, 100])]))
    np.testing.assert_allclose(out[0, 0], [15, 5, 25, 25], atol=1e-4)
