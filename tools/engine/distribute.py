"""Where training runs: one device, a machine's GPUs, or several machines.

Three strategies, all TensorFlow's (:func:`get_strategy`):

* the default one: one device;
* ``--multi-gpu``: ``tf.distribute.MirroredStrategy`` over the GPUs of this machine;
* ``--multi-worker``: ``tf.distribute.MultiWorkerMirroredStrategy`` over several machines (each
  with all its GPUs), synchronous data parallelism with collective all-reduce (NCCL on GPUs, rings
  over gRPC on CPUs).

Several machines: the cluster manager (Slurm, Kubernetes, a shell script) starts the same command
on every machine with ``--multi-worker`` and a ``TF_CONFIG`` environment variable, the standard
TensorFlow one, that names every worker and says which one this process is::

    TF_CONFIG='{"cluster": {"worker": ["node1:2222", "node2:2222"]}, "task": {"type": "worker", "index": 0}}'

All workers get the same ``--out``, a folder they all see (NFS, a cluster file system). The chief
(the ``chief`` task if the cluster has one, else worker 0: TensorFlow's rule, :func:`is_chief`)
writes everything in the run folder; the other workers write nothing and read the chief's files
(``--resume`` continues from the chief's last checkpoint on every worker). A ``TF_CONFIG`` naming
more than one worker without ``--multi-worker`` is refused: N copies of a single-machine run would
otherwise write into the same folder at once.

Batch and learning rate (:func:`scale_batch`, the one place where they are scaled): the
configured batch (the U-Net's ``batch_size``, the Mask R-CNN's ``IMAGES_PER_GPU``) is the batch of
one replica; the global batch is that times the replicas (GPUs, or CPUs, of all workers; under
``--multi-gpu`` too), so adding devices adds throughput at a constant per-device load. The
configured learning rate is the one for one replica's batch; by default it is scaled linearly
with the global batch (Goyal et al. 2017, "Accurate, large minibatch SGD": both schedules start
with a warm-up, which that rule needs), ``--lr-scaling sqrt`` scales it by the square root
(sometimes preferred for Adam), ``none`` keeps it. A run on more than one replica prints the
resulting numbers in one line.

Data: every worker builds the same training PyDataset (same split, same seed), whose batches are
global batches. Keras feeds it through ``tf.data.Dataset.from_generator`` and
``strategy.experimental_distribute_dataset``; a generator cannot be sharded by file, so
TensorFlow's AUTO policy shards by DATA: each global batch is cut into per-replica slices and
each worker keeps its own. The global batch is thus exactly that of a single-machine run with as
many GPUs, at the cost that every worker also computes the crops it drops (cheap next to a
training step on a GPU; generating only a worker's own slice is the next step if it is not).

Keras 3.15's TensorFlow trainer calls ``Strategy.reduce`` in two ways MultiWorkerMirroredStrategy
rejects (a nested batch in its symbolic build, ``axis=0`` on scalar metrics); the strategy
returned here is a subclass whose ``reduce`` accepts both (:func:`_multi_worker_strategy`).

Staying the same: the gradients are all-reduced, so the trained weights are the same on every
replica, but Keras 3 updates batch normalisation's moving statistics on each replica from its
own slice: :func:`statistics_sync` averages them before each validation and each checkpoint.
A worker that leaves the training loop alone leaves the others waiting in their next
all-reduce, and a learning rate set from a worker's own clock would differ between workers and
drift their weights apart. So under several workers the stop request of a signal (Ctrl-C,
SIGTERM; to one worker or all) and the elapsed time of ``--time-limit`` are agreed on at every
batch (:func:`agreement`, one small all-reduce); the NaN guard needs nothing, the logged loss is
already the all-reduced one. Each worker prints a digest of its weights at the end
(:func:`weights_digest`): they are equal.

The JAX backend is not wired in (JAX is not a dependency, and the Mask R-CNN's train step is
TensorFlow's or PyTorch's). It would do data parallelism with Keras's own distribution API
instead of a strategy: before building the model, on each host,
``keras.distribution.initialize(job_addresses, num_processes, process_id)`` (several machines;
it wraps ``jax.distributed.initialize``; or the KERAS_DISTRIBUTION_* environment variables), then
``keras.distribution.set_distribution(keras.distribution.DataParallel(
devices=keras.distribution.list_devices()))``. ``model.fit`` then replicates the variables and
splits each global batch over all devices; a tf.data dataset is sharded per process
(``auto_shard_dataset``), a PyDataset would have to yield its process's share itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
from typing import Any, Callable, Mapping

import keras
import numpy as np

from preprocessing.errors import NucleiError

LR_SCALINGS = ("linear", "sqrt", "none")

# the one MultiWorkerMirroredStrategy of this process: TensorFlow allows it to be created once,
# before the runtime starts, and both tools.train and tools.engine.trainer ask for it
_MULTI_WORKER: Any = None


@dataclasses.dataclass(frozen=True)
class Cluster:
    """This process's place in the cluster ``TF_CONFIG`` describes.

    Attributes:
        task_type: 'worker' or 'chief'.
        task_index: index among the tasks of that type.
        workers: training tasks in the cluster ('chief' + 'worker').
        has_chief: the cluster names a 'chief' task.
    """

    task_type: str
    task_index: int
    workers: int
    has_chief: bool

    @property
    def is_chief(self) -> bool:
        """TensorFlow's rule (multi_worker_util.is_chief): the 'chief' task, else worker 0."""
        if self.has_chief:
            return self.task_type == "chief"
        return self.task_type == "worker" and self.task_index == 0

    @property
    def name(self) -> str:
        return f"{self.task_type} {self.task_index}"


def cluster_from_env(environ: Mapping[str, str] | None = None) -> Cluster | None:
    """The cluster of ``TF_CONFIG`` (None when unset or empty); a NucleiError names what is wrong."""
    text = (os.environ if environ is None else environ).get("TF_CONFIG", "").strip()
    if not text:
        return None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise NucleiError(f"TF_CONFIG is not JSON: {error}") from None
    cluster, task = (config.get("cluster"), config.get("task")) if isinstance(config, dict) else (None, None)
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise NucleiError('TF_CONFIG needs "cluster" and "task" objects, e.g. {"cluster": {"worker": '
                          '["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}')
    task_type, task_index = task.get("type"), task.get("index", 0)
    if task_type not in ("worker", "chief"):
        raise NucleiError(f"TF_CONFIG task type {task_type!r} cannot train here: only 'worker' and 'chief' "
                          "(MultiWorkerMirroredStrategy; no parameter servers or evaluators)")
    hosts = {kind: cluster.get(kind) or [] for kind in ("chief", "worker")}
    if not all(isinstance(h, list) for h in hosts.values()) or len(hosts["chief"]) > 1:
        raise NucleiError('TF_CONFIG "cluster" must list hosts: {"worker": [...]} and at most one "chief"')
    if isinstance(task_index, bool) or not isinstance(task_index, int) or not 0 <= task_index < len(hosts[task_type]):
        raise NucleiError(f"TF_CONFIG task index {task_index!r} is not one of the "
                          f"{len(hosts[task_type])} {task_type} host(s) of the cluster")
    return Cluster(task_type, task_index, len(hosts["chief"]) + len(hosts["worker"]), bool(hosts["chief"]))


def get_strategy(multi_gpu: bool = False, multi_worker: bool = False) -> Any:
    """A tf.distribute strategy (see the module docstring).

    ``multi_worker``: MultiWorkerMirroredStrategy over the cluster of ``TF_CONFIG`` (every GPU of
    every worker; created once per process). ``multi_gpu``: MirroredStrategy over all GPUs (or
    logical CPUs when no GPU is present and several CPU devices are configured). Else the default
    strategy, after refusing a ``TF_CONFIG`` that names several workers. Under a non-TensorFlow
    Keras backend a no-op stand-in."""
    global _MULTI_WORKER
    cluster = cluster_from_env()
    if keras.backend.backend() != "tensorflow":
        if multi_gpu or multi_worker:
            flag = "--multi-worker" if multi_worker else "--multi-gpu"
            raise NucleiError(f"{flag} needs the TensorFlow backend (KERAS_BACKEND=tensorflow)")
        return _NoStrategy()
    import tensorflow as tf

    if multi_worker:
        if cluster is None:
            raise NucleiError("--multi-worker needs TF_CONFIG, the cluster's workers and this process's "
                              "place among them (see python -m tools.train unet --help)")
        if _MULTI_WORKER is None:
            _MULTI_WORKER = _multi_worker_strategy()
        return _MULTI_WORKER
    if cluster is not None and cluster.workers > 1:
        raise NucleiError(f"TF_CONFIG names {cluster.workers} workers: pass --multi-worker to train across "
                          "them, or unset TF_CONFIG for a run on this machine alone")
    if not multi_gpu:
        return tf.distribute.get_strategy()
    devices = [d.name for d in tf.config.list_logical_devices("GPU")]
    if not devices:
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    if len(devices) < 2:
        raise NucleiError(f"--multi-gpu asked for, but only {len(devices)} device(s) found")
    return tf.distribute.MirroredStrategy(devices)


def _multi_worker_strategy() -> Any:
    """MultiWorkerMirroredStrategy whose ``reduce`` takes what Keras 3's TF trainer passes it.

    Keras's ``_maybe_symbolic_build`` reduces the first batch, a tuple or dict of per-replica
    tensors (uint8 targets among them), in one call: Strategy.reduce takes one tensor ("TODO:
    support value being a nest" in TensorFlow) and the collectives carry no uint8. Its
    ``reduce_per_replica`` reduces scalar metrics with ``axis=0``. All of it works under
    MirroredStrategy, whose single-worker path never reaches the collectives. Here a nest is
    reduced leaf by leaf, a dtype the collectives lack goes through float32 (Keras reads only the
    shape and dtype of that batch), and a scalar is reduced across replicas only.
    """
    import tensorflow as tf

    carried = (tf.float16, tf.bfloat16, tf.float32, tf.float64, tf.int32, tf.int64)

    class KerasMultiWorkerStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        def reduce(self, reduce_op: Any, value: Any, axis: int | None = None) -> Any:
            if isinstance(value, (tuple, list, dict)):
                return tf.nest.map_structure(lambda leaf: self.reduce(reduce_op, leaf, axis), value)
            distributed = isinstance(value, tf.distribute.DistributedValues)
            local = self.experimental_local_results(value)[0] if distributed else value
            if axis is not None and getattr(local, "shape", None) is not None and local.shape.rank == 0:
                axis = None
            dtype = getattr(local, "dtype", None)
            if dtype is not None and dtype not in carried:
                as_float = self.run(lambda t: tf.cast(t, tf.float32), args=(value,))
                return tf.cast(super().reduce(reduce_op, as_float, axis), dtype)
            return super().reduce(reduce_op, value, axis)

    return KerasMultiWorkerStrategy()


def is_multi_worker(strategy: Any) -> bool:
    """True for a MultiWorkerMirroredStrategy over more than one worker."""
    in_multi_worker_mode = getattr(getattr(strategy, "extended", None), "_in_multi_worker_mode", None)
    return bool(in_multi_worker_mode is not None and in_multi_worker_mode())


def is_chief(strategy: Any) -> bool:
    """Whether this process writes the run folder: always, but for a non-chief worker of a
    MultiWorkerMirroredStrategy (TensorFlow's own answer, ``extended.should_checkpoint``)."""
    extended = getattr(strategy, "extended", None)
    return bool(getattr(extended, "should_checkpoint", True))


def worker_name(strategy: Any) -> str:
    """'worker 1' (TF_CONFIG's task) under several workers, else ''."""
    if not is_multi_worker(strategy):
        return ""
    resolver = strategy.cluster_resolver
    return f"{resolver.task_type} {resolver.task_id}"


def worker_count(strategy: Any) -> int:
    """Training tasks ('chief' + 'worker') of the strategy's cluster; 1 on one machine."""
    if not is_multi_worker(strategy):
        return 1
    spec = strategy.cluster_resolver.cluster_spec()
    return sum(spec.num_tasks(job) for job in ("chief", "worker") if job in spec.jobs)


@dataclasses.dataclass(frozen=True)
class BatchScaling:
    """The batch and learning rate a run trains with on ``replicas`` replicas (see :func:`scale_batch`).

    Attributes:
        replicas: replicas in sync (devices of all workers).
        per_replica_batch: the configured batch: one replica's.
        base_learning_rate: the configured learning rate, for one replica's batch.
        rule: 'linear', 'sqrt' or 'none'.
    """

    replicas: int
    per_replica_batch: int
    base_learning_rate: float
    rule: str = "linear"

    @property
    def global_batch(self) -> int:
        return self.per_replica_batch * self.replicas

    @property
    def learning_rate(self) -> float:
        factor = {"linear": self.replicas, "sqrt": math.sqrt(self.replicas), "none": 1.0}[self.rule]
        return self.base_learning_rate * factor

    def describe(self) -> str:
        """One line: '4 replicas x 2 = global batch 8; learning rate 0.001 -> 0.004 (linear scaling)'."""
        rate = (f"learning rate {self.base_learning_rate:g} kept (--lr-scaling none)" if self.rule == "none"
                else f"learning rate {self.base_learning_rate:g} -> {self.learning_rate:g} ({self.rule} scaling "
                     "with the global batch)")
        return f"{self.replicas} replicas x {self.per_replica_batch} = global batch {self.global_batch}; {rate}"


def scale_batch(per_replica_batch: int, learning_rate: float, replicas: int, rule: str = "linear") -> BatchScaling:
    """The one place where batch and learning rate follow the replica count.

    global batch = ``per_replica_batch`` x ``replicas``; learning rate = ``learning_rate`` x
    ``replicas`` ('linear', the default), x sqrt(``replicas``) ('sqrt') or unchanged ('none').
    One replica changes nothing whatever the rule."""
    if rule not in LR_SCALINGS:
        raise NucleiError(f"--lr-scaling must be one of {', '.join(LR_SCALINGS)}, got {rule!r}")
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise NucleiError(f"replica count must be a whole number >= 1, got {replicas!r}")
    if per_replica_batch < 1:
        raise NucleiError(f"the batch must be >= 1 per replica, got {per_replica_batch}")
    return BatchScaling(int(replicas), int(per_replica_batch), float(learning_rate), rule)


def agreement(strategy: Any) -> Callable[[list[float]], list[float]] | None:
    """A function ``values -> their mean over all replicas`` for a strategy over several
    workers, else None (one process agrees with itself).

    Every worker must call it at the same point of the program (it is an all-reduce): the
    callbacks call it once per batch. A mean is enough for what is agreed: a stop flag (> 0 when
    any worker asks) and elapsed seconds (the same on every worker)."""
    if not is_multi_worker(strategy):
        return None
    import tensorflow as tf

    def replica_mean(values: Any) -> Any:
        # tf.identity places the value on the replica's device: the all-reduce needs one
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.MEAN, tf.identity(values))

    # traced once per length of values: an eager strategy.run costs far more per call
    reduce = tf.function(lambda values: strategy.run(replica_mean, args=(values,)))

    def agree(values: list[float]) -> list[float]:
        result = reduce(tf.constant(values, tf.float32))
        return [float(v) for v in strategy.experimental_local_results(result)[0].numpy()]

    return agree


def statistics_sync(strategy: Any, model: keras.Model) -> Callable[[], None] | None:
    """A function that sets every replica's moving statistics (batch normalisation's
    ``moving_mean`` and ``moving_variance``) to their mean over all replicas; None on one replica.

    Keras 3 updates these on each replica from its own slice of the batch (tf.keras 2 read them
    as the replicas' mean), so without this each worker would validate and save its own; the
    checkpoint would hold the chief's alone. Every worker must call it at the same point: the
    checkpoint callback calls it before validating and before saving (one all-reduce)."""
    if getattr(strategy, "num_replicas_in_sync", 1) < 2:
        return None
    import tensorflow as tf

    statistics = [v for v in model.non_trainable_variables
                  if v.path.rsplit("/", 1)[-1] in ("moving_mean", "moving_variance")]
    if not statistics:
        return None

    def replica_means() -> Any:
        # each replica reads its own copy; identity puts it on the replica's device for the all-reduce
        local = [tf.identity(v.value) for v in statistics]
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.MEAN, local)

    means_fn = tf.function(lambda: strategy.run(replica_means))

    def sync() -> None:
        means = means_fn()
        for variable, mean in zip(statistics, means):
            variable.assign(strategy.experimental_local_results(mean)[0])  # every local copy

    return sync


def weights_digest(model: keras.Model) -> str:
    """A short SHA-256 of every weight of ``model`` (this worker's copy), to check that workers agree."""
    digest = hashlib.sha256()
    for variable in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(variable)).tobytes())
    return digest.hexdigest()[:16]


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


def accelerator_present() -> bool:
    """Whether the Keras backend sees a GPU (or another accelerator) to compute on; listing
    devices does not start the TensorFlow runtime, so it may come before the strategy."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return jax.default_backend() != "cpu"
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    return False


class _NoStrategy:
    num_replicas_in_sync = 1

    def scope(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()
