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


def disc_cover(size, radius, centre, samples=8):
    """Share of each cell of a size x size grid over the unit square inside a disc: float [size, size]."""
    s = (np.arange(size * samples) + 0.5) / (size * samples)
    yy, xx = np.meshgrid(s, s, indexing="ij")
    inside = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius ** 2
    return inside.reshape(size, samples, size, samples).mean(axis=(1, 3)).astype(np.float32)


def test_soft_paste_of_a_28_disc_beats_binary_first():
    box, shape = (20, 30, 120, 130), (150, 160)  # a 100 x 100 box
    truth = np.zeros(shape, bool)
    truth[20:120, 30:130] = disc_cover(100, 0.3, (0.45, 0.55), samples=1) > 0.5
    predicted = disc_cover(28, 0.3, (0.45, 0.55))  # the ideal 28 x 28 probabilities

    def iou(mode):
        pasted = paste_mask(predicted, box, shape, 0.5, mode)
        return (pasted & truth).sum() / (pasted | truth).sum()

    soft, binary = iou("soft"), iou("binary")
    assert soft > 0.98 and soft > binary + 0.02, (soft, binary)


def test_binary_paste_is_the_thresholded_mask_blown_up():
    mask = np.array([[0.2, 0.6], [0.7, 0.4]], np.float32)
    out = paste_mask(mask, (0, 0, 4, 4), (4, 4), 0.5, "binary")
    np.testing.assert_array_equal(out, np.kron(mask >= 0.5, np.ones((2, 2), bool)))
    labels, _, _ = detections_to_labels(np.array([[0, 0, 4, 4]], np.float32), np.array([0.9]), mask[None], (4, 4),
                                        mode="binary")
    np.testing.assert_array_equal(labels > 0, out)
