import numpy as np
from keras import ops

from mrcnn.anchors import anchor_count, pyramid_anchors
from mrcnn.config import TinyConfig
from mrcnn.rpn import RpnHead, graph_anchors


def test_graph_anchors_match_numpy():
    config = TinyConfig()
    for shape in ((128, 192), (64, 64)):
        expected = pyramid_anchors(shape, config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS, config.BACKBONE_STRIDES)
        got = ops.convert_to_numpy(graph_anchors(ops.convert_to_tensor(shape[0]), ops.convert_to_tensor(shape[1]), config.RPN_ANCHOR_SCALES,
                            config.RPN_ANCHOR_RATIOS, config.BACKBONE_STRIDES))
        np.testing.assert_allclose(got, expected, atol=1e-4)


def test_head_output_follows_anchor_order():
    config = TinyConfig()
    head = RpnHead(3, channels=8)
    feats = [ops.zeros((2, 128 // s, 192 // s, 4)) for s in config.BACKBONE_STRIDES]
    logits, probs, deltas = head(feats)
    n = anchor_count(config, (128, 192))
    assert logits.shape == (2, n, 2) and deltas.shape == (2, n, 4)
    np.testing.assert_allclose(ops.convert_to_numpy(probs).sum(-1), 1.0, rtol=1e-5)
