import numpy as np
from keras import ops

from mrcnn.roi_align import PyramidRoIAlign, roi_align_level, roi_levels


def bilinear_reference(feature, box, stride, pool):
    """numpy RoIAlign: one bilinear sample at each bin centre; pixel i has centre i + 0.5."""
    h, w, c = feature.shape
    y1, x1, y2, x2 = np.asarray(box, np.float64) / stride
    out = np.zeros((pool, pool, c))
    for i in range(pool):
        for j in range(pool):
            y = y1 + (i + 0.5) * (y2 - y1) / pool - 0.5  # pixel-index units
            x = x1 + (j + 0.5) * (x2 - x1) / pool - 0.5
            if y < 0 or y > h - 1 or x < 0 or x > w - 1:
                continue  # crop_and_resize's extrapolation value
            y0, x0 = int(np.floor(y)), int(np.floor(x))
            y1i, x1i = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
            dy, dx = y - y0, x - x0
            out[i, j] = (feature[y0, x0] * (1 - dy) * (1 - dx) + feature[y0, x1i] * (1 - dy) * dx
                         + feature[y1i, x0] * dy * (1 - dx) + feature[y1i, x1i] * dy * dx)
    return out


def test_single_level_matches_numpy_reference():
    rng = np.random.default_rng(0)
    feature = rng.normal(size=(1, 16, 20, 3)).astype(np.float32)
    boxes = np.array([[8, 8, 40, 60], [0, 0, 64, 80], [13.3, 21.7, 29.1, 33.9]], np.float32)
    got = ops.convert_to_numpy(roi_align_level(ops.convert_to_tensor(feature), ops.convert_to_tensor(boxes),
                                               ops.zeros((3,), "int32"), 4, 5))
    for k, box in enumerate(boxes):
        np.testing.assert_allclose(got[k], bilinear_reference(feature[0], box, 4, 5), atol=1e-4)


def test_constant_feature_pools_to_constant():
    feature = np.full((1, 8, 8, 2), 3.0, np.float32)
    got = roi_align_level(ops.convert_to_tensor(feature), ops.convert_to_tensor([[4.0, 4.0, 20.0, 20.0]]),
                          ops.zeros((1,), "int32"), 4, 7)
    np.testing.assert_allclose(ops.convert_to_numpy(got), 3.0, atol=1e-5)


def test_levels():
    boxes = ops.convert_to_tensor([[0, 0, 224, 224], [0, 0, 112, 112], [0, 0, 10, 10], [0, 0, 900, 900]], "float32")
    np.testing.assert_array_equal(ops.convert_to_numpy(roi_levels(boxes)), [4, 3, 2, 5])


def test_pyramid_routes_each_box_to_its_level_and_keeps_order():
    rng = np.random.default_rng(1)
    size = 256
    feats = [rng.normal(size=(2, size // s, size // s, 4)).astype(np.float32) for s in (4, 8, 16, 32)]
    boxes = np.array([[[10, 10, 30, 40], [0, 0, 200, 220]], [[50, 50, 150, 160], [5, 5, 20, 12]]], np.float32)
    layer = PyramidRoIAlign(3)
    got = ops.convert_to_numpy(layer([ops.convert_to_tensor(boxes)] + [ops.convert_to_tensor(f) for f in feats]))
    assert got.shape == (2, 2, 3, 3, 4)
    levels = ops.convert_to_numpy(roi_levels(ops.convert_to_tensor(boxes)))
    for b in range(2):
        for n in range(2):
            level = levels[b, n]
            ref = bilinear_reference(feats[level - 2][b], boxes[b, n], 2 ** level, 3)
            np.testing.assert_allclose(got[b, n], ref, atol=1e-4)
