import numpy as np

from mrcnn import boxes as B


def test_iou_hand_computed():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[0, 0, 10, 10], [5, 5, 15, 15], [20, 20, 30, 30], [0, 0, 0, 0]], np.float32)
    np.testing.assert_allclose(B.iou_matrix(a, b)[0], [1.0, 25 / 175, 0.0, 0.0], rtol=1e-6)


def test_encode_hand_computed():
    ref = np.array([[0, 0, 10, 20]], np.float32)  # centre (5, 10), h 10, w 20
    box = np.array([[5, 0, 15, 40]], np.float32)  # centre (10, 20), h 10, w 40
    np.testing.assert_allclose(B.encode(box, ref)[0], [0.5, 0.5, 0.0, np.log(2)], rtol=1e-6)
    np.testing.assert_allclose(B.encode(box, ref, (0.1, 0.1, 0.2, 0.2))[0],
                               [5.0, 5.0, 0.0, np.log(2) / 0.2], rtol=1e-5)


def test_encode_decode_round_trip():
    rng = np.random.default_rng(0)
    ref = rng.uniform(0, 50, (100, 2))
    ref = np.concatenate([ref, ref + rng.uniform(1, 30, (100, 2))], 1).astype(np.float32)
    box = rng.uniform(0, 50, (100, 2))
    box = np.concatenate([box, box + rng.uniform(1, 30, (100, 2))], 1).astype(np.float32)
    std = (0.1, 0.1, 0.2, 0.2)
    np.testing.assert_allclose(B.decode(B.encode(box, ref, std), ref, std), box, atol=1e-3)


def test_masks_and_labels_to_boxes():
    labels = np.zeros((10, 12), np.int32)
    labels[2:5, 3:7] = 1
    labels[8, 11] = 2
    boxes, ids = B.labels_to_boxes(labels)
    np.testing.assert_array_equal(ids, [1, 2])
    np.testing.assert_array_equal(boxes, [[2, 3, 5, 7], [8, 11, 9, 12]])
    masks = np.stack([labels == 1, labels == 2, labels == 3], axis=2)
    np.testing.assert_array_equal(B.masks_to_boxes(masks), [[2, 3, 5, 7], [8, 11, 9, 12], [0, 0, 0, 0]])


def test_clip_and_nms():
    boxes = np.array([[-5, -5, 10, 10], [0, 0, 9, 9], [20, 20, 30, 30]], np.float32)
    np.testing.assert_array_equal(B.clip_boxes(boxes, 8, 8)[0], [0, 0, 8, 8])
    keep = B.nms(boxes, np.array([0.5, 0.9, 0.3]), 0.3)
    np.testing.assert_array_equal(keep, [1, 2])
