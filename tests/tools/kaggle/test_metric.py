"""DSB 2018 metric: hand-computed cases and agreement with a slow reference."""

from fractions import Fraction

import numpy as np
import pytest

from preprocessing.errors import NucleiError
from tools.kaggle.metric import THRESHOLDS, dataset_score, image_score, iou_matrix


def boxes_to_labels(shape, boxes):
    """[(y1, x1, y2, x2), ...] (end exclusive) -> int32 labels, box i gets id i + 1."""
    labels = np.zeros(shape, np.int32)
    for number, (y1, x1, y2, x2) in enumerate(boxes, start=1):
        labels[y1:y2, x1:x2] = number
    return labels


def test_thresholds_are_kaggles():
    assert np.allclose(THRESHOLDS, np.arange(0.5, 1.0, 0.05))
    assert len(THRESHOLDS) == 10


def test_perfect_prediction_scores_one():
    true = boxes_to_labels((40, 40), [(0, 0, 10, 10), (20, 20, 30, 35), (5, 15, 12, 19)])
    result = image_score(true, true)
    assert result["score"] == 1.0
    assert np.array_equal(result["tp"], np.full(10, 3))
    assert result["n_true"] == result["n_pred"] == 3


def test_ids_need_not_match_or_be_consecutive():
    true = boxes_to_labels((40, 40), [(0, 0, 10, 10), (20, 20, 30, 35)])
    pred = np.where(true == 1, 70, np.where(true == 2, 3, 0)).astype(np.int32)
    assert image_score(true, pred)["score"] == 1.0


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int64, np.uint64])
def test_any_integer_dtype_gives_the_same_score(dtype):
    true = boxes_to_labels((20, 20), [(2, 2, 10, 10), (12, 12, 18, 19)])
    pred = boxes_to_labels((20, 20), [(2, 4, 10, 12), (12, 12, 18, 18)])
    expected = image_score(true, pred)
    result = image_score(true.astype(dtype), pred.astype(dtype))
    assert result["score"] == expected["score"] and np.array_equal(result["tp"], expected["tp"])
    assert 0 < result["score"] < 1


def test_nothing_predicted_scores_zero():
    true = boxes_to_labels((20, 20), [(0, 0, 10, 10)])
    result = image_score(true, np.zeros_like(true))
    assert result["score"] == 0.0
    assert np.array_equal(result["fn"], np.ones(10))


def test_both_empty_scores_one_and_prediction_on_empty_scores_zero():
    empty = np.zeros((8, 8), np.int32)
    assert image_score(empty, empty)["score"] == 1.0
    assert image_score(empty, boxes_to_labels((8, 8), [(0, 0, 2, 2)]))["score"] == 0.0


@pytest.mark.parametrize("side, shift, expected_hits", [
    (8, 2, 2),   # IoU = 6*8 / (10*8) = 0.6 exactly: above 0.50, 0.55 only (0.6 is not > 0.6)
    (14, 2, 5),  # IoU = 12/16 = 0.75 exactly: above 0.50 .. 0.70, not 0.75
    (9, 2, 3),   # IoU = 7/11 = 0.636: above 0.50, 0.55, 0.60
    (4, 2, 0),   # IoU = 2/6 = 0.333: no match anywhere
    (20, 1, 9),  # IoU = 19/21 = 0.905: above all but 0.95
])
def test_shifted_square_at_known_iou(side, shift, expected_hits):
    shape = (side + 4, side + shift + 4)
    true = boxes_to_labels(shape, [(2, 2, 2 + side, 2 + side)])
    pred = boxes_to_labels(shape, [(2, 2 + shift, 2 + side, 2 + side + shift)])
    assert iou_matrix(true, pred)[0, 0] == pytest.approx((side - shift) / (side + shift))
    # One true, one pred: precision is 1 where they match, 0 (TP 0, FP 1, FN 1) elsewhere.
    assert image_score(true, pred)["score"] == pytest.approx(expected_hits / 10)


def test_nucleus_split_in_two_halves():
    # A (10x10) predicted as two 10x5 halves: each half has IoU 50/100 = 0.5, not > 0.5,
    # so A is never found. B is predicted exactly. At every threshold:
    # TP = 1 (B), FP = 2 (halves), FN = 1 (A) -> 1/4.
    shape = (12, 30)
    true = boxes_to_labels(shape, [(0, 0, 10, 10), (0, 15, 10, 25)])
    pred = boxes_to_labels(shape, [(0, 0, 10, 5), (0, 5, 10, 10), (0, 15, 10, 25)])
    result = image_score(true, pred)
    assert np.array_equal(result["tp"], np.full(10, 1))
    assert np.array_equal(result["fp"], np.full(10, 2))
    assert np.array_equal(result["fn"], np.full(10, 1))
    assert result["score"] == pytest.approx(0.25)


def test_nucleus_split_unevenly():
    # A (10x10) split into 10x6 (IoU 60/100 = 0.6) and 10x4; B exact.
    # t = 0.50, 0.55: TP 2, FP 1, FN 0 -> 2/3.  t >= 0.60: TP 1, FP 2, FN 1 -> 1/4.
    # Score = (2 * 2/3 + 8 * 1/4) / 10 = 1/3.
    shape = (12, 30)
    true = boxes_to_labels(shape, [(0, 0, 10, 10), (0, 15, 10, 25)])
    pred = boxes_to_labels(shape, [(0, 0, 10, 6), (0, 6, 10, 10), (0, 15, 10, 25)])
    result = image_score(true, pred)
    assert result["per_threshold"] == pytest.approx([2 / 3] * 2 + [1 / 4] * 8)
    assert result["score"] == pytest.approx(1 / 3)


def test_merged_pair():
    # True A 10x12 (120 px) and B 10x8 (80 px) side by side, predicted as one 10x20 blob.
    # IoU(A) = 120/200 = 0.6, IoU(B) = 80/200 = 0.4.
    # t = 0.50, 0.55: TP 1, FP 0, FN 1 -> 1/2.  t >= 0.60: TP 0, FP 1, FN 2 -> 0.
    # Score = 2 * 1/2 / 10 = 0.1.
    shape = (10, 20)
    true = boxes_to_labels(shape, [(0, 0, 10, 12), (0, 12, 10, 20)])
    pred = boxes_to_labels(shape, [(0, 0, 10, 20)])
    assert iou_matrix(true, pred)[:, 0] == pytest.approx([0.6, 0.4])
    assert image_score(true, pred)["score"] == pytest.approx(0.1)


def test_shape_mismatch_and_bad_labels_raise():
    with pytest.raises(NucleiError, match="true labels are"):
        image_score(np.zeros((4, 4), np.int32), np.zeros((4, 5), np.int32))
    with pytest.raises(NucleiError, match="negative id"):
        image_score(np.zeros((4, 4), np.int32), -np.ones((4, 4), np.int32))
    with pytest.raises(NucleiError, match="integers"):
        image_score(np.zeros((4, 4)), np.zeros((4, 4)))


# --- agreement with a slow, obviously correct reference ---------------------------

def reference_score(true, pred):
    """Loop over thresholds and every pair of nuclei; exact fractions for IoU > t."""
    true_ids = [i for i in np.unique(true) if i != 0]
    pred_ids = [i for i in np.unique(pred) if i != 0]
    if not true_ids and not pred_ids:
        return 1.0
    precisions = []
    for k in range(10, 20):
        threshold = Fraction(k, 20)
        matched_true, matched_pred = set(), set()
        for t in true_ids:
            for p in pred_ids:
                intersection = int(np.sum((true == t) & (pred == p)))
                union = int(np.sum((true == t) | (pred == p)))
                if Fraction(intersection, union) > threshold:
                    matched_true.add(t)
                    matched_pred.add(p)
        tp = len(matched_true)
        assert tp == len(matched_pred)  # matches are one to one above 0.5
        fp = len(pred_ids) - tp
        fn = len(true_ids) - tp
        precisions.append(tp / (tp + fp + fn))
    return float(np.mean(precisions))


def random_instances(rng, shape, n):
    """Random overlapping rectangles painted in turn: int32 labels with gaps in ids."""
    labels = np.zeros(shape, np.int32)
    for number in range(1, n + 1):
        y, x = rng.integers(0, shape[0] - 2), rng.integers(0, shape[1] - 2)
        h, w = rng.integers(3, 14, size=2)
        labels[y:y + h, x:x + w] = 3 * number  # ids 3, 6, 9, ...: not consecutive
    return labels


def perturbed(rng, true, n_extra):
    """A plausible prediction: most nuclei shifted by 0-1 px, some dropped, some extra."""
    pred = np.zeros_like(true)
    for number, t in enumerate(np.unique(true)[1:], start=1):
        if rng.random() < 0.15:
            continue  # missed
        dy, dx = rng.choice([-1, 0, 0, 1], size=2)
        mask = np.roll(true == t, (dy, dx), axis=(0, 1))
        pred[mask] = number
    extra = random_instances(rng, true.shape, n_extra)
    pred[(extra > 0) & (pred == 0)] = extra[(extra > 0) & (pred == 0)] + 1000
    return pred


@pytest.mark.parametrize("seed", range(8))
def test_agrees_with_slow_reference_on_random_images(seed):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(20, 50)), int(rng.integers(20, 50)))
    true = random_instances(rng, shape, int(rng.integers(0, 12)))
    pred = perturbed(rng, true, int(rng.integers(0, 4)))
    assert image_score(true, pred)["score"] == pytest.approx(reference_score(true, pred), abs=1e-12)


def test_iou_matrix_matches_pixel_counts():
    rng = np.random.default_rng(7)
    true = random_instances(rng, (30, 30), 8)
    pred = perturbed(rng, true, 2)
    matrix = iou_matrix(true, pred)
    true_ids, pred_ids = np.unique(true)[1:], np.unique(pred)[1:]
    assert matrix.shape == (len(true_ids), len(pred_ids))
    for i, t in enumerate(true_ids):
        for j, p in enumerate(pred_ids):
            union = np.sum((true == t) | (pred == p))
            assert matrix[i, j] == pytest.approx(np.sum((true == t) & (pred == p)) / union)


def test_dataset_score_means_types_and_missing_images():
    true = boxes_to_labels((20, 20), [(2, 2, 10, 10)])
    shifted = boxes_to_labels((20, 20), [(2, 4, 10, 12)])  # IoU 6/10 = 0.6 -> 0.2
    pairs = {"a": (true, true), "b": (true, shifted), "c": (true, None)}
    result = dataset_score(pairs, {"a": "fluorescence", "b": "fluorescence", "c": "histology"})
    assert result["score"] == pytest.approx((1.0 + 0.2 + 0.0) / 3)
    assert [row["score"] for row in result["per_image"]] == pytest.approx([1.0, 0.2, 0.0])
    assert result["per_type"] == pytest.approx({"fluorescence": 0.6, "histology": 0.0})
    assert result["missing"] == ["c"]
    assert result["per_threshold"][0] == pytest.approx(2 / 3)  # a and b match at 0.5
    assert result["per_threshold"][2] == pytest.approx(1 / 3)  # only a at 0.6
    assert result["per_image"][1] == {"id": "b", "type": "fluorescence", "n_true": 1, "n_pred": 1,
                                      "score": pytest.approx(0.2)}
    # Same result from an iterable of triples, without types.
    triples = dataset_score([("a", true, true), ("b", true, shifted), ("c", true, None)])
    assert triples["score"] == pytest.approx(result["score"])
    assert triples["per_type"] == {} and triples["per_image"][0]["type"] is None
