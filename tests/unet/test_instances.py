import numpy as np

from tools.kaggle.metric import image_score
from preprocessing.labels import remove_small
from unet.instances import fill_holes_per_label, probabilities_to_labels, seed_unseeded_blobs
from unet.targets import distance_target, make_targets


def one_hot(classes):
    return np.eye(3, dtype=np.float32)[classes]


def test_perfect_probabilities_recover_the_sample_nuclei(sample_dataset):
    scores = []
    for sample in sample_dataset.samples:
        predicted = probabilities_to_labels(one_hot(make_targets(sample.labels)))
        scores.append(image_score(sample.labels, predicted)["score"])
    # The decode is the ceiling of the U-Net: from ideal maps it must be near perfect.
    assert np.mean(scores) > 0.9, scores


def test_touching_pair_split_in_two():
    labels = np.zeros((30, 40), np.int32)
    labels[5:25, 5:18] = 1
    labels[5:25, 18:31] = 2
    predicted = probabilities_to_labels(one_hot(make_targets(labels)))
    assert predicted.max() == 2
    assert image_score(labels, predicted)["score"] > 0.9


def test_unseeded_blob_still_becomes_a_nucleus():
    probs = np.zeros((20, 20, 3), np.float32)
    probs[..., 2] = 1
    probs[5:12, 5:12] = [0.3, 0.5, 0.2]  # foreground but body below the seed threshold
    labels = probabilities_to_labels(probs)
    assert labels.max() == 1 and (labels[5:12, 5:12] == 1).all()


def test_fill_holes_and_remove_small():
    labels = np.zeros((12, 12), np.int32)
    labels[1:8, 1:8] = 1
    labels[4, 4] = 0
    labels[10, 10] = 2
    filled = fill_holes_per_label(labels)
    assert filled[4, 4] == 1
    cleaned, _ = remove_small(filled, 2)
    assert cleaned.max() == 1 and cleaned[10, 10] == 0


def test_unseeded_blobs_become_markers_from_first_id():
    foreground = np.zeros((6, 12), bool)
    foreground[1:5, 1:4] = foreground[1:5, 6:9] = foreground[0, 11] = True
    markers = np.zeros((6, 12), np.int32)
    markers[2, 2] = 1  # only the first blob is seeded
    out, added = seed_unseeded_blobs(markers, foreground, first_id=5)
    assert added == 2 and set(np.unique(out)) == {0, 1, 5, 6}
    # new ids in raster order of the blobs: (0, 11) comes first
    assert out[0, 11] == 5 and (out[1:5, 6:9] == 6).all() and out[2, 2] == 1
    assert seed_unseeded_blobs(out, foreground)[1] == 0  # everything is seeded now


def _two_seeds_with_a_border_ridge():
    """Foreground 20 x 40; seeds at both ends; flat P(body) between them, a border ridge at column 28."""
    probs = np.zeros((20, 40, 3), np.float32)
    probs[..., :] = [0.6, 0.2, 0.2]
    probs[:, 2:6] = [0.95, 0.03, 0.02]
    probs[:, 34:38] = [0.95, 0.03, 0.02]
    probs[:, 28] = [0.6, 0.38, 0.02]  # P(body) as flat as around it: only the border marks it
    return probs


def test_body_minus_border_surface_splits_on_the_predicted_border():
    probs = _two_seeds_with_a_border_ridge()
    split = probabilities_to_labels(probs, surface="body_minus_border")
    assert split.max() == 2
    left = split[10] == split[10, 3]
    assert left[:28].all() and not left[29:].any()  # the boundary sits on the ridge
    plain = probabilities_to_labels(probs, surface="body")  # P(body) alone does not see the ridge
    assert plain.max() == 2 and not np.array_equal(plain, split)


def test_distance_surface_splits_at_the_neck():
    yy, xx = np.mgrid[:30, :50]
    discs = ((yy - 15) ** 2 + (xx - 12) ** 2 < 100) | ((yy - 15) ** 2 + (xx - 36) ** 2 < 100)
    neck = discs | ((abs(yy - 15) < 3) & (xx > 12) & (xx < 36))
    probs = np.zeros((30, 50, 3), np.float32)
    probs[..., 2] = 1
    probs[neck] = [0.6, 0.2, 0.2]  # foreground, body below the seed threshold
    probs[(yy - 15) ** 2 + (xx - 12) ** 2 < 9] = [0.9, 0.05, 0.05]  # a seed in each disc
    probs[(yy - 15) ** 2 + (xx - 36) ** 2 < 9] = [0.9, 0.05, 0.05]
    labels = probabilities_to_labels(probs, surface="distance", min_nucleus_size=1)
    assert labels.max() == 2
    row = labels[15]
    cut = np.flatnonzero(row[:-1] != row[1:])
    cut = cut[(cut > 12) & (cut < 36)]
    assert len(cut) == 1 and 20 <= cut[0] <= 28  # at the neck, between the discs' rims (22 and 26)


def test_unknown_surface_is_refused():
    import pytest

    from preprocessing.errors import NucleiError
    from unet.config import UNetConfig

    with pytest.raises(NucleiError, match="watershed_surface"):
        UNetConfig(watershed_surface="gradient").validate()


def touching_disks():
    yy, xx = np.mgrid[:40, :56]
    labels = np.zeros((40, 56), np.int32)
    labels[(yy - 20) ** 2 + (xx - 17) ** 2 <= 121] = 1
    labels[((yy - 20) ** 2 + (xx - 37) ** 2 <= 121) & (labels == 0)] = 2
    return labels


def test_distance_seeds_split_touching_nuclei_the_body_merges():
    labels = touching_disks()
    # maps of a network that saw one blob: body everywhere inside, no border between the two
    probs = np.zeros(labels.shape + (4,), np.float32)
    probs[..., 2] = 1.0
    probs[labels > 0, :3] = [0.9, 0.05, 0.05]
    probs[..., 3] = distance_target(labels)
    assert probabilities_to_labels(probs[..., :3]).max() == 1
    for surface in ("body", "predicted_distance"):
        split = probabilities_to_labels(probs, seed_threshold=0.5, seed_source="distance", surface=surface)
        assert split.max() == 2 and image_score(labels, split)["score"] > 0.8, surface


def test_distance_decoding_without_the_channel_is_a_clear_error():
    import pytest

    probs = one_hot(make_targets(touching_disks()))
    with pytest.raises(ValueError, match="distance_head"):
        probabilities_to_labels(probs, seed_source="distance")
    with pytest.raises(ValueError, match="distance_head"):
        probabilities_to_labels(probs, surface="predicted_distance")
    with pytest.raises(ValueError, match="seed source"):
        probabilities_to_labels(probs, seed_source="peaks")
