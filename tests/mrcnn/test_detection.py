import numpy as np
from keras import ops

from mrcnn.detection import DetectionLayer


def test_refine_nms_threshold_and_padding():
    rois = np.array([[[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [40, 40, 50, 50], [0, 0, 0, 0]]], np.float32)
    probs = np.array([[[0.1, 0.9], [0.2, 0.8], [0.3, 0.7], [0.8, 0.2], [0.0, 1.0]]], np.float32)
    deltas = np.zeros((1, 5, 2, 4), np.float32)
    deltas[0, 2, 1] = [1.0, 0, 0, 0]  # move roi 2 down by 0.1 * 10 = 1 pixel
    layer = DetectionLayer(max_instances=4, min_confidence=0.5, nms_threshold=0.3, bbox_std_dev=(0.1, 0.1, 0.2, 0.2))
    boxes, class_ids, scores, count = (ops.convert_to_numpy(t) for t in layer(
        [ops.convert_to_tensor(rois), ops.convert_to_tensor(probs), ops.convert_to_tensor(deltas), ops.convert_to_tensor([64, 64])]))
    assert count[0] == 2  # roi 1 suppressed, roi 3 below confidence, roi 4 is padding
    np.testing.assert_allclose(boxes[0, :2], [[0, 0, 10, 10], [21, 20, 31, 30]], atol=1e-4)
    np.testing.assert_allclose(scores[0, :2], [0.9, 0.7], rtol=1e-6)
    np.testing.assert_array_equal(class_ids[0, :2], [1, 1])
