"""Tiled instance prediction: same nuclei as one pass, each once, tiles bounded."""

import numpy as np
from scipy import ndimage

from tools.kaggle.metric import image_score
from tools.inference.tiled_instances import predict_instances_tiled


def _threshold_model(seen):
    def predict_images(images):
        out = []
        for image in images:
            seen.append(image.shape)
            labels, n = ndimage.label(image[..., 0] > 100)
            out.append((labels, np.linspace(0.5, 1.0, n).astype(np.float32)))
        return out

    return predict_images


def test_tiled_instances_match_a_single_pass():
    rng = np.random.default_rng(0)
    image = np.zeros((230, 310, 3), np.uint8)
    for _ in range(40):
        y, x = rng.integers(0, 220), rng.integers(0, 300)
        image[y:y + rng.integers(4, 14), x:x + rng.integers(4, 14)] = 200
    seen = []
    truth, _ = _threshold_model([])([image])[0]
    labels, scores = predict_instances_tiled(_threshold_model(seen), image, tile=96, overlap=32)
    assert max(max(s[:2]) for s in seen) <= 96 and len(seen) > 4
    assert labels.max() == truth.max() == scores.size
    assert image_score(truth, labels)["score"] == 1.0


def test_small_images_go_through_whole():
    image = np.zeros((50, 60, 3), np.uint8)
    image[10:20, 10:20] = 255
    seen = []
    labels, scores = predict_instances_tiled(_threshold_model(seen), image, tile=64, overlap=16)
    assert seen == [(50, 60, 3)] and labels.max() == 1 and scores.shape == (1,)
