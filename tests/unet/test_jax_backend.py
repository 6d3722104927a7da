"""The U-Net under Keras' JAX backend, which the GPU machines train it with (bench/gpu_session.sh).

A subprocess (the backend is chosen before Keras is imported) trains a tiny U-Net for a few
XLA-compiled steps on the bundled sample and saves its weights and its output on a seeded
input; this process, on TensorFlow, loads the weights and must give the same output.
Skipped where JAX is not installed (``pip install -e ".[test]"`` brings it).
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")

TINY = dict(base_filters=4, max_filters=16, depth=2, crop_size=64, tile_size=64, tile_overlap=8,
            bottleneck_dilations=(1, 2), batch_size=4)

SCRIPT = r'''
import sys
from pathlib import Path

import keras
import numpy as np

from preprocessing.dataset import load_dataset
from tests.unet.test_jax_backend import TINY, seeded_input
from unet.config import UNetConfig
from unet.data import UNetTrainData
from unet.losses import loss_for
from unet.model import build_unet

assert keras.backend.backend() == "jax"
out = Path(sys.argv[1])
keras.utils.set_random_seed(0)
config = UNetConfig(**TINY)
model = build_unet(config)
model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=loss_for(config), jit_compile=True)
samples = load_dataset(Path("data/sample/stage1_train")).samples
history = model.fit(UNetTrainData(samples, config, 15, "light"), epochs=2, verbose=0)
model.save_weights(out / "jax.weights.h5")
np.savez(out / "results.npz", loss=np.array(history.history["loss"]),
         output=np.asarray(model.predict_on_batch(seeded_input())))
'''


def seeded_input():
    return np.random.default_rng(0).uniform(size=(2, 64, 96, 3)).astype(np.float32)


def test_unet_trained_under_jax_predicts_the_same_under_tensorflow(tmp_path):
    import keras

    from unet.config import UNetConfig
    from unet.model import build_unet

    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    results = np.load(tmp_path / "results.npz")
    assert np.all(np.isfinite(results["loss"])) and results["loss"][-1] < results["loss"][0]
    assert keras.backend.backend() == "tensorflow"
    model = build_unet(UNetConfig(**TINY))
    model.load_weights(tmp_path / "jax.weights.h5")
    np.testing.assert_allclose(np.asarray(model.predict_on_batch(seeded_input())), results["output"], atol=1e-4)
