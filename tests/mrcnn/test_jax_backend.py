"""The Mask R-CNN under Keras' JAX backend, the GPU machines' backend (issue 10).

JAX compiles the whole train step with XLA, so there the graph takes its static-shaped
forms (:func:`mrcnn.backend_ops.static_shapes`): padded NMS, RoIs sampled by random keys,
every box pooled from every pyramid level. One subprocess (the backend is chosen before
Keras is imported) runs those layers on seeded inputs and trains a tiny model for 120
compiled steps on two bundled images; this process, on TensorFlow, checks the layers
against TensorFlow's kernels and the trained weights against their JAX predictions.
Skipped where JAX is not installed (``pip install -e ".[test]"`` brings it).
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from keras import ops

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")

SCRIPT = r'''
import sys
from pathlib import Path

import jax
import keras
import numpy as np
from keras import ops

from mrcnn.config import TinyConfig
from mrcnn.data import MrcnnDataset
from mrcnn.detection import DetectionLayer
from mrcnn.model import MaskRCNN
from mrcnn.predictor import MrcnnPredictor
from mrcnn.proposals import ProposalLayer
from mrcnn.roi_align import PyramidRoIAlign
from mrcnn.rpn import graph_anchors
from preprocessing.dataset import load_dataset
from tests.mrcnn.test_jax_backend import IDS, SAMPLE, layer_inputs

assert keras.backend.backend() == "jax"
out = Path(sys.argv[1])
inputs = layer_inputs()
results = {}


def compiled(layer, layer_inputs):  # one XLA program, as in the compiled train step (eager: one per op)
    return jax.jit(layer)(layer_inputs)


results["roi_align"] = compiled(PyramidRoIAlign(7), [inputs["boxes"]] + inputs["features"])
anchors = graph_anchors(128, 128, (8, 16, 32, 64, 128), (0.5, 1, 2), (4, 8, 16, 32, 64))
results["proposals"] = compiled(ProposalLayer(100, 0.7, 500, (0.1, 0.1, 0.2, 0.2)),
                                [inputs["rpn_probs"], inputs["rpn_deltas"], anchors, np.array([128, 128], np.int32)])
detections = compiled(DetectionLayer(20, 0.5, 0.3, (0.1, 0.1, 0.2, 0.2)),
                      [inputs["rois"], inputs["class_probs"], inputs["box_deltas"], np.array([128, 128], np.int32)])
for name, value in zip(("boxes", "class_ids", "scores", "count"), detections):
    results["detection_" + name] = value

keras.utils.set_random_seed(0)
samples = load_dataset(SAMPLE, ids=IDS).samples
config = TinyConfig(IMAGE_CROP_SIZE=256, STEPS_PER_EPOCH=120, LEARNING_RATE=0.003, AUGMENT=None)
model = MaskRCNN(config)
model.compile_for_training(config.LEARNING_RATE, "all")
assert model.jit_compile
history = model.fit(MrcnnDataset(samples, config, training=True, seed=0), epochs=1, verbose=0)
results["loss"] = np.array(history.history["loss"][-1])
model.save_model(out / "jax.weights.h5")
predictor = MrcnnPredictor(model)
for k, sample in enumerate(samples):
    results[f"labels{k}"] = predictor.predict(sample.image)[0]
np.savez(out / "results.npz", **{name: ops.convert_to_numpy(value) for name, value in results.items()})
'''

SAMPLE = ROOT / "data" / "sample" / "stage1_train"
IDS = ["0a7d30b252359a10fd298b638b90cb9ada3acced4e0c0e5a3692013f432ee4e9",  # 256x256, 27 nuclei
       "dae976f161fe42dc58dee87d4bf2eb9f65736597cab0114138641b2a39a5c42b"]  # 256x256, 31 nuclei


def layer_inputs():
    """Seeded inputs for the layers compared across backends (a 128 x 128 image, batch 2)."""
    rng = np.random.default_rng(0)
    features = [rng.normal(size=(2, 128 // s, 128 // s, 8)).astype(np.float32) for s in (4, 8, 16, 32)]
    corner = rng.uniform(0, 100, size=(2, 30, 2))
    size = np.exp(rng.uniform(np.log(3), np.log(120), size=(2, 30, 2)))  # every pyramid level
    boxes = np.concatenate([corner, np.minimum(corner + size, 128)], axis=-1).astype(np.float32)
    boxes[:, -3:] = 0  # padding rows
    anchors = 3 * (32 * 32 + 16 * 16 + 8 * 8 + 4 * 4 + 2 * 2)
    rpn_fg = rng.uniform(size=(2, anchors)).astype(np.float32)
    rpn_probs = np.stack([1 - rpn_fg, rpn_fg], axis=-1)
    rpn_deltas = rng.normal(scale=0.5, size=(2, anchors, 4)).astype(np.float32)
    class_fg = rng.uniform(size=(2, 30)).astype(np.float32)
    class_probs = np.stack([1 - class_fg, class_fg], axis=-1)
    box_deltas = rng.normal(scale=0.3, size=(2, 30, 2, 4)).astype(np.float32)
    return {"features": features, "boxes": boxes, "rpn_probs": rpn_probs, "rpn_deltas": rpn_deltas,
            "rois": boxes, "class_probs": class_probs, "box_deltas": box_deltas}


@pytest.fixture(scope="module")
def jax_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("jax")
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(out)], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return out, dict(np.load(out / "results.npz"))


def test_static_layers_under_jax_match_tensorflows(jax_results):
    from mrcnn.detection import DetectionLayer
    from mrcnn.proposals import ProposalLayer
    from mrcnn.roi_align import PyramidRoIAlign
    from mrcnn.rpn import graph_anchors

    _, got = jax_results
    inputs = layer_inputs()
    pooled = PyramidRoIAlign(7)([inputs["boxes"]] + inputs["features"])
    np.testing.assert_allclose(got["roi_align"], ops.convert_to_numpy(pooled), atol=1e-4)
    anchors = graph_anchors(128, 128, (8, 16, 32, 64, 128), (0.5, 1, 2), (4, 8, 16, 32, 64))
    proposals = ProposalLayer(100, 0.7, 500, (0.1, 0.1, 0.2, 0.2))(
        [inputs["rpn_probs"], inputs["rpn_deltas"], anchors, np.array([128, 128], np.int32)])
    np.testing.assert_allclose(got["proposals"], ops.convert_to_numpy(proposals), atol=1e-3)
    detections = DetectionLayer(20, 0.5, 0.3, (0.1, 0.1, 0.2, 0.2))(
        [inputs["rois"], inputs["class_probs"], inputs["box_deltas"], np.array([128, 128], np.int32)])
    assert 0 < int(got["detection_count"].min())
    for name, value in zip(("boxes", "class_ids", "scores", "count"), detections):
        np.testing.assert_allclose(got["detection_" + name], ops.convert_to_numpy(value), atol=1e-4, err_msg=name)


def test_compiled_jax_train_step_learns_and_its_weights_predict_the_same_under_tensorflow(jax_results):
    from mrcnn.model import load_model
    from mrcnn.predictor import MrcnnPredictor
    from preprocessing.dataset import load_dataset
    from tools.kaggle.metric import image_score

    out, got = jax_results
    assert np.isfinite(got["loss"])
    samples = load_dataset(SAMPLE, ids=IDS).samples
    predictor = MrcnnPredictor(load_model(out / "jax.weights.h5"))
    for k, sample in enumerate(samples):
        assert image_score(sample.labels, got[f"labels{k}"])["score"] > 0.5  # it learned under JAX
        labels, _ = predictor.predict(sample.image)
        assert image_score(got[f"labels{k}"], labels)["score"] > 0.9  # and TensorFlow sees the same nuclei
