"""The training engine's callbacks and run-folder state: checkpoints, resume, signals, schedules.

A run folder holds:

    config.json           what built the model (written before the first step)
    last.weights.h5       weights after the last finished epoch (or at an interruption)
    last.optimizer.npz    optimizer variables saved with them, so a resume loses nothing
    best.weights.h5       weights with the best monitored value so far
    state.json            {"epoch": epochs finished, "best": value, "interrupted": bool}
    log.csv, tensorboard/ per-epoch metrics

Every file is written to a temporary name and renamed, so a crash leaves the
previous version intact. log.csv holds finished epochs only: an epoch cut short by
Ctrl-C, SIGTERM or a NaN loss is not logged, and a resumed run first drops the rows of
the epochs it is about to train again (a run killed after logging an epoch but before
saving its checkpoint would otherwise log that epoch twice).

Under several workers (:mod:`tools.engine.distribute`) only the chief writes: the callbacks of
the other workers are made with ``write=False`` and keep the run folder as it is. They are given
an ``agree`` function (a mean over all workers, one all-reduce) so that a stop request and the
time of ``--time-limit`` are the same on every worker at every batch.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import math
import signal
import time
from pathlib import Path
from typing import Any, Callable

import keras
import numpy as np

from preprocessing.errors import NucleiError
from preprocessing.files import atomic_target, save_json_atomic, save_weights_atomic, write_text_atomically


class TrainingStopped(NucleiError):
    """Training ended early for a reason the user must see (NaN loss)."""


def read_state(run_dir):
    path = Path(run_dir) / "state.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise NucleiError(f"corrupt training state: {error}", path) from None


def resume_state(run_dir):
    """(initial_epoch, weights_path | None) to continue a run in ``run_dir``."""
    state = read_state(run_dir)
    weights = Path(run_dir) / "last.weights.h5"
    if state is None or not weights.is_file():
        return 0, None
    return int(state["epoch"]), weights


def save_optimizer(optimizer, path):
    with atomic_target(path, suffix=".npz") as tmp:
        np.savez(tmp, *[keras.ops.convert_to_numpy(v) for v in optimizer.variables])


def load_optimizer(optimizer, model, path):
    """Restore optimizer variables saved by save_optimizer (builds the optimizer first)."""
    path = Path(path)
    if not path.is_file():
        return False
    optimizer.build(model.trainable_variables)
    try:
        with np.load(path) as data:
            values = [data[f"arr_{k}"] for k in range(len(data.files))]
    except Exception as error:  # zipfile / numpy raise many kinds for a truncated file
        raise NucleiError(f"optimizer state is unreadable ({type(error).__name__}: {error}); delete it to "
                          "resume with a fresh optimizer state", path) from None
    if len(values) != len(optimizer.variables):
        return False  # a different optimizer or model: start its state afresh
    for variable, value in zip(optimizer.variables, values):
        if tuple(variable.shape) != value.shape:
            return False
    for variable, value in zip(optimizer.variables, values):
        variable.assign(value)
    return True


class RunCheckpoint(keras.callbacks.Callback):
    """Atomic last/best checkpoints, NaN guard, and a graceful stop on SIGTERM / Ctrl-C.

    Args:
        run_dir: the run folder.
        monitor: the logged value deciding "best" (e.g. 'val_loss').
        mode: 'min' or 'max'.
        initial_epoch: epochs already done (for a resumed run).
        epoch_log: optional EpochLog; its row for a finished epoch is written before the checkpoint.
        write: save checkpoints and state (False on the workers that are not the chief).
        agree: ``values -> mean over all workers``, under several workers: a signal on any worker
            stops every worker after the same batch (one that left alone would leave the others
            waiting in their next all-reduce).
        sync: called on every worker before validation and before each checkpoint, under a strategy
            with several replicas: makes their copies of the weights the same
            (:func:`tools.engine.distribute.statistics_sync`).
    """

    def __init__(self, run_dir, monitor="val_loss", mode="min", initial_epoch=0, epoch_log=None, write=True,
                 agree=None, sync=None):
        super().__init__()
        self.write = write
        self.agree = agree
        self.sync = sync
        self.epoch_log = epoch_log  # EpochLog written just before each finished epoch's checkpoint
        self.run_dir = Path(run_dir)
        self.monitor = monitor
        self.sign = 1.0 if mode == "min" else -1.0
        state = read_state(run_dir) or {}
        self.best = state.get("best")
        self.epoch = initial_epoch
        self.stop_signal = None
        self.stopping = False  # the agreed stop under several workers
        self.nan_batch = None
        self.cut_short = False  # a signal stopped training inside an epoch (and that was saved)
        self._previous_handlers = {}

    # --- signals: stop at the end of the current batch and save ------------
    def _handle(self, signum, frame):
        self.stop_signal = signum

    def on_train_begin(self, logs=None):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous_handlers[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass

    def on_train_end(self, logs=None):
        for sig, handler in self._previous_handlers.items():
            signal.signal(sig, handler)
        self._previous_handlers = {}

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_test_begin(self, logs=None):
        if self.sync is not None:
            self.sync()  # validate every replica with the same moving statistics

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")  # under a strategy, the mean over all replicas: the same everywhere
        stop = self._stop_agreed()
        if loss is not None and not math.isfinite(float(loss)):
            self.nan_batch = (self.epoch, batch)
            self.model.stop_training = True  # last good checkpoint stays as it is
        elif stop:
            self._save(epochs_done=self.epoch, interrupted=True)
            self.cut_short = True
            self.model.stop_training = True

    def _stop_agreed(self):
        """Whether to stop after this batch: this process got a signal or, under several
        workers, any worker had got one by its previous agreement (a signal that comes after
        it waits for the next batch, so that every worker decides on the same values)."""
        if self.agree is None:
            return self.stop_signal is not None
        if not self.stopping:
            self.stopping = self.agree([float(self.stop_signal is not None)])[0] > 0
        return self.stopping

    @property
    def stopped(self):
        """Training was stopped by a signal (here or, under several workers, on any worker)."""
        return self.stopping if self.agree is not None else self.stop_signal is not None

    def on_epoch_end(self, epoch, logs=None):
        if self.nan_batch is not None or self.cut_short:
            return  # cut short: neither logged nor counted
        # (a signal after the epoch's last batch, during validation, leaves the epoch whole:
        # it is logged and saved as done, and the run stops here)
        logs = logs or {}
        if self.epoch_log is not None:
            self.epoch_log.write(epoch, logs)
        value = logs.get(self.monitor)
        improved = value is not None and math.isfinite(float(value)) and (
            self.best is None or self.sign * float(value) < self.sign * float(self.best))
        if improved:
            self.best = float(value)
            if self.write:
                save_weights_atomic(self.model, self.run_dir / "best.weights.h5")
        self._save(epochs_done=epoch + 1, interrupted=self.stopped)
        if self.stopped:
            self.model.stop_training = True

    def _save(self, epochs_done, interrupted):
        if self.sync is not None:
            self.sync()  # on every worker, chief or not: it is an all-reduce
        if not self.write:
            return
        save_weights_atomic(self.model, self.run_dir / "last.weights.h5")
        if self.model.optimizer is not None and self.model.optimizer.built:
            save_optimizer(self.model.optimizer, self.run_dir / "last.optimizer.npz")
        save_json_atomic(self.run_dir / "state.json",
                         {"epoch": int(epochs_done), "best": self.best, "monitor": self.monitor,
                          "interrupted": interrupted})

    def check(self):
        """Raise TrainingStopped if training ended on a NaN loss; report a signal stop."""
        if self.nan_batch is not None:
            epoch, batch = self.nan_batch
            raise TrainingStopped(
                f"loss became NaN/inf at epoch {epoch + 1}, batch {batch + 1}; stopped. The last good "
                f"checkpoint is {self.run_dir / 'last.weights.h5'}. Lower the learning rate and --resume.")
        return self.stopped


def cosine_schedule(base_lr, epochs, warmup_epochs=1, min_fraction=0.02):
    """Epoch -> learning rate: linear warm-up then cosine decay (a pure function of epoch)."""

    def schedule(epoch, lr=None):
        if epoch < warmup_epochs:
            return base_lr * (epoch + 1) / (warmup_epochs + 1)
        progress = (epoch - warmup_epochs) / max(1, epochs - warmup_epochs)
        return base_lr * (min_fraction + (1 - min_fraction) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))

    return schedule


class TimeBudget(keras.callbacks.Callback):
    """Train for a wall-clock budget: cosine learning rate over the elapsed fraction of
    ``seconds`` (after a short warm-up), then stop at the end of the batch that passes it.

    For machines lent by the minute, where the number of epochs that fit is unknown. Under several
    workers ``agree`` (a mean over workers) makes the elapsed time, hence the learning rate and
    the last batch, the same on all of them: each worker's own clock would drift their weights
    apart and stop them at different batches.
    """

    def __init__(self, base_lr, seconds, warmup_fraction=0.03, min_fraction=0.02, agree=None):
        super().__init__()
        self.agree = agree
        self.base_lr, self.seconds = float(base_lr), float(seconds)
        self.warmup_fraction, self.min_fraction = warmup_fraction, min_fraction
        self.started = None

    def learning_rate(self, fraction):
        if fraction < self.warmup_fraction:
            return self.base_lr * max(fraction / self.warmup_fraction, 0.05)
        progress = (fraction - self.warmup_fraction) / (1 - self.warmup_fraction)
        cosine = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        return self.base_lr * (self.min_fraction + (1 - self.min_fraction) * cosine)

    def on_train_batch_begin(self, batch, logs=None):
        if self.started is None:
            self.started = time.time()
        elapsed = time.time() - self.started
        if self.agree is not None:
            elapsed = self.agree([elapsed])[0]
        fraction = elapsed / self.seconds
        self.model.optimizer.learning_rate = self.learning_rate(fraction)
        if fraction >= 1.0:
            self.model.stop_training = True


def trim_log(path: str | Path, first_epoch: int) -> int:
    """Keep the header and the rows of epochs < ``first_epoch`` of a CSV log; returns rows dropped.

    Rows that do not parse (a line torn by a kill mid-write) are dropped too. The file is
    rewritten atomically; a missing file is left missing.
    """
    path = Path(path)
    if not path.is_file():
        return 0
    try:
        rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise NucleiError(f"training log is unreadable ({error}); delete it to resume", path) from None
    if not rows:
        return 0
    header, body = rows[0], rows[1:]
    column = header.index("epoch") if "epoch" in header else None
    kept = []
    for row in body:
        try:
            good = column is not None and len(row) == len(header) and int(float(row[column])) < first_epoch
        except ValueError:
            good = False
        if good:
            kept.append(row)
    if len(kept) == len(body):
        return 0
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([header] + kept)
    write_text_atomically(path, out.getvalue())
    return len(body) - len(kept)


class EpochLog(keras.callbacks.CSVLogger):
    """keras.callbacks.CSVLogger that writes finished epochs only, from the run's checkpoint.

    :class:`RunCheckpoint` calls :meth:`write` for an epoch that finished, just before it saves
    the epoch's checkpoint; an epoch ended early by a signal or a NaN loss is not written (its
    checkpoint does not count it either, and ``--resume`` trains it again). Logging before
    saving means a kill in between leaves a row for an epoch the checkpoint lacks, which the
    resumed run drops (:func:`trim_log`), never a finished epoch without its row.

    Args:
        filename: the CSV file.
        append: add to an existing file (a resumed run) instead of starting a new one.
    """

    def __init__(self, filename, append=False):
        super().__init__(str(filename), append=append)

    def on_epoch_end(self, epoch, logs=None):
        """Nothing: RunCheckpoint writes the row (see the class docstring)."""

    def write(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)


def make_callbacks(run_dir, monitor="val_loss", mode="min", initial_epoch=0, schedule=None, write=True,
                   agree=None, sync=None):
    """[RunCheckpoint, EpochLog, TensorBoard (TF backend), LearningRateScheduler] for a run.

    ``schedule`` is an epoch -> learning-rate function or a TimeBudget callback. A resumed
    run (``initial_epoch > 0``) drops log rows of epochs >= ``initial_epoch`` first.
    ``write=False`` (a worker that is not the chief): only RunCheckpoint, writing nothing, and
    the schedule; nothing in ``run_dir`` is created or changed. ``agree``, ``sync``: see RunCheckpoint."""
    run_dir = Path(run_dir)
    if not write:
        callbacks = [RunCheckpoint(run_dir, monitor, mode, initial_epoch, write=False, agree=agree, sync=sync)]
        return callbacks + _schedule_callbacks(schedule)
    run_dir.mkdir(parents=True, exist_ok=True)
    if initial_epoch > 0:
        trim_log(run_dir / "log.csv", initial_epoch)
    epoch_log = EpochLog(run_dir / "log.csv", append=initial_epoch > 0)
    callbacks = [RunCheckpoint(run_dir, monitor, mode, initial_epoch, epoch_log, agree=agree, sync=sync), epoch_log]
    if keras.backend.backend() == "tensorflow" and importlib.util.find_spec("tensorboard") is not None:
        callbacks.append(keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), write_graph=False))
    return callbacks + _schedule_callbacks(schedule)


def _schedule_callbacks(schedule):
    if isinstance(schedule, keras.callbacks.Callback):
        return [schedule]
    if schedule is not None:
        return [keras.callbacks.LearningRateScheduler(schedule)]
    return []
