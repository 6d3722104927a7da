"""Merging instance predictions: clusters by IoU, votes on pixels, overlaps by score."""

import numpy as np

from tools.inference.merge import merge_instances
from tools.kaggle.metric import image_score


def _blobs(boxes, shape=(40, 60)):
    labels = np.zeros(shape, np.int32)
    for k, (y0, y1, x0, x1) in enumerate(boxes, start=1):
        labels[y0:y1, x0:x1] = k
    return labels


def test_identical_predictions_merge_to_themselves():
    labels = _blobs([(2, 10, 2, 12), (15, 30, 20, 35), (5, 12, 40, 55)])
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    merged, merged_scores = merge_instances([(labels, scores)] * 4)
    assert image_score(labels, merged)["score"] == 1.0
    np.testing.assert_allclose(sorted(merged_scores), sorted(scores), rtol=1e-6)


def test_rare_instances_dropped_and_scores_averaged_over_all_predictions():
    common = (2, 10, 2, 12)
    a = _blobs([common, (20, 30, 20, 30)])  # the second nucleus only here
    b = _blobs([common])
    c = _blobs([common])
    merged, scores = merge_instances([(a, [0.9, 0.9]), (b, [0.6]), (c, [0.3])])
    assert merged.max() == 1 and (merged[20:30, 20:30] == 0).all()
    np.testing.assert_allclose(scores, [0.6], rtol=1e-6)
    kept, kept_scores = merge_instances([(a, [0.9, 0.9]), (b, [0.6]), (c, [0.3])], min_agreement=0.3)
    assert kept.max() == 2 and np.isclose(kept_scores.min(), 0.3)


def test_pixels_follow_the_majority():
    a = _blobs([(10, 20, 10, 20)])
    b = _blobs([(10, 20, 10, 22)])
    c = _blobs([(10, 21, 10, 20)])
    merged, _ = merge_instances([(a, [1.0]), (b, [1.0]), (c, [1.0])])
    np.testing.assert_array_equal(merged > 0, a > 0)


def test_overlaps_go_to_the_higher_score_and_ids_may_skip():
    low = np.zeros((40, 60), np.int32)
    low[5:20, 5:20] = 3  # id 3 (ids 1, 2 absent)
    high = np.zeros((40, 60), np.int32)
    high[12:30, 12:30] = 1
    merged, scores = merge_instances([(low, [0, 0, 0.4]), (high, [0.9])], min_agreement=0.5)
    assert merged.max() == 2
    overlap = merged[12:20, 12:20]
    assert (overlap == overlap[0, 0]).all()
    assert np.isclose(scores[overlap[0, 0] - 1], 0.45)


def test_empty_predictions():
    empty = np.zeros((8, 9), np.int32)
    merged, scores = merge_instances([(empty, []), (empty, [])])
    assert merged.shape == (8, 9) and merged.max() == 0 and scores.size == 0
