import numpy as np
import pytest

from unet.targets import BACKGROUND, BODY, BORDER, border_widths, contact_pixels, edge_band, make_targets


def two_squares(gap):
    labels = np.zeros((30, 40), np.int32)
    labels[5:25, 5:18] = 1
    labels[5:25, 18 + gap:31 + gap] = 2
    return labels


def test_single_square_has_one_pixel_band_and_body_inside():
    labels = np.zeros((20, 20), np.int32)
    labels[5:15, 5:15] = 1  # area 100: sqrt * 0.08 = 0.8 -> width 1
    classes = make_targets(labels)
    assert (classes[labels == 0] == BACKGROUND).all()
    assert (classes[5, 5:15] == BORDER).all() and (classes[14, 5:15] == BORDER).all()
    assert (classes[6:14, 6:14] == BODY).all()


def test_border_width_grows_with_size():
    labels = np.zeros((100, 100), np.int32)
    labels[2:6, 2:6] = 1  # area 16 -> 1
    labels[20:90, 20:90] = 2  # area 4900 -> 5.6 -> capped at 3
    widths = border_widths(labels, 0.08, 3)
    assert widths[1] == 1 and widths[2] == 3
    classes = make_targets(labels)
    assert (classes[20:23, 50] == BORDER).all() and classes[23, 50] == BODY


def test_touching_nuclei_are_separated_by_border():
    labels = two_squares(gap=0)
    classes = make_targets(labels)
    assert (classes[10:20, 17] == BORDER).all() and (classes[10:20, 18] == BORDER).all()
    body = classes == BODY
    from scipy import ndimage

    assert ndimage.label(body)[1] == 2


def test_gap_between_close_nuclei_is_contact():
    labels = two_squares(gap=2)
    contact = contact_pixels(labels)
    assert contact[10:20, 18:20].all()
    assert not contact[labels > 0].any()
    assert not contact_pixels(two_squares(gap=8)).any()


def test_edge_band_marks_only_nucleus_pixels():
    labels = two_squares(gap=3)
    band = edge_band(labels, 2)
    assert not band[labels == 0].any()
    assert band[labels == 1].sum() < (labels == 1).sum()


def test_empty_labels_give_all_background():
    assert (make_targets(np.zeros((8, 9), np.int32)) == BACKGROUND).all()


def test_opencv_morphology_equals_scipys_grey_morphology(sample_dataset):
    """edge_band / contact_pixels run on OpenCV (float32 ids); scipy's int32 grey morphology is the reference."""
    from scipy import ndimage

    from unet.targets import _disk, contact_pixels, edge_band

    def edge_reference(labels, radius):
        low = ndimage.grey_erosion(labels, footprint=_disk(radius), mode="nearest")
        high = ndimage.grey_dilation(labels, footprint=_disk(radius), mode="nearest")
        return (labels > 0) & ((low != labels) | (high != labels))

    def contact_reference(labels, radius=2):
        big = np.iinfo(np.int32).max
        high = ndimage.grey_dilation(labels, footprint=_disk(radius), mode="constant", cval=0)
        low = ndimage.grey_erosion(np.where(labels > 0, labels, big).astype(np.int32), footprint=_disk(radius),
                                   mode="constant", cval=big)
        return (labels == 0) & (high > 0) & (low < big) & (low != high)

    for sample in sample_dataset.samples:
        labels = sample.labels.astype(np.int32)
        for radius in (1, 2, 3):
            np.testing.assert_array_equal(edge_band(labels, radius), edge_reference(labels, radius))
        np.testing.assert_array_equal(contact_pixels(labels), contact_reference(labels))
    with pytest.raises(ValueError, match="label ids"):
        edge_band(np.full((4, 4), 2 ** 24, np.int32), 1)


def test_distance_target_peaks_at_one_in_every_nucleus_and_dips_between_touching_ones():
    from scipy import ndimage

    from unet.config import UNetConfig
    from unet.targets import distance_target, training_target

    labels = np.zeros((40, 60), np.int32)
    labels[5:25, 5:18] = 1
    labels[5:25, 18:31] = 2  # touches 1
    labels[30:33, 40:43] = 3  # small
    labels[10:30, 40:58] = 4
    distance = distance_target(labels)
    assert distance.dtype == np.float32 and distance.min() == 0.0 and distance.max() == 1.0
    assert (distance[labels == 0] == 0).all() and (distance[labels > 0] > 0).all()
    np.testing.assert_allclose(ndimage.maximum(distance, labels, [1, 2, 3, 4]), 1.0)
    # the shared edge of the touching pair is as low as each nucleus' outer edge
    assert distance[15, 17] == distance[15, 18] == distance[15, 5]
    assert distance[15, 17] < 0.2
    both = training_target(labels, UNetConfig(distance_head=True))
    assert both.shape == (40, 60, 2) and both.dtype == np.float32
    np.testing.assert_array_equal(both[..., 0], make_targets(labels))
    np.testing.assert_array_equal(both[..., 1], distance)
    assert training_target(labels, UNetConfig()).dtype == np.uint8
    assert not distance_target(np.zeros((5, 5), np.int32)).any()
