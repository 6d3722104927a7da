"""The one training loop both models use: run folder, split, fit, checkpoints, resume, export, score.

A run folder (``--out``) holds::

    config.json           the model config that built the model (written before the first step)
    options.json          the run's options (data, split, budget ...), as last started
    split.json            {"train": [...], "val": [...]}: tune and evaluate read the same split back
    last.weights.h5       + last.optimizer.npz, state.json: the last finished epoch (or interruption)
    best.weights.h5       best monitored value so far
    log.csv, tensorboard/ per-epoch metrics
    model.weights.h5      + model.json: the exported model (no optimizer state), what predict takes
    val_score.json        the DSB score of the exported model on the validation images

:func:`train` is the same for the U-Net and the Mask R-CNN; what differs is a task
(:mod:`tools.engine.tasks`). An interrupted run (Ctrl-C, SIGTERM) saves its last checkpoint
and returns 130 without exporting; ``--resume`` continues it. A NaN loss raises
:class:`tools.engine.callbacks.TrainingStopped`.

On several machines (``multi_worker``, :mod:`tools.engine.distribute`) every worker runs
:func:`train` with the same options and run folder: each reads the same data and split (the
chief's split.json when there is one), builds the model, resumes from the chief's last checkpoint,
and trains in lockstep; only the chief writes the files above, exports and scores. At the end
each worker prints a digest of its weights (they are equal), then all wait for the chief to
finish, so that no worker is reported as lost while the chief still exports.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import keras

from preprocessing.errors import NucleiError
from preprocessing.files import remove_stale_temporaries, save_json_atomic
from preprocessing.settings import Settings
from tools import progress
from tools.engine.callbacks import TimeBudget, cosine_schedule, load_optimizer, make_callbacks, resume_state
from tools.engine.distribute import (agreement, get_strategy, is_chief, is_multi_worker, scale_batch, statistics_sync,
                                     weights_digest, worker_count, worker_name)

INTERRUPTED = 130


class TrainOptions(Settings):
    """How one run trains (everything but the model config)."""

    kind = "train_options"

    data: list = dataclasses.field(default_factory=list)  # data roots (Kaggle or compact labels layout)
    exclude: list = dataclasses.field(default_factory=list)  # folders whose image ids are left out
    val_fraction: float = 0.1  # share of each image type held out for validation
    seed: int = 0  # split, data order, augmentation
    epochs: int = 20  # epoch to stop at (cumulative over resumed runs)
    time_limit: float | None = None  # seconds: cosine learning rate over the budget, then stop
    max_images: int | None = None  # use at most this many images (quick runs)
    workers: int = 1  # PyDataset workers
    multiprocessing: bool = False  # workers are processes, not threads
    multi_gpu: bool = False  # tf.distribute.MirroredStrategy over all GPUs
    multi_worker: bool = False  # tf.distribute.MultiWorkerMirroredStrategy over the machines of TF_CONFIG
    lr_scaling: str = "linear"  # learning rate x replicas ('linear'), x sqrt(replicas) or as configured ('none')
    export: str | None = None  # 'best' or 'last' checkpoint exported; None: 'last' with time_limit, else 'best'
    val_score: bool = True  # score the exported model on the validation images (DSB metric)
    # Domain hold-out: validate on whole acquisition domains (preprocessing.domains) training never
    # sees, which is what unseen data looks like; ['auto'] = preprocessing.domains.default_holdout.
    holdout_domains: list | None = None
    warm_start: str | None = None  # weights file (same architecture) loaded before the first step
    # split.json of another run (e.g. weights/split.json, the shipped models' split): train and
    # validate on the same ids, so a new model and an old one are compared on images neither saw
    split_file: str | None = None

    def validate(self) -> None:
        if not self.data:
            raise NucleiError("training needs at least one --data folder")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise NucleiError(f"--epochs must be a whole number >= 1, got {self.epochs!r}")
        if self.time_limit is not None and not self.time_limit > 0:
            raise NucleiError(f"--time-limit must be > 0 seconds, got {self.time_limit}")
        if not 0 <= self.val_fraction < 1:
            raise NucleiError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if self.workers < 1:
            raise NucleiError(f"--workers must be >= 1, got {self.workers}")
        if self.export not in (None, "best", "last"):
            raise NucleiError(f"--export must be 'best' or 'last', got {self.export!r}")
        if self.holdout_domains is not None and not self.holdout_domains:
            raise NucleiError("--holdout-domains needs 'auto' or domain names")
        if self.holdout_domains and self.split_file:
            raise NucleiError("give --split or --holdout-domains, not both")
        if self.lr_scaling not in ("linear", "sqrt", "none"):
            raise NucleiError(f"--lr-scaling must be linear, sqrt or none, got {self.lr_scaling!r}")


def check_run_folder(run_dir: Path, resume: bool, quiet: bool = False, create: bool = True) -> None:
    """Refuse an --out that cannot hold a run, before anything is loaded.

    ``--resume`` on a folder without a run says so (unless ``quiet``) and starts one. ``create``:
    make the folder (False on a worker that is not the chief: it writes nothing there)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise NucleiError("--out is a file, expected a run folder", run_dir)
    if (run_dir / "state.json").exists() and not resume:
        raise NucleiError("run folder already holds a run; pass --resume to continue it or choose another --out",
                          run_dir)
    if resume and not (run_dir / "state.json").exists() and not quiet:
        print(f"--resume: {run_dir} holds no run yet; starting a new one")
    if not create:
        return
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise NucleiError(f"cannot create the run folder: {error.strerror or error}", run_dir) from None


def split_samples(samples: list, options: TrainOptions, run_dir: Path, write: bool = True) -> tuple[list, list]:
    """Train and validation samples: a resumed run keeps its split.json, a new one writes it.

    ``write=False`` (a worker that is not the chief) computes the same split without writing it;
    every rule is a pure function of the data and the options, so all workers agree."""
    from preprocessing.split import read_split, save_split as _save_split, stratified_split

    say = print if write else (lambda *args: None)  # the chief's log says it once

    def save_split(*args: Any) -> None:
        if write:
            _save_split(*args)

    saved = read_split(run_dir / "split.json")
    if saved is not None:
        train_ids, val_ids = saved
        known = {s.image_id for s in samples}
        missing = sorted(set(train_ids + val_ids) - known)
        if missing:
            raise NucleiError(f"{len(missing)} image(s) of the run's split are not in --data "
                              f"(first: {missing[0]})", run_dir / "split.json")
    elif options.split_file:
        given = read_split(options.split_file)
        if given is None:
            raise NucleiError("split file not found", options.split_file)
        known = {s.image_id for s in samples}
        train_ids, val_ids = [i for i in given[0] if i in known], [i for i in given[1] if i in known]
        absent = len(given[0]) + len(given[1]) - len(train_ids) - len(val_ids)
        unlisted = len(known - set(given[0]) - set(given[1]))
        say(f"split from {options.split_file}: {len(train_ids)} train, {len(val_ids)} validation images"
            + (f"; {absent} listed ids are not in --data" if absent else "")
            + (f"; {unlisted} images of --data are in neither list and left out" if unlisted else ""))
        if not val_ids and options.val_fraction > 0:
            raise NucleiError("no validation image of this split file is in --data", options.split_file)
        save_split(run_dir / "split.json", train_ids, val_ids, {"rule": "given", "source": str(options.split_file)})
    elif options.holdout_domains:
        from preprocessing.domains import assign_domains, default_holdout, domain_holdout_split, image_features

        domains = assign_domains({s.image_id: image_features(s.image, s.labels) for s in samples})
        held = default_holdout(domains) if options.holdout_domains == ["auto"] else list(options.holdout_domains)
        if not held:
            raise NucleiError("no domain to hold out: the data has too few acquisition domains", options.data[0])
        train_ids, val_ids = domain_holdout_split([s.image_id for s in samples], domains, held)
        say(f"domain hold-out: validating on {', '.join(held)} ({len(val_ids)} images)")
        save_split(run_dir / "split.json", train_ids, val_ids,
                   {"rule": "preprocessing.domains.domain_holdout_split", "holdout": held,
                    "domains": {i: domains[i] for i in val_ids}})
    else:
        train_ids, val_ids = stratified_split([s.image_id for s in samples], [s.image_type for s in samples],
                                              options.val_fraction, options.seed)
        save_split(run_dir / "split.json", train_ids, val_ids,
                   {"rule": "preprocessing.split.stratified_split", "val_fraction": options.val_fraction,
                    "seed": options.seed})
    train_set, val_set = set(train_ids), set(val_ids)
    return [s for s in samples if s.image_id in train_set], [s for s in samples if s.image_id in val_set]


def train(task: Any, options: TrainOptions, run_dir: str | Path, resume: bool = False) -> int:
    """Train ``task`` (tools.engine.tasks) into ``run_dir``; returns 0, or 130 when interrupted."""
    from preprocessing.dataset import load_training_samples

    run_dir = Path(run_dir)
    # first: a MultiWorkerMirroredStrategy must exist before TensorFlow runs anything
    strategy = get_strategy(options.multi_gpu, options.multi_worker)
    chief = is_chief(strategy)
    check_run_folder(run_dir, resume, quiet=not chief, create=chief)
    if chief:
        stale = remove_stale_temporaries(run_dir)  # left by a run killed mid-write (kill -9, power loss)
        if stale:
            print(f"removed {stale} temporary file(s) left in {run_dir} by an interrupted run")
        task.config.save(run_dir / "config.json")
        options.save(run_dir / "options.json")
    if is_multi_worker(strategy):
        print(f"{worker_name(strategy)} of {worker_count(strategy)} workers"
              + (" (the chief: writes the run folder)" if chief else "; the chief writes the run folder"))
    scaling = scale_batch(task.per_replica_batch, task.base_learning_rate, strategy.num_replicas_in_sync,
                          options.lr_scaling)
    task.distribute(scaling)
    if scaling.replicas > 1:
        print(scaling.describe())
    keras.utils.set_random_seed(options.seed)

    samples = load_training_samples(options.data, options.exclude, options.max_images, options.seed,
                                    progress=progress.enabled() and chief)
    train_samples, val_samples = split_samples(samples, options, run_dir, write=chief)
    if not train_samples:
        raise NucleiError("no training images left after the validation split", options.data[0])
    print(f"training on {len(train_samples)} images, validating on {len(val_samples)}")
    train_data = task.train_data(train_samples, options.seed, workers=options.workers,
                                 use_multiprocessing=options.multiprocessing,
                                 max_queue_size=2 * max(1, options.workers))
    val_data = task.val_data(val_samples) if val_samples else None

    # every worker reads the chief's checkpoint: the run folder is shared
    initial_epoch, last_weights = resume_state(run_dir) if resume else (0, None)
    if hasattr(train_data, "set_epoch"):
        train_data.set_epoch(initial_epoch)
    with strategy.scope():
        model = task.build(**({"fresh": last_weights is None} if task.name == "mrcnn" else {}))
        if last_weights is None and options.warm_start:
            try:
                _load_checkpoint(model, Path(options.warm_start), "--warm-start weights")
            except NucleiError:
                # a model with an extra head may start from one without it (UNetTask), or with
                # finer masks from one with coarser (MrcnnTask)
                if not (hasattr(task, "warm_start_without_heads") and task.warm_start_without_heads(
                        model, Path(options.warm_start))):
                    raise
            print(f"warm start from {options.warm_start}")
        if last_weights is not None:
            _load_checkpoint(model, last_weights)
            restored = load_optimizer(model.optimizer, model, run_dir / "last.optimizer.npz")
            print(f"resumed from {last_weights} at epoch {initial_epoch}"
                  + ("" if restored else " (optimizer state restarted)"))
    if initial_epoch >= options.epochs:
        print(f"run already has {initial_epoch} epochs (asked for {options.epochs}); nothing to train")
        status = 0
    else:
        status = _fit(model, task, options, run_dir, train_data, val_data, initial_epoch, strategy)
    if not is_multi_worker(strategy):
        return status or finish(task, options, run_dir, val_samples)
    print(f"{worker_name(strategy)}: weights digest {weights_digest(model)}")
    try:
        if not status and chief:
            status = finish(task, options, run_dir, val_samples)
    finally:
        # the others wait here for the chief's export: a worker that left would be reported lost
        # meanwhile; a chief that failed still releases them (its own error is the one to read)
        agreement(strategy)([0.0])
    return status


def _load_checkpoint(model: keras.Model, path: Path, what: str = "checkpoint") -> None:
    if not path.is_file():
        raise NucleiError(f"{what} not found", path)
    try:
        model.load_weights(str(path))
    except Exception as error:  # h5py / Keras raise many kinds for a truncated or foreign file
        raise NucleiError(f"{what} is unreadable or does not fit this model "
                          f"({str(error).splitlines()[0][:200]})", path) from None


def _fit(model: keras.Model, task: Any, options: TrainOptions, run_dir: Path, train_data: Any, val_data: Any,
         initial_epoch: int, strategy: Any = None) -> int:
    agree = agreement(strategy) if strategy is not None else None  # None on one machine
    schedule = (TimeBudget(task.learning_rate, options.time_limit, agree=agree) if options.time_limit
                else cosine_schedule(task.learning_rate, options.epochs))
    write = strategy is None or is_chief(strategy)
    sync = statistics_sync(strategy, model) if strategy is not None else None
    callbacks = make_callbacks(run_dir, "val_loss" if val_data is not None else "loss", "min", initial_epoch,
                               schedule, write=write, agree=agree, sync=sync)
    checkpoint = callbacks[0]
    started = time.time()
    start_step = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    fit_args = {"validation_batch_size": task.batch_size} if isinstance(val_data, tuple) else {}
    model.fit(train_data, epochs=options.epochs, initial_epoch=initial_epoch, validation_data=val_data,
              callbacks=callbacks, verbose=1 if sys.stdout.isatty() and progress.enabled() else 2, **fit_args)
    elapsed = time.time() - started
    interrupted = checkpoint.check()  # raises TrainingStopped on NaN
    if interrupted:
        print(f"interrupted: saved {run_dir / 'last.weights.h5'}; continue with --resume" if write
              else "interrupted: the chief saved the last checkpoint; continue with --resume")
        return INTERRUPTED
    done = (int(keras.ops.convert_to_numpy(model.optimizer.iterations)) - start_step) * task.batch_size
    print(f"trained {done} crops in {elapsed:.0f} s ({done / max(elapsed, 1e-9):.2f} crops/s)")
    return 0


def finish(task: Any, options: TrainOptions, run_dir: Path, val_samples: list) -> int:
    """Export the chosen checkpoint as RUN/model.weights.h5 and score it on the validation images."""
    best, last = run_dir / "best.weights.h5", run_dir / "last.weights.h5"
    export = options.export or ("last" if options.time_limit else "best")
    chosen = last if export == "last" or not best.is_file() else best
    if not chosen.is_file():
        raise NucleiError("no checkpoint to export (did the first epoch finish?)", run_dir)
    model_path = task.export(chosen, run_dir / "model")
    print(f"model: {model_path} (+ model.json), from {chosen.name}")
    if val_samples and options.val_score:
        result = score_validation(task.name, model_path, val_samples)
        save_json_atomic(run_dir / "val_score.json", result)
        per_type = ", ".join(f"{k} {v:.4f}" for k, v in sorted(result.get("per_type", {}).items()))
        print(f"validation DSB score: {result['score']:.4f} ({per_type})")
    return 0


def score_validation(model_name: str, model_path: Path, val_samples: list) -> dict[str, Any]:
    """DSB score of the exported model with default inference parameters (the same pipeline
    ``tools.predict --no-params`` runs)."""
    from tools.inference.models import build_pipeline
    from tools.inference.params import InferenceParams
    from tools.kaggle.scoring import score_pipeline

    pipeline = build_pipeline(model_name, weights=model_path, params=InferenceParams())
    return score_pipeline(pipeline, val_samples)

