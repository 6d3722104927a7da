import numpy as np
from keras import ops

from mrcnn import boxes as B
from mrcnn import graph_boxes as G


def _random_boxes(rng, n):
    start = rng.uniform(0, 50, (n, 2))
    return np.concatenate([start, start + rng.uniform(1, 30, (n, 2))], 1).astype(np.float32)


def test_graph_ops_match_numpy():
    rng = np.random.default_rng(0)
    a, b = _random_boxes(rng, 20), _random_boxes(rng, 20)
    std = (0.1, 0.1, 0.2, 0.2)
    np.testing.assert_allclose(ops.convert_to_numpy(G.encode(ops.convert_to_tensor(a), ops.convert_to_tensor(b), std)), B.encode(a, b, std),
                               rtol=1e-3, atol=1e-3)
    d = B.encode(a, b, std)
    np.testing.assert_allclose(ops.convert_to_numpy(G.decode(ops.convert_to_tensor(d), ops.convert_to_tensor(b), std)), B.decode(d, b, std),
                               rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(ops.convert_to_numpy(G.iou(ops.convert_to_tensor(a), ops.convert_to_tensor(b))), B.iou_matrix(a, b), atol=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(G.clip(ops.convert_to_tensor(a), 20, 30)), B.clip_boxes(a, 20, 30))
