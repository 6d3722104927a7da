"""Post-processing: growth goes into background only, scores stay with their nuclei."""

import numpy as np
import pytest
from scipy import ndimage

from preprocessing.errors import NucleiError
from preprocessing.labels import compact, remove_small
from tools.inference.postprocess import (PostprocessConfig, closing, dilate, fill_holes, keep_top, nucleus_contrast,
                                         postprocess, remove_inverted, remove_unsure)


def _touching_pair():
    labels = np.zeros((20, 30), np.int32)
    labels[5:15, 3:12] = 1
    labels[5:15, 12:20] = 2  # touches nucleus 1
    labels[2:5, 25:28] = 3
    return labels


def test_dilation_grows_into_background_only():
    labels = _touching_pair()
    grown, _ = dilate(labels, 2)
    kept = labels > 0
    np.testing.assert_array_equal(grown[kept], labels[kept])  # no nucleus pixel changes owner
    assert set(np.unique(grown)) == {0, 1, 2, 3}
    for index in (1, 2, 3):
        assert (grown == index).sum() > (labels == index).sum()
        distance = ndimage.distance_transform_edt(labels != index)
        assert distance[grown == index].max() <= 2  # grew by at most 2 pixels


def test_dilation_splits_a_gap_between_neighbours():
    labels = np.zeros((5, 11), np.int32)
    labels[:, :4] = 1
    labels[:, 7:] = 2
    grown, _ = dilate(labels, 3)
    assert (grown[:, 4] == 1).all() and (grown[:, 6] == 2).all()
    assert not (grown == 0).any()


def test_fill_holes_fills_own_hole_not_shared_background():
    labels = np.zeros((12, 20), np.int32)
    labels[1:8, 1:8] = 1
    labels[3:5, 3:5] = 0  # hole of nucleus 1
    labels[1:8, 10:13] = 2
    labels[1:8, 15:18] = 2  # nucleus 2 in two parts; the gap is not a hole
    filled, _ = fill_holes(labels)
    assert (filled[3:5, 3:5] == 1).all()
    assert (filled[1:8, 13:15] == 0).all()
    np.testing.assert_array_equal(filled[labels > 0], labels[labels > 0])


def test_closing_bridges_a_notch_without_touching_neighbours():
    labels = np.zeros((20, 20), np.int32)
    labels[4:14, 4:14] = 1
    labels[8:10, 4:9] = 0  # a notch into nucleus 1
    labels[8:10, 0:3] = 2
    closed, _ = closing(labels, 2)
    assert (closed[8:10, 6:9] == 1).all()
    np.testing.assert_array_equal(closed[labels > 0], labels[labels > 0])


def test_remove_small_and_keep_top_keep_scores_aligned():
    labels = _touching_pair()
    scores = np.array([0.9, 0.2, 0.5], np.float32)
    out, out_scores = remove_small(labels, 10, scores)
    assert out.max() == 2 and list(out_scores) == [0.9, 0.2]
    top, top_scores = keep_top(labels, 2, scores)
    assert top.max() == 2 and list(top_scores) == [0.9, 0.5]
    assert ((top == 2) == (labels == 3)).all()
    largest, none = keep_top(labels, 1)
    assert none is None and ((largest == 1) == (labels == 1)).all()


def test_remove_unsure_drops_low_scores_and_needs_scores():
    labels = _touching_pair()
    scores = np.array([0.9, 0.2, 0.5], np.float32)
    out, out_scores = remove_unsure(labels, 0.5, scores)
    assert out.max() == 2 and list(out_scores) == [0.9, 0.5]
    assert ((out == 2) == (labels == 3)).all()
    unchanged, none = remove_unsure(labels, 0.5, None)  # nothing to judge by: keep all
    assert none is None and (unchanged == labels).all()
    with pytest.raises(NucleiError):
        PostprocessConfig(min_score=1.5)


def test_compact_renumbers_gaps():
    labels = np.array([[0, 4, 4], [9, 0, 4]])
    out, scores = compact(labels, np.arange(9, dtype=np.float32))
    np.testing.assert_array_equal(out, [[0, 1, 1], [2, 0, 1]])
    np.testing.assert_array_equal(scores, [3, 8])


def test_postprocess_default_is_identity_and_config_validates():
    labels = _touching_pair()
    out, _ = postprocess(labels)
    np.testing.assert_array_equal(out, labels)
    with pytest.raises(NucleiError):
        PostprocessConfig(dilate=-1)
    with pytest.raises(NucleiError):
        PostprocessConfig.from_dict({"dilation": 1})
    config = PostprocessConfig(dilate=1, fill_holes=True, closing=1, min_size=5, max_count=2)
    out, scores = postprocess(labels, np.array([0.1, 0.9, 0.8]), config)
    assert out.max() == 2 and list(np.round(scores, 2)) == [0.9, 0.8]
    assert PostprocessConfig.from_dict(config.to_dict()) == config


def _discs_image(background, nucleus, pale):
    """A grey or coloured uint8 [60, 90, 3] image with a dark-or-bright nucleus at (30, 20), a
    pale-or-dim blob at (30, 65), and labels outlining both (ids 1, 2)."""
    yy, xx = np.mgrid[:60, :90]
    first = (yy - 30) ** 2 + (xx - 20) ** 2 <= 64
    second = (yy - 30) ** 2 + (xx - 65) ** 2 <= 64
    image = np.empty((60, 90, 3), np.uint8)
    image[:] = background
    image[first] = nucleus
    image[second] = pale
    return image, first.astype(np.int32) + 2 * second.astype(np.int32)


@pytest.mark.parametrize("background, nucleus, pale", [
    ((200, 140, 190), (90, 40, 120), (235, 225, 235)),  # H&E: purple nucleus, pale goblet cell on pink
    ((20, 20, 20), (200, 200, 200), (5, 5, 5)),         # fluorescence: bright nucleus, dark hole
])
def test_inverted_nuclei_are_dropped_by_the_kind_of_image(background, nucleus, pale):
    image, labels = _discs_image(background, nucleus, pale)
    contrast = nucleus_contrast(image, labels)
    assert contrast[0] > 0.1 and contrast[1] < -0.05
    out, scores = remove_inverted(labels, image, np.array([0.9, 0.95], np.float32))
    assert out.max() == 1 and (out == 1).sum() == (labels == 1).sum() and list(scores) == [np.float32(0.9)]
    np.testing.assert_array_equal(out == 1, labels == 1)


def test_dense_tissue_darker_than_half_still_counts_as_stained():
    # mean lightness under 0.5 (the inversion rule's cut) and still a stained image: kind decides
    image, labels = _discs_image((120, 60, 110), (40, 10, 60), (170, 150, 170))
    assert nucleus_contrast(image, labels)[0] > 0 > nucleus_contrast(image, labels)[1]


def test_a_nucleus_enclosed_by_others_is_kept_and_the_step_needs_the_image():
    labels = np.ones((30, 30), np.int32)
    labels[10:20, 10:20] = 2  # nucleus 2 touches nothing but nucleus 1: no free ring
    image = np.full((30, 30, 3), 200, np.uint8)
    image[10:20, 10:20] = 250  # lighter than around it, on a light background
    assert nucleus_contrast(image, labels)[1] == 0
    assert remove_inverted(labels, image)[0].max() == 2
    with pytest.raises(NucleiError, match="needs the image"):
        postprocess(labels, None, PostprocessConfig(drop_inverted=True))
    with pytest.raises(NucleiError, match="differ in size"):
        nucleus_contrast(image[:20], labels)
    out, _ = postprocess(labels, None, PostprocessConfig(drop_inverted=True), image)
    assert out.max() == 2


def test_a_dim_fluorescent_nucleus_beside_a_bright_band_is_kept():
    # darker than its ring (half of it the saturated band), brighter than the dark background
    image = np.full((60, 90, 3), 10, np.uint8)
    image[:, 40:60] = 255
    yy, xx = np.mgrid[:60, :90]
    nucleus = (yy - 30) ** 2 + (xx - 38) ** 2 <= 36  # touching the band
    image[nucleus] = 90
    labels = nucleus.astype(np.int32)
    assert nucleus_contrast(image, labels)[0] > 0
    assert remove_inverted(labels, image)[0].max() == 1
