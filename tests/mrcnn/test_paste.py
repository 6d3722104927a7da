import numpy as np

from mrcnn.paste import detections_to_labels, paste_mask


def test_paste_full_mask_fills_box():
    out = paste_mask(np.ones((28, 28), np.float32), (2, 3, 6, 9), (10, 12))
    expected = np.zeros((10, 12), bool)
    expected[2:6, 3:9] = True
    np.testing.assert_array_equal(out, expected)


def test_paste_half_mask_and_clipping():
    mask = np.zeros((4, 4), np.float32)
    mask[:, :2] = 1.0
    out = paste_mask(mask, (0, 0, 8, 8), (8, 8))
    assert out[:, :4].all() and not out[:, 4:].any()
    assert paste_mask(np.ones((4, 4)), (-4, -4, 4, 4), (8, 8)).sum() == 16


def test_overlap_goes_to_the_highest_score():
    masks = np.ones((2, 4, 4), np.float32)
    boxes = np.array([[0, 0, 6, 6], [3, 3, 9, 9]], np.float32)
    labels, scores, keep = detections_to_labels(boxes, np.array([0.6, 0.9]), masks, (10, 10))
    np.testing.assert_array_equal(keep, [1, 0])
    np.testing.assert_allclose(scores, [0.9, 0.6])
    assert labels[4, 4] == 1  # shared pixel: detection 1 (score 0.9) is id 1
    assert labels[0, 0] == 2 and labels[8, 8] == 1
    assert (labels == 2).sum() == 36 - 9
