from keras import ops

from mrcnn.heads import BoxHead, MaskHead


def test_box_head_shapes():
    logits, probs, deltas = BoxHead(3, fc_size=16)(ops.zeros((2, 5, 7, 7, 8)))
    assert logits.shape == (2, 5, 3) and probs.shape == (2, 5, 3) and deltas.shape == (2, 5, 3, 4)


def test_mask_head_28_and_56():
    assert MaskHead(2, channels=8, convs=1, upsamplings=1)(ops.zeros((1, 3, 14, 14, 4))).shape == (1, 3, 28, 28, 2)
    assert MaskHead(2, channels=8, convs=1, upsamplings=2)(ops.zeros((1, 3, 14, 14, 4))).shape == (1, 3, 56, 56, 2)
