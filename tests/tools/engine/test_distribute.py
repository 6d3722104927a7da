"""tools.engine.distribute and what several workers change in the engine, in this process.

Nothing here starts a cluster (tests/tools/engine/test_multi_worker.py does): TF_CONFIG parsing,
the batch and learning-rate rule, the refusals, the tasks' scaled batches, and that the parts a
worker other than the chief runs write nothing and stop when another worker asks.
"""

import json

import keras
import numpy as np
import pytest

from preprocessing.errors import NucleiError
from tools.engine.callbacks import TimeBudget, make_callbacks
from tools.engine.distribute import cluster_from_env, get_strategy, scale_batch


def tf_config(task_type="worker", index=0, workers=2, chief=False):
    cluster = {"worker": [f"host{k}:2222" for k in range(workers)]}
    if chief:
        cluster["chief"] = ["boss:2222"]
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})}


def test_cluster_from_tf_config_follows_tensorflows_chief_rule():
    assert cluster_from_env({}) is None
    first, second = cluster_from_env(tf_config(index=0)), cluster_from_env(tf_config(index=1))
    assert first.is_chief and not second.is_chief and first.workers == second.workers == 2
    # with a 'chief' task, worker 0 is an ordinary worker
    assert not cluster_from_env(tf_config(index=0, chief=True)).is_chief
    boss = cluster_from_env(tf_config("chief", 0, chief=True))
    assert boss.is_chief and boss.workers == 3


@pytest.mark.parametrize("environ, words", [
    ({"TF_CONFIG": "{not json"}, "not JSON"),
    ({"TF_CONFIG": '{"cluster": {}}'}, '"task"'),
    (tf_config("ps"), "'ps'"),
    (tf_config(index=2), "index 2"),
])
def test_a_bad_tf_config_is_one_clear_error(environ, words):
    with pytest.raises(NucleiError, match="TF_CONFIG") as error:
        cluster_from_env(environ)
    assert words in str(error.value) and "\n" not in str(error.value)


def test_global_batch_and_learning_rate_follow_the_replicas():
    linear = scale_batch(2, 0.001, 4)
    assert (linear.global_batch, linear.learning_rate) == (8, pytest.approx(0.004))
    assert "4 replicas x 2 = global batch 8" in linear.describe() and "0.004" in linear.describe()
    assert scale_batch(2, 0.001, 4, "sqrt").learning_rate == pytest.approx(0.002)
    assert scale_batch(2, 0.001, 4, "none").learning_rate == 0.001
    one = scale_batch(3, 0.01, 1, "linear")
    assert (one.global_batch, one.learning_rate) == (3, 0.01)
    with pytest.raises(NucleiError, match="--lr-scaling"):
        scale_batch(2, 0.001, 2, "cubic")


def test_several_workers_in_tf_config_need_multi_worker_and_multi_worker_needs_tf_config(monkeypatch, tmp_path):
    monkeypatch.setenv("TF_CONFIG", tf_config(index=1)["TF_CONFIG"])
    with pytest.raises(NucleiError, match="--multi-worker"):
        get_strategy()  # N copies of a one-machine run would write into one folder
    monkeypatch.delenv("TF_CONFIG")
    with pytest.raises(NucleiError, match="needs TF_CONFIG"):
        get_strategy(multi_worker=True)

    from tools.train import main

    out = tmp_path / "run"
    assert main(["unet", "--data", str(tmp_path), "--out", str(out), "--multi-worker"]) == 2
    assert not out.exists()  # refused before anything is written


def test_tasks_train_on_the_global_batch_and_keep_the_config_as_given(small_sample_root):
    from mrcnn.config import TinyConfig
    from preprocessing.dataset import load_training_samples
    from tools.engine.tasks import MrcnnTask, UNetTask
    from unet.config import UNetConfig

    unet = UNetTask(UNetConfig(base_filters=4, max_filters=8, depth=2, crop_size=32, batch_size=2,
                               learning_rate=0.001), steps_per_epoch=1, augment="none")
    unet.distribute(scale_batch(unet.per_replica_batch, unet.base_learning_rate, 3))
    assert (unet.batch_size, unet.learning_rate) == (6, pytest.approx(0.003))
    assert unet.config.batch_size == 2 and unet.config.learning_rate == 0.001  # what config.json holds
    samples = load_training_samples([small_sample_root], progress=False)
    x, y = unet.train_data(samples, seed=0)[0]
    assert x.shape[0] == y.shape[0] == 6

    mrcnn = MrcnnTask(TinyConfig(IMAGES_PER_GPU=2, GPU_COUNT=1))
    mrcnn.distribute(scale_batch(mrcnn.per_replica_batch, mrcnn.base_learning_rate, 2, "none"))
    assert mrcnn.data_config.BATCH_SIZE == mrcnn.batch_size == 4 and mrcnn.config.GPU_COUNT == 1
    assert mrcnn.learning_rate == mrcnn.config.LEARNING_RATE


def tiny_fit(callbacks, epochs=2):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    x = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
    model.fit(x, x.sum(1, keepdims=True), batch_size=8, epochs=epochs, verbose=0, callbacks=callbacks)
    return model


def test_a_worker_that_is_not_the_chief_writes_nothing(tmp_path, small_sample_root):
    from preprocessing.dataset import load_training_samples
    from tools.engine.trainer import TrainOptions, check_run_folder, split_samples

    run = tmp_path / "run"
    check_run_folder(run, resume=False, create=False)
    tiny_fit(make_callbacks(run, "loss", write=False))
    assert not run.exists()

    options = TrainOptions(data=[str(small_sample_root)], val_fraction=0.25)
    samples = load_training_samples(options.data, progress=False)
    quiet = split_samples(samples, options, run, write=False)
    assert not run.exists()
    run.mkdir()
    written = split_samples(samples, options, run)  # the chief's: the same split
    assert (run / "split.json").is_file()
    assert [[s.image_id for s in part] for part in quiet] == [[s.image_id for s in part] for part in written]


def test_a_stop_agreed_by_the_workers_stops_this_one_and_the_chief_saves(tmp_path):
    asked = []

    def another_worker_got_sigterm(values):
        asked.append(values)
        return [0.5]  # the mean over two workers, one of which asks to stop

    callbacks = make_callbacks(tmp_path, "loss", agree=another_worker_got_sigterm)
    model = tiny_fit(callbacks)
    assert int(model.optimizer.iterations.numpy()) == 1  # stopped after the first batch
    assert asked == [[0.0]]  # this worker had no signal; it asked once, then stopped
    assert callbacks[0].check() is True  # reported as interrupted (exit 130)
    state = json.loads((tmp_path / "state.json").read_text())
    assert state == {**state, "epoch": 0, "interrupted": True}


def test_time_budget_runs_on_the_agreed_clock():
    budget = TimeBudget(0.01, seconds=100.0, agree=lambda values: [150.0])  # the workers' mean elapsed time
    model = tiny_fit([budget])
    assert int(model.optimizer.iterations.numpy()) == 1  # past the budget at the first batch


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow's device listing")
def test_accelerator_present_follows_the_backends_gpus(monkeypatch):
    """The emulated-bfloat16 warning of tools.train is skipped when a GPU computes."""
    import tensorflow as tf

    from tools.engine.distribute import accelerator_present

    asked = []

    def devices(kind=None):
        asked.append(kind)
        return gpus

    monkeypatch.setattr(tf.config, "list_physical_devices", devices)
    gpus = []
    assert accelerator_present() is False
    gpus = [tf.config.PhysicalDevice("/physical_device:GPU:0", "GPU")]
    assert accelerator_present() is True
    assert asked == ["GPU", "GPU"]
