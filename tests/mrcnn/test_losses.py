import numpy as np
from keras import ops

from mrcnn import losses as L


def test_rpn_class_loss_ignores_neutral():
    match = ops.convert_to_tensor([[1, -1, 0]])
    logits = ops.convert_to_tensor([[[0.0, 0.0], [0.0, 0.0], [100.0, -100.0]]])
    np.testing.assert_allclose(ops.convert_to_numpy(L.rpn_class_loss(match, logits)), np.log(2), rtol=1e-6)


def test_rpn_bbox_loss_positives_only():
    match = ops.convert_to_tensor([[1, -1]])
    target = ops.convert_to_tensor([[[0.5, 0, 0, 2.0], [9, 9, 9, 9]]])
    pred = ops.zeros((1, 2, 4))
    # smooth L1: 0.5 * 0.25 + (2 - 0.5)
    np.testing.assert_allclose(ops.convert_to_numpy(L.rpn_bbox_loss(target, match, pred)), 0.125 + 1.5, rtol=1e-6)


def test_empty_positive_sets_give_zero():
    assert float(L.rpn_bbox_loss(ops.zeros((1, 2, 4)), ops.convert_to_tensor([[-1, 0]]), ops.zeros((1, 2, 4)))) == 0.0
    ids = ops.convert_to_tensor([[0, -1]])
    assert float(L.mrcnn_bbox_loss(ops.zeros((1, 2, 4)), ids, ops.ones((1, 2, 2, 4)))) == 0.0
    assert float(L.mrcnn_mask_loss(ops.zeros((1, 2, 3, 3)), ids, ops.ones((1, 2, 3, 3, 2)))) == 0.0


def test_mrcnn_losses_pick_the_true_class():
    ids = ops.convert_to_tensor([[1, 0, -1]])
    logits = ops.convert_to_tensor([[[0.0, 0.0], [0.0, 0.0], [5.0, 5.0]]])
    np.testing.assert_allclose(ops.convert_to_numpy(L.mrcnn_class_loss(ids, logits)), np.log(2), rtol=1e-6)
    pred = np.zeros((1, 3, 2, 4), np.float32)
    pred[0, 0, 0] = 10.0  # wrong-class deltas do not count
    target = np.zeros((1, 3, 4), np.float32)
    target[0, 0, 0] = 0.5
    np.testing.assert_allclose(ops.convert_to_numpy(L.mrcnn_bbox_loss(ops.convert_to_tensor(target), ids, ops.convert_to_tensor(pred))), 0.125)
    masks = np.zeros((1, 3, 2, 2), np.float32)
    masks[0, 0, 0, 0] = 1.0
    mask_logits = np.zeros((1, 3, 2, 2, 2), np.float32)
    mask_logits[..., 0] = 50.0  # background channel: ignored
    np.testing.assert_allclose(ops.convert_to_numpy(L.mrcnn_mask_loss(ops.convert_to_tensor(masks), ids, ops.convert_to_tensor(mask_logits))),
                               np.log(2), rtol=1e-5)
