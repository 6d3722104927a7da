"""Where training runs: one device, or tf.distribute.MirroredStrategy over several."""

from __future__ import annotations

import contextlib
from typing import Any

import keras

from preprocessing.errors import NucleiError


def get_strategy(multi_gpu: bool = False) -> Any:
    """A tf.distribute strategy: MirroredStrategy over all GPUs (or logical CPUs when
    no GPU is present and several CPU devices are configured) when ``multi_gpu``, else
    the default one. Under a non-TensorFlow Keras backend a no-op stand-in."""
    if keras.backend.backend() != "tensorflow":
        if multi_gpu:
            raise NucleiError("--multi-gpu needs the TensorFlow backend (KERAS_BACKEND=tensorflow)")
        return _NoStrategy()
    import tensorflow as tf

    if not multi_gpu:
        return tf.distribute.get_strategy()
    devices = [d.name for d in tf.config.list_logical_devices("GPU")]
    if not devices:
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    if len(devices) < 2:
        raise NucleiError(f"--multi-gpu asked for, but only {len(devices)} device(s) found")
    return tf.distribute.MirroredStrategy(devices)


def replica_count(multi_gpu: bool) -> int:
    """How many replicas a run with ``multi_gpu`` trains on (GPUs under TensorFlow, else 1)."""
    if not multi_gpu or keras.backend.backend() != "tensorflow":
        return 1
    import tensorflow as tf

    return max(1, len(tf.config.list_logical_devices("GPU")))


def set_threads(threads: int) -> None:
    """Intra-op threads for the backend (0: its own choice)."""
    if not threads:
        return
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, threads))
    elif keras.backend.backend() == "torch":
        import torch

        torch.set_num_threads(threads)


class _NoStrategy:
    num_replicas_in_sync = 1

    def scope(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()
