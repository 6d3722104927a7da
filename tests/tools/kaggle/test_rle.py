"""Kaggle run-length encoding: hand-written cases, round trips, malformed strings."""

import numpy as np
import pytest

from preprocessing.errors import NucleiError
from tools.kaggle.rle import decode, encode, labels_to_rles


def random_labels(rng, shape, n_ids):
    """int32 [H, W] with ids drawn from 0..n_ids (so some ids may be absent)."""
    return rng.integers(0, n_ids + 1, size=shape).astype(np.int32)


def test_decode_hand_written_3x3_is_column_major():
    # Pixels are numbered down the columns: 1 4 7 / 2 5 8 / 3 6 9.
    expected = np.array([[1, 0, 0],
                         [1, 1, 0],
                         [0, 1, 1]], bool)
    assert np.array_equal(decode("1 2 5 2 9 1", (3, 3)), expected)
    assert encode(expected) == "1 2 5 2 9 1"


def test_decode_non_square_uses_height_for_columns():
    # 2x3 image, pixels: 1 3 5 / 2 4 6. Run "3 3" covers pixels 3, 4, 5.
    expected = np.array([[0, 1, 1],
                         [0, 1, 0]], bool)
    assert np.array_equal(decode("3 3", (2, 3)), expected)


def test_runs_continue_across_column_boundaries():
    mask = np.zeros((4, 2), bool)
    mask[2:, 0] = True  # bottom of the first column ...
    mask[:1, 1] = True  # ... then the top of the second: one run of 3
    assert encode(mask) == "3 3"


def test_empty_and_full_masks():
    assert encode(np.zeros((5, 4), bool)) == ""
    assert not decode("", (5, 4)).any()
    assert encode(np.ones((5, 4), bool)) == "1 20"
    assert decode("1 20", (5, 4)).all()


def test_labels_to_rles_hand_written_in_id_order():
    labels = np.array([[1, 1, 0],
                       [0, 2, 2],
                       [3, 0, 2]], np.int32)
    # Column-major flat: 1 0 3 | 1 2 0 | 0 2 2
    assert labels_to_rles(labels) == ["1 1 4 1", "5 1 8 2", "3 1"]


def test_labels_to_rles_skips_absent_ids_and_keeps_id_order():
    labels = np.zeros((4, 4), np.int32)
    labels[0, 0] = 9
    labels[3, 3] = 2
    assert labels_to_rles(labels) == ["16 1", "1 1"]  # id 2 first, then id 9
    assert labels_to_rles(np.zeros((3, 3), np.int32)) == []


@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (31, 5), (1, 17), (64, 48)])
def test_round_trip_random_label_images(shape):
    rng = np.random.default_rng(sum(shape))
    for n_ids in (1, 3, 40):
        labels = random_labels(rng, shape, n_ids)
        rles = labels_to_rles(labels)
        ids = [i for i in range(1, n_ids + 1) if (labels == i).any()]
        assert len(rles) == len(ids)
        for image_id, rle in zip(ids, rles):
            mask = labels == image_id
            assert rle == encode(mask)
            assert np.array_equal(decode(rle, shape), mask)


@pytest.mark.parametrize("rle, problem", [
    ("1 2 3", "odd count"),
    ("1 2 x 4", "'x', which is not an integer"),
    ("1 2.5", "'2.5', which is not an integer"),
    ("1 1_0", "'1_0', which is not an integer"),
    ("0 2", "starts at 0"),
    ("-3 2", "starts at -3"),
    ("2 0", "has length 0"),
    ("2 -1", "has length -1"),
    ("10 4", "runs past the last pixel 12 of a 3x4 image"),
    ("13 1", "runs past the last pixel 12"),
    ("5 2 1 1", "comes before run 1"),
    ("5 3 7 1", "overlaps run 1"),
    ("1 99999999999999999999999", "too large"),
    ("2 9223372036854775807", "runs past the last pixel"),
])
def test_malformed_rle_raises_with_reason(rle, problem):
    with pytest.raises(NucleiError, match="sub.csv, image abc: RLE") as caught:
        decode(rle, (3, 4), source="sub.csv, image abc")
    assert problem in str(caught.value)


def test_touching_runs_are_accepted():
    # Non-canonical but unambiguous: two runs that meet.
    assert np.array_equal(decode("1 2 3 2", (2, 2)), np.ones((2, 2), bool))
