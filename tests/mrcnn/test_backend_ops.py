"""The keras.ops versions of the ops Keras lacks (used on PyTorch) agree with TensorFlow's kernels."""

import numpy as np
import tensorflow as tf
from keras import ops

from mrcnn import backend_ops


def test_gather_crop_and_resize_matches_tensorflow():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(2, 13, 17, 3)).astype(np.float32)
    # inside, partly outside, flipped, degenerate (a point) and fully outside boxes
    boxes = np.array([[0.1, 0.2, 0.8, 0.9], [-0.3, 0.5, 0.6, 1.4], [0.9, 0.8, 0.2, 0.1],
                      [0.5, 0.5, 0.5, 0.5], [1.2, 1.1, 1.6, 1.9]], np.float32)
    index = np.array([0, 1, 1, 0, 1], np.int32)
    for size in [(7, 7), (5, 3), (1, 1)]:
        want = tf.image.crop_and_resize(image, boxes, index, size, extrapolation_value=0.0).numpy()
        got = ops.convert_to_numpy(backend_ops.crop_and_resize_gather(image, boxes, index, size))
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_gather_crop_and_resize_passes_gradients_to_the_image():
    image = tf.Variable(np.ones((1, 8, 8, 2), np.float32))
    with tf.GradientTape() as tape:
        out = backend_ops.crop_and_resize_gather(image, np.array([[0.0, 0.0, 0.5, 0.5]], np.float32),
                                                 np.zeros(1, np.int32), (4, 4))
        total = tf.reduce_sum(out)
    grad = tape.gradient(total, image).numpy()
    assert grad[0, :4, :4].sum() > 0 and grad[0, 5:, 5:].sum() == 0


def _greedy_reference(boxes, iou_threshold):
    """The textbook loop (boxes sorted best first)."""
    def iou(a, b):
        ih = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        iw = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = ih * iw
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union if union > 0 else 0.0

    kept = []
    for i, box in enumerate(boxes):
        if all(iou(boxes[k], box) <= iou_threshold for k in kept):
            kept.append(i)
    return kept


def _random_boxes(rng, n, extent):
    """n boxes [n, (y1, x1, y2, x2)] of side 2-15 with corners in [0, extent)."""
    corner = rng.uniform(0, extent, size=(n, 2))
    return np.concatenate([corner, corner + rng.uniform(2, 15, size=(n, 2))], axis=1).astype(np.float32)


def test_fixed_point_nms_is_exact_greedy_nms():
    rng = np.random.default_rng(1)
    for trial in range(20):
        n = int(rng.integers(1, 60))
        boxes = _random_boxes(rng, n, 40)
        scores = np.sort(rng.uniform(size=n))[::-1].astype(np.float32)
        keep = ops.convert_to_numpy(backend_ops.greedy_nms_keep(boxes, 0.3))
        assert list(np.flatnonzero(keep)) == _greedy_reference(boxes, 0.3), trial
        tf_keep = tf.image.non_max_suppression(boxes, scores, n, 0.3).numpy()
        assert sorted(tf_keep) == list(np.flatnonzero(keep))


def test_take_class_picks_each_rows_class():
    params = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    ids = np.array([[0, 3, 1], [2, 2, 0]])
    got = ops.convert_to_numpy(backend_ops.take_class(params, ids))
    want = np.stack([np.stack([params[b, r, ids[b, r]] for r in range(3)]) for b in range(2)])
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(ops.convert_to_numpy(backend_ops.take_class(params[..., 0], ids)), want[..., 0])


def test_map_images_stacks_per_image_results():
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    (doubled,) = backend_ops.map_images(lambda row: (row * 2,), (x,), [(2,)], ["float32"])
    np.testing.assert_array_equal(ops.convert_to_numpy(doubled), x * 2)


def test_static_padded_nms_gives_tensorflows_kept_boxes_in_order():
    rng = np.random.default_rng(2)
    for trial in range(15):
        n = int(rng.integers(1, 80))
        boxes = _random_boxes(rng, n, 50)
        scores = rng.uniform(size=n).astype(np.float32)  # unsorted: the function sorts
        max_output = int(rng.integers(1, 100))
        threshold = None if trial % 3 == 0 else 0.4
        indices, count = backend_ops.nms_padded_static(ops.convert_to_tensor(boxes), ops.convert_to_tensor(scores),
                                                       max_output, 0.3, score_threshold=threshold)
        kwargs = {} if threshold is None else {"score_threshold": threshold}
        want = tf.image.non_max_suppression(boxes, scores, max_output, 0.3, **kwargs).numpy()
        indices, count = ops.convert_to_numpy(indices), int(ops.convert_to_numpy(count))
        assert indices.shape == (max_output,)
        assert count == len(want), trial
        np.testing.assert_array_equal(indices[:count], want)
        assert not indices[count:].any()


def test_padded_nms_pads_tensorflows_answer():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    indices, count = backend_ops.nms_padded(boxes, scores, 5, 0.5)
    np.testing.assert_array_equal(ops.convert_to_numpy(indices), [0, 2, 0, 0, 0])
    assert int(ops.convert_to_numpy(count)) == 2


def test_crop_and_resize_as_matrix_products_matches_tensorflow():
    rng = np.random.default_rng(3)
    image = rng.normal(size=(2, 9, 13, 3)).astype(np.float32)
    boxes = rng.uniform(-0.3, 1.3, size=(2, 5, 4)).astype(np.float32)  # some sample outside: extrapolation 0
    boxes[0, 0] = [0.2, 0.2, 0.2, 0.2]  # a point
    for size in [(4, 6), (1, 1), (7, 7)]:
        got = ops.convert_to_numpy(backend_ops.crop_and_resize_per_image(image, boxes, size))
        want = tf.image.crop_and_resize(image, boxes.reshape(-1, 4), np.repeat(np.arange(2), 5), size).numpy()
        np.testing.assert_allclose(got.reshape(want.shape), want, atol=1e-5)
