"""tools.inference.ensemble: Mask R-CNN instances refined and completed by the U-Net's maps."""

import numpy as np
import pytest

from preprocessing.errors import NucleiError
from tools.inference.ensemble import EnsembleConfig, ensemble_instances
from tools.kaggle.metric import image_score
from unet.targets import make_targets


def ideal_probabilities(labels):
    return np.eye(3, dtype=np.float32)[make_targets(labels)]


def test_nucleus_missed_by_mrcnn_is_added_from_the_unet(sample_dataset):
    truth = sample_dataset.samples[0].labels
    mrcnn = np.where(truth == 1, 0, truth)  # Mask R-CNN missed nucleus 1
    mrcnn_ids = np.unique(mrcnn[mrcnn > 0])
    scores = np.full(len(mrcnn_ids), 0.99, np.float32)
    from preprocessing.labels import relabel_consecutive

    labels, out_scores = ensemble_instances(ideal_probabilities(truth), relabel_consecutive(mrcnn), scores)
    assert len(out_scores) == labels.max()
    assert labels[truth == 1].min() > 0  # the missed nucleus is covered now
    # the regrown masks stay close to the truth (the watershed may reshape correct ones slightly)
    assert image_score(truth, labels)["score"] > 0.9
    without = ensemble_instances(ideal_probabilities(truth), relabel_consecutive(mrcnn), scores,
                                 EnsembleConfig(add_unet_nuclei=False))[0]
    assert without.max() < labels.max() and (without[truth == 1] == 0).mean() > 0.5


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(NucleiError, match="differ"):
        ensemble_instances(np.zeros((4, 4, 3), np.float32), np.zeros((5, 4), np.int32), np.zeros(0, np.float32))


def test_unknown_field_is_named():
    with pytest.raises(NucleiError, match="ensemble.*bogus"):
        EnsembleConfig.from_dict({"bogus": 1})


def test_mrcnn_weight_lets_a_detection_hold_where_the_unet_is_unsure():
    # U-Net: 0.6 foreground over a square (body 0.5, border 0.1), background elsewhere
    probabilities = np.zeros((20, 20, 3), np.float32)
    probabilities[..., 2] = 1.0
    probabilities[5:15, 5:15] = (0.5, 0.1, 0.4)
    mrcnn = np.zeros((20, 20), np.int32)
    mrcnn[6:14, 6:14] = 1
    scores = np.array([0.9], np.float32)
    base = dict(foreground_threshold=0.7, keep_score=1.01, add_unet_nuclei=False)
    alone, _ = ensemble_instances(probabilities, mrcnn, scores, EnsembleConfig(**base))
    assert alone.max() == 0  # 0.6 < 0.7: the U-Net alone rejects it
    both, both_scores = ensemble_instances(probabilities, mrcnn, scores, EnsembleConfig(mrcnn_weight=0.4, **base))
    # 0.6 * 0.6 + 0.4 = 0.76 on the detection, 0.36 beside it: exactly the detection survives
    assert both.max() == 1 and list(both_scores) == [np.float32(0.9)]
    np.testing.assert_array_equal(both > 0, mrcnn > 0)
    with pytest.raises(NucleiError, match="mrcnn_weight"):
        EnsembleConfig(mrcnn_weight=1.0)
