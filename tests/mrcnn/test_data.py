import numpy as np
import pytest

from mrcnn.anchors import anchor_count
from mrcnn.config import TinyConfig
from mrcnn.data import MrcnnDataset, ground_truth, model_input
from preprocessing.dataset import Sample
from preprocessing.errors import NucleiError


def _sample(seed=0, size=(100, 140)):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 50, size + (3,), dtype=np.uint8)
    labels = np.zeros(size, np.int32)
    labels[10:20, 10:30] = 1
    labels[50:70, 60:75] = 2
    image[labels > 0] = 200
    return Sample(f"s{seed}", image, labels, "fluorescence", None)


def test_ground_truth_boxes_and_mini_masks():
    config = TinyConfig(MAX_GT_INSTANCES=4, MINI_MASK_SHAPE=(8, 8))
    ids, boxes, masks = ground_truth(_sample().labels, config)
    np.testing.assert_array_equal(ids, [1, 1, 0, 0])
    np.testing.assert_array_equal(boxes[:2], [[10, 10, 20, 30], [50, 60, 70, 75]])
    assert masks.shape == (4, 8, 8) and masks[:2].min() == 1.0 and masks[2:].max() == 0.0


def test_largest_nuclei_kept_when_too_many():
    labels = np.zeros((20, 20), np.int32)
    labels[0:2, 0:2] = 1
    labels[5:15, 5:15] = 2
    labels[18:20, 18:20] = 3
    ids, boxes, _ = ground_truth(labels, TinyConfig(MAX_GT_INSTANCES=1))
    np.testing.assert_array_equal(boxes[0], [5, 5, 15, 15])


def test_batches_shapes_and_determinism():
    config = TinyConfig(IMAGE_CROP_SIZE=64, AUGMENT="light")
    data = MrcnnDataset([_sample(0), _sample(1)], config, training=True, steps=3, seed=5)
    a, b = data[1], data[1]
    n = anchor_count(config, (64, 64))
    assert a["image"].shape == (2, 64, 64, 3) and a["image"].dtype == np.float32
    assert a["rpn_match"].shape == (2, n) and a["rpn_bbox"].shape == (2, n, 4)
    assert a["gt_masks"].shape == (2, config.MAX_GT_INSTANCES, 28, 28)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert (a["rpn_match"] == 1).any()
    with pytest.raises(IndexError):
        data[3]


def test_validation_batches_are_fixed_crops():
    config = TinyConfig(IMAGE_CROP_SIZE=128)
    data = MrcnnDataset([_sample(0)], config, training=False)
    batch = data[0]
    assert len(data) == 1 and batch["image"].shape == (2, 128, 128, 3)
    np.testing.assert_array_equal(batch["gt_boxes"][0, :2], [[10, 10, 20, 30], [50, 60, 70, 75]])


def test_model_input_pads_to_64():
    x, shape = model_input(np.zeros((100, 130, 3), np.uint8), TinyConfig())
    assert x.shape == (128, 192, 3) and shape == (100, 130)
    with pytest.raises(NucleiError):
        model_input(np.zeros((10, 10), np.uint8), TinyConfig())
