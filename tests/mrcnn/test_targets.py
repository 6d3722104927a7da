import numpy as np
from keras import ops

from mrcnn.boxes import decode
from mrcnn.targets import DetectionTargetLayer


def test_positive_rois_get_class_deltas_and_mask():
    proposals = np.zeros((1, 6, 4), np.float32)
    proposals[0, 0] = [10, 10, 30, 30]  # exactly gt 0
    proposals[0, 1] = [12, 10, 32, 30]  # IoU 0.82 with gt 0
    proposals[0, 2] = [60, 60, 70, 70]  # background
    gt_boxes = np.array([[[10, 10, 30, 30], [0, 0, 0, 0]]], np.float32)
    gt_ids = np.array([[1, 0]], np.int32)
    mini = np.zeros((1, 2, 8, 8), np.float32)
    mini[0, 0, :, :4] = 1.0  # left half of the nucleus' box
    layer = DetectionTargetLayer(num_rois=8, positive_ratio=0.5, positive_iou=0.5, bbox_std_dev=(0.1, 0.1, 0.2, 0.2),
                                 mask_shape=(4, 4), use_gt=True)
    rois, ids, deltas, masks = (ops.convert_to_numpy(t) for t in layer([ops.convert_to_tensor(proposals), ops.convert_to_tensor(gt_ids),
                                                          ops.convert_to_tensor(gt_boxes), ops.convert_to_tensor(mini)]))
    positive = ids[0] == 1
    assert positive.sum() == 3  # the two proposals + the gt box itself
    assert (ids[0] == 0).sum() == 1  # one negative
    assert (ids[0] == -1).sum() == 4  # padding
    np.testing.assert_allclose(decode(deltas[0][positive], rois[0][positive], (0.1, 0.1, 0.2, 0.2)),
                               np.tile(gt_boxes[0, :1], (3, 1)), atol=1e-3)
    exact = positive & np.all(np.isclose(rois[0], [10, 10, 30, 30]), axis=1)
    for k in np.flatnonzero(exact):
        np.testing.assert_array_equal(masks[0, k], [[1, 1, 0, 0]] * 4)
    assert not masks[0][~positive].any()


def test_image_without_nuclei_gives_only_negatives():
    proposals = np.array([[[0, 0, 10, 10], [5, 5, 20, 20]]], np.float32)
    layer = DetectionTargetLayer(4, 0.33, 0.5, (0.1, 0.1, 0.2, 0.2), (4, 4))
    rois, ids, deltas, masks = layer([ops.convert_to_tensor(proposals), ops.zeros((1, 3), "int32"), ops.zeros((1, 3, 4)),
                                      ops.zeros((1, 3, 8, 8))])
    np.testing.assert_array_equal(np.sort(ops.convert_to_numpy(ids)[0]), [-1, -1, 0, 0])


def test_positives_stay_in_the_first_positive_slots():
    # 40 proposals on 4 nuclei, nearly all positive: more than the 16 * 0.25 = 4 slots can hold
    rng = np.random.default_rng(0)
    gt_boxes = np.array([[[10, 10, 40, 40], [10, 60, 40, 90], [60, 10, 90, 40], [60, 60, 90, 90]]], np.float32)
    proposals = (np.repeat(gt_boxes, 10, axis=1) + rng.uniform(-2, 2, (1, 40, 4))).astype(np.float32)
    layer = DetectionTargetLayer(16, 0.25, 0.5, (0.1, 0.1, 0.2, 0.2), (4, 4))
    assert layer.positive_slots == 4
    _, ids, _, masks = (ops.convert_to_numpy(t) for t in layer([
        ops.convert_to_tensor(proposals), ops.ones((1, 4), "int32"), ops.convert_to_tensor(gt_boxes),
        ops.ones((1, 4, 8, 8))]))
    np.testing.assert_array_equal(ids[0, :4], 1)  # the slots are full
    assert (ids[0, 4:] <= 0).all() and not masks[0, 4:].any()  # and nothing positive after them
