"""The Cascade R-CNN learns: a tiny three-stage model on synthetic discs, on the CPU.

100 steps on six 128 x 128 images of five bright discs each (about 30 s on two cores): every
stage's class loss and the total go down, and on three new images (15 discs) the discs are
found (at least 14, at most one false detection), with tight boxes (the last stage's: median IoU
above 0.8, at least 2 in 3 above 0.7; two-core CPU training is not bit-reproducible, and runs
have ranged from 12 to 15 of 15 above 0.7) and good masks (mean DSB score above 0.6).
"""

import keras
import numpy as np

from mrcnn.boxes import labels_to_boxes
from mrcnn.config import TinyConfig
from mrcnn.data import MrcnnDataset
from mrcnn.model import MaskRCNN
from mrcnn.predictor import MrcnnPredictor
from tests.mrcnn.synthetic import disc_samples
from tools.kaggle.metric import image_score


def box_iou(a, b):
    inter = max(min(a[2], b[2]) - max(a[0], b[0]), 0) * max(min(a[3], b[3]) - max(a[1], b[1]), 0)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_cascade_learns_synthetic_discs():
    keras.utils.set_random_seed(0)
    config = TinyConfig(CASCADE_STAGES=3, STEPS_PER_EPOCH=20, LEARNING_RATE=0.003)
    model = MaskRCNN(config)
    model.compile_for_training(config.LEARNING_RATE, "all")
    history = model.fit(MrcnnDataset(disc_samples(6, seed=0), config, training=True, seed=0), epochs=5,
                        verbose=0).history
    assert history["loss"][-1] < 0.5 * history["loss"][0], history["loss"]
    for k in (1, 2, 3):
        losses = history[f"mrcnn_class_loss_stage{k}"]
        assert losses[-1] < 0.5 * losses[0], (k, losses)
    assert history["mrcnn_bbox_loss_stage1"][-1] < 0.5 * history["mrcnn_bbox_loss_stage1"][0]
    assert history["mrcnn_mask_loss"][-1] < 0.5 * history["mrcnn_mask_loss"][0]

    predictor = MrcnnPredictor(model)
    found, extra, scores, box_ious = 0, 0, [], []
    for sample in disc_samples(3, seed=1):  # 15 new discs
        det = predictor.detect(sample.image)
        labels, _ = predictor.predict(sample.image)
        score = image_score(sample.labels, labels)
        found, extra = found + score["tp"][0], extra + score["fp"][0]  # matches at IoU 0.5
        scores.append(score["score"])
        true_boxes, _ = labels_to_boxes(sample.labels)
        box_ious += [max([box_iou(t, d) for d in det["boxes"]] + [0.0]) for t in true_boxes]
    assert found >= 14 and extra <= 1, (found, extra)
    assert np.mean(scores) > 0.6, scores
    assert np.median(box_ious) > 0.8 and np.mean(np.array(box_ious) > 0.7) >= 2 / 3, box_ious
