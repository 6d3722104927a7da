"""Property-based tests (hypothesis): RLE and the DSB metric against brute-force references written here."""

from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tools.kaggle.metric import THRESHOLDS, image_score, iou_matrix
from tools.kaggle.rle import decode, encode, labels_to_rles, parse_runs

FAST = settings(max_examples=80, deadline=None, database=None)  # no .hypothesis/ folder in the repo
shapes = st.tuples(st.integers(1, 12), st.integers(1, 12))


def masks(dtype=bool):
    return shapes.flatmap(lambda shape: arrays(dtype, shape))


def label_images(max_id=6):
    return shapes.flatmap(lambda shape: arrays(np.int32, shape, elements=st.integers(0, max_id)))


@st.composite
def label_pairs(draw):
    """(true, predicted) on one shape; the prediction is the truth with some pixels changed,
    so matches at every IoU threshold occur, not only unrelated pairs."""
    true = draw(label_images())
    noise = draw(arrays(np.int32, true.shape, elements=st.integers(0, 6)))
    changed = draw(arrays(bool, true.shape, elements=st.booleans()))
    keep_some = draw(st.floats(0, 1))
    changed &= np.random.default_rng(draw(st.integers(0, 2**16))).random(true.shape) > keep_some
    offset = draw(st.sampled_from([0, 10]))  # ids need not match, nor be consecutive
    pred = np.where(changed, noise, true)
    return true, np.where(pred > 0, pred + offset, 0)


# --- brute-force references ------------------------------------------------------------------

def brute_encode(mask):
    """Runs by walking the pixels one at a time in column-major order, 1-indexed."""
    height, width = mask.shape
    numbers, start, length = [], None, 0
    for index in range(height * width):
        row, column = index % height, index // height
        if mask[row, column]:
            if start is None:
                start, length = index + 1, 0
            length += 1
        elif start is not None:
            numbers += [start, length]
            start = None
    if start is not None:
        numbers += [start, length]
    return " ".join(map(str, numbers))


def brute_decode(rle, shape):
    height, width = shape
    mask = np.zeros(shape, bool)
    numbers = [int(t) for t in rle.split()]
    for start, length in zip(numbers[0::2], numbers[1::2]):
        for index in range(start - 1, start - 1 + length):
            mask[index % height, index // height] = True
    return mask


def brute_ious(true, pred):
    """Exact IoU (Fraction) of every true id with every predicted id, by loops; ids in increasing order."""
    true_ids = [int(i) for i in np.unique(true) if i > 0]
    pred_ids = [int(i) for i in np.unique(pred) if i > 0]
    table = [[Fraction(0)] * len(pred_ids) for _ in true_ids]
    for a, t in enumerate(true_ids):
        for b, p in enumerate(pred_ids):
            inter = union = 0
            for y in range(true.shape[0]):
                for x in range(true.shape[1]):
                    inside_t, inside_p = true[y, x] == t, pred[y, x] == p
                    inter += inside_t and inside_p
                    union += inside_t or inside_p
            table[a][b] = Fraction(inter, union)
    return table


def brute_score(true, pred):
    """Mean over t = 0.50, 0.55, ..., 0.95 of TP / (TP + FP + FN), a match where IoU > t."""
    table = brute_ious(true, pred)
    n_true, n_pred = len(table), (len(table[0]) if table else len([i for i in np.unique(pred) if i > 0]))
    precisions = []
    for k in range(10):
        threshold = Fraction(10 + k, 20)
        matched_true = {a for a, row in enumerate(table) for value in row if value > threshold}
        matched_pred = {b for row in table for b, value in enumerate(row) if value > threshold}
        tp = len(matched_true)
        assert tp == len(matched_pred)  # above IoU 0.5 a match is one to one
        fp, fn = n_pred - tp, n_true - tp
        precisions.append(1.0 if tp + fp + fn == 0 else tp / (tp + fp + fn))
    return precisions


# --- RLE -----------------------------------------------------------------------------------------

@FAST
@given(masks())
def test_encode_matches_pixel_by_pixel_runs_and_decodes_back(mask):
    rle = encode(mask)
    assert rle == brute_encode(mask)
    np.testing.assert_array_equal(decode(rle, mask.shape), mask)
    np.testing.assert_array_equal(brute_decode(rle, mask.shape), mask)


@FAST
@given(masks(np.uint8))
def test_runs_are_sorted_maximal_and_inside_the_image(mask):
    starts, lengths = parse_runs(encode(mask != 0), mask.shape)
    assert np.all(lengths >= 1) and (starts + lengths <= mask.size).all()
    assert np.all(starts[1:] > starts[:-1] + lengths[:-1])  # a gap between runs: never two that touch
    assert lengths.sum() == np.count_nonzero(mask)


@FAST
@given(label_images())
def test_labels_to_rles_is_one_brute_force_string_per_present_id(labels):
    ids = [i for i in np.unique(labels) if i > 0]
    assert labels_to_rles(labels) == [brute_encode(labels == i) for i in ids]


# --- metric --------------------------------------------------------------------------------------

@FAST
@given(label_pairs())
def test_iou_matrix_matches_loops(pair):
    true, pred = pair
    expected = np.array([[float(v) for v in row] for row in brute_ious(true, pred)], float)
    got = iou_matrix(true, pred)
    assert got.shape == (len(np.unique(true[true > 0])), len(np.unique(pred[pred > 0])))
    np.testing.assert_allclose(got, expected.reshape(got.shape), rtol=0, atol=1e-12)


@FAST
@given(label_pairs())
def test_image_score_matches_the_brute_force_definition(pair):
    true, pred = pair
    result = image_score(true, pred)
    expected = brute_score(true, pred)
    np.testing.assert_allclose(result["per_threshold"], expected, rtol=0, atol=1e-12)
    assert abs(result["score"] - np.mean(expected)) < 1e-12
    assert len(THRESHOLDS) == 10 and np.allclose(THRESHOLDS, 0.5 + 0.05 * np.arange(10))


@FAST
@given(label_images())
def test_a_prediction_equal_to_the_truth_scores_one_and_renumbering_changes_nothing(labels):
    assert image_score(labels, labels)["score"] == 1.0
    renumbered = np.where(labels > 0, 7 * labels + 3, 0)
    assert image_score(labels, renumbered)["score"] == 1.0
    empty = np.zeros_like(labels)
    assert image_score(labels, empty)["score"] == (1.0 if labels.max() == 0 else 0.0)
