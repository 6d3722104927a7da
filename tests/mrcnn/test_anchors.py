import numpy as np

from mrcnn.anchors import anchor_count, feature_shapes, level_anchors, pyramid_anchors
from mrcnn.config import TinyConfig


def test_feature_shapes_ceil():
    assert feature_shapes((64, 100), (4, 32, 64)) == [(16, 25), (2, 4), (1, 2)]


def test_level_anchors_hand_computed():
    # 2x2 map, stride 8, side 8, ratios 1 and 4 (w/h): centres 4 and 12.
    boxes = level_anchors(8, (1.0, 4.0), (2, 2), 8)
    assert boxes.shape == (8, 4)
    np.testing.assert_allclose(boxes[0], [0, 0, 8, 8])  # row 0, col 0, ratio 1
    np.testing.assert_allclose(boxes[1], [2, -4, 6, 12])  # ratio 4: h = 4, w = 16
    np.testing.assert_allclose(boxes[2], [0, 8, 8, 16])  # row 0, col 1
    np.testing.assert_allclose(boxes[4], [8, 0, 16, 8])  # row 1, col 0
    np.testing.assert_allclose(boxes[7], [10, 4, 14, 20])


def test_anchor_area_is_scale_squared():
    boxes = level_anchors(16, (0.5, 1.0, 2.0), (3, 3), 4)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    np.testing.assert_allclose(areas, 256, rtol=1e-5)
    widths = boxes[:, 3] - boxes[:, 1]
    heights = boxes[:, 2] - boxes[:, 0]
    np.testing.assert_allclose((widths / heights)[:3], [0.5, 1.0, 2.0], rtol=1e-5)


def test_anchor_stride():
    assert level_anchors(8, (1.0,), (4, 4), 4, anchor_stride=2).shape == (4, 4)


def test_pyramid_order_and_count():
    config = TinyConfig()
    anchors = pyramid_anchors((128, 192), config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS,
                              config.BACKBONE_STRIDES)
    assert anchors.shape[0] == anchor_count(config, (128, 192))
    first_level = 32 * 48 * 3
    assert anchors.shape[0] == 3 * (32 * 48 + 16 * 24 + 8 * 12 + 4 * 6 + 2 * 3)
    sides = np.sqrt((anchors[:, 2] - anchors[:, 0]) * (anchors[:, 3] - anchors[:, 1]))
    np.testing.assert_allclose(sides[:first_level], 8, rtol=1e-5)
    np.testing.assert_allclose(sides[-18:], 128, rtol=1e-5)
