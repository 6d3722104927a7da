import numpy as np

from tools.kaggle.metric import image_score
from preprocessing.labels import remove_small
from unet.instances import fill_holes_per_label, probabilities_to_labels, seed_unseeded_blobs
from unet.targets import make_targets


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
