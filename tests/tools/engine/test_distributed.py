"""One training step under tf.distribute.MirroredStrategy on two logical CPU devices.

Devices must be configured before TensorFlow initialises, hence a subprocess.
"""

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = textwrap.dedent("""
    import os
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from mrcnn.config import TinyConfig
    from mrcnn.data import MrcnnDataset
    from mrcnn.model import MaskRCNN
    from preprocessing.dataset import Sample
    from tools.engine.distribute import get_strategy

    strategy = get_strategy(multi_gpu=True)
    assert strategy.num_replicas_in_sync == 2, strategy.num_replicas_in_sync
    config = TinyConfig(IMAGE_CROP_SIZE=64, IMAGES_PER_GPU=1, GPU_COUNT=2, STEPS_PER_EPOCH=2)
    labels = np.zeros((64, 64), np.int32)
    labels[10:20, 10:25] = 1
    labels[40:52, 30:44] = 2
    image = np.where(labels[..., None] > 0, 200, 20).astype(np.uint8).repeat(3, axis=2)
    data = MrcnnDataset([Sample("a", image, labels, "fluorescence", None)], config, training=True)
    assert data[0]["image"].shape[0] == 2
    with strategy.scope():
        model = MaskRCNN(config)
        model.compile_for_training(0.001, "all")
        before = [v.numpy().copy() for v in model.trainable_variables]
        history = model.fit(data, epochs=1, verbose=0)
    loss = history.history["loss"][-1]
    assert np.isfinite(loss), loss
    changed = sum(not np.array_equal(a, v.numpy()) for a, v in zip(before, model.trainable_variables))
    assert changed > 0
    print("OK", loss, changed)
""")


def test_one_step_under_mirrored_strategy_on_two_cpus():
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK" in result.stdout
