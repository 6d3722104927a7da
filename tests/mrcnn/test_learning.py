"""The whole graph learns: a tiny Mask R-CNN overfits two bundled images on the CPU.

About 120 steps (1-2 minutes on two cores); the detections must then match the
nuclei (mean DSB score above 0.5 on those two images).
"""

from pathlib import Path

import keras
import numpy as np

from mrcnn.config import TinyConfig
from mrcnn.data import MrcnnDataset
from mrcnn.model import MaskRCNN
from mrcnn.predictor import MrcnnPredictor
from preprocessing.dataset import load_dataset
from tools.kaggle.metric import image_score

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "stage1_train"
IDS = ["0a7d30b252359a10fd298b638b90cb9ada3acced4e0c0e5a3692013f432ee4e9",  # 256x256, 27 nuclei
       "dae976f161fe42dc58dee87d4bf2eb9f65736597cab0114138641b2a39a5c42b"]  # 256x256, 31 nuclei


def test_tiny_model_overfits_two_sample_images():
    keras.utils.set_random_seed(0)
    samples = load_dataset(SAMPLE, ids=IDS).samples
    config = TinyConfig(IMAGE_CROP_SIZE=256, STEPS_PER_EPOCH=120, LEARNING_RATE=0.003, AUGMENT=None)
    model = MaskRCNN(config)
    model.compile_for_training(config.LEARNING_RATE, "all")
    history = model.fit(MrcnnDataset(samples, config, training=True, seed=0), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    predictor = MrcnnPredictor(model)
    results = [predictor.predict(s.image) for s in samples]
    scores = [image_score(s.labels, labels)["score"] for s, (labels, _) in zip(samples, results)]
    assert np.mean(scores) > 0.5, scores
    for labels, nucleus_scores in results:  # overlaps were resolved into one label image
        assert labels.max() == len(nucleus_scores)
