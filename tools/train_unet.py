"""Train the U-Net: ``python -m tools.train unet --data DIR [--data DIR2] --out RUN_DIR ...``.

Reads one or more data roots (Kaggle layout or the compact labels layout), splits a
validation set stratified by image type, trains on augmented random crops, writes
atomic best/last checkpoints and logs into RUN_DIR, and at the end scores the
validation images with the DSB metric. ``--resume`` continues an interrupted run.
The final model is RUN_DIR/model.weights.h5 + RUN_DIR/model.json (the best checkpoint
without optimizer state: what tools.predict takes).
"""

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path

from preprocessing.errors import NucleiError

log = logging.getLogger("train_unet")


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m tools.train unet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", action="append", required=True, help="data root (repeatable)")
    parser.add_argument("--out", required=True, help="run folder (checkpoints, logs, config)")
    parser.add_argument("--config", help="U-Net config JSON to start from (fields below override it)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--exclude", action="append", default=[],
                        help="folder whose image ids are left out of training and validation (repeatable)")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--steps-per-epoch", type=int, default=200)
    parser.add_argument("--augment", default="heavy", choices=("none", "light", "heavy"))
    parser.add_argument("--no-balanced", action="store_true", help="sample images uniformly")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="PyDataset workers")
    parser.add_argument("--multiprocessing", action="store_true", help="workers are processes, not threads")
    parser.add_argument("--multi-gpu", action="store_true", help="tf.distribute.MirroredStrategy over all GPUs")
    parser.add_argument("--time-limit", type=float,
                        help="train for this many seconds (cosine learning rate over the time), not a fixed schedule")
    parser.add_argument("--max-images", type=int, help="use at most this many images (quick runs)")
    parser.add_argument("--no-val-score", action="store_true", help="skip the final DSB scoring")
    for field in ("base_filters", "max_filters", "depth", "crop_size", "batch_size"):
        parser.add_argument("--" + field.replace("_", "-"), type=int)
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--dropout", type=float)
    parser.add_argument("--focal-gamma", type=float)
    parser.add_argument("--normalization", choices=("plain", "clahe"))
    parser.add_argument("--invert-light-background", action="store_true", default=None)
    parser.add_argument("--encoder", choices=("plain", "mobilenetv2"))
    parser.add_argument("--encoder-weights", help="ImageNet encoder weights (.weights.h5)")
    return parser


def make_config(args, run_dir):
    from unet.config import UNetConfig

    if args.resume and (run_dir / "config.json").is_file():
        return UNetConfig.load(run_dir / "config.json")
    config = UNetConfig.load(args.config) if args.config else UNetConfig()
    overrides = {name: getattr(args, name) for name in (
        "base_filters", "max_filters", "depth", "crop_size", "batch_size", "learning_rate", "dropout",
        "focal_gamma", "normalization", "invert_light_background", "encoder", "encoder_weights")
        if getattr(args, name) is not None}
    return UNetConfig(**{**dataclasses.asdict(config), **overrides})



def export_model(checkpoint, config, stem):
    """Write STEM.weights.h5 (model weights only, no optimizer state) + STEM.json from a checkpoint."""
    from preprocessing.files import save_weights_atomic
    from unet.model import build_unet

    model = build_unet(dataclasses.replace(config, encoder_weights=None))
    model.load_weights(checkpoint)  # checkpoints also hold optimizer variables; a bare model skips them
    weights_path = Path(f"{stem}.weights.h5")
    save_weights_atomic(model, weights_path)
    config.save(Path(f"{stem}.json"))
    return weights_path



def train(args):
    import keras

    from preprocessing.dataset import load_training_samples
    from preprocessing.split import stratified_split
    from tools.evaluate import score_predictor
    from tools.engine.callbacks import (TimeBudget, cosine_schedule, get_strategy, load_optimizer, make_callbacks,
                                resume_state)
    from unet.data import UNetTrainData, validation_batches
    from unet.losses import loss_for
    from unet.model import build_unet
    from unet.predictor import UNetPredictor

    run_dir = Path(args.out)
    if run_dir.exists() and (run_dir / "state.json").exists() and not args.resume:
        raise NucleiError("run folder already holds a run; pass --resume to continue it or choose another --out",
                          run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config = make_config(args, run_dir)
    config.save(run_dir / "config.json")
    keras.utils.set_random_seed(args.seed)

    samples = load_training_samples(args.data, args.exclude, args.max_images, args.seed)
    train_ids, val_ids = stratified_split([s.image_id for s in samples], [s.image_type for s in samples],
                                          args.val_fraction, args.seed)
    train_set = {i for i in train_ids}
    train_samples = [s for s in samples if s.image_id in train_set]
    val_samples = [s for s in samples if s.image_id not in train_set]
    print(f"training on {len(train_samples)} images, validating on {len(val_samples)}")

    train_data = UNetTrainData(train_samples, config, args.steps_per_epoch, args.augment,
                               balanced=not args.no_balanced, seed=args.seed, workers=args.workers,
                               use_multiprocessing=args.multiprocessing, max_queue_size=2 * max(1, args.workers))
    val_data = validation_batches(val_samples, config) if val_samples else None

    initial_epoch, last_weights = resume_state(run_dir) if args.resume else (0, None)
    train_data.set_epoch(initial_epoch)
    strategy = get_strategy(args.multi_gpu)
    with strategy.scope():
        model = build_unet(config)
        optimizer = keras.optimizers.AdamW(config.learning_rate, weight_decay=config.weight_decay, clipnorm=5.0)
        model.compile(optimizer=optimizer, loss=loss_for(config))
        if last_weights is not None:
            model.load_weights(last_weights)
            restored = load_optimizer(optimizer, model, run_dir / "last.optimizer.npz")
            print(f"resumed from {last_weights} at epoch {initial_epoch}"
                  + ("" if restored else " (optimizer state restarted)"))
    if initial_epoch >= args.epochs:
        print(f"run already has {initial_epoch} epochs (asked for {args.epochs})")
    schedule = (TimeBudget(config.learning_rate, args.time_limit) if args.time_limit
                else cosine_schedule(config.learning_rate, args.epochs))
    callbacks = make_callbacks(run_dir, "val_loss" if val_data is not None else "loss", "min", initial_epoch,
                               schedule)
    checkpoint = callbacks[0]
    started, start_iterations = time.time(), int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    model.fit(train_data, epochs=args.epochs, initial_epoch=initial_epoch, validation_data=val_data,
              validation_batch_size=config.batch_size, callbacks=callbacks, verbose=1 if sys.stdout.isatty() else 2)
    elapsed = time.time() - started
    interrupted = checkpoint.check()  # raises TrainingStopped on NaN
    if interrupted:
        print(f"interrupted: saved {run_dir / 'last.weights.h5'}; continue with --resume")
        return 130
    done = (int(keras.ops.convert_to_numpy(model.optimizer.iterations)) - start_iterations) * config.batch_size
    print(f"trained {done} crops in {elapsed:.0f} s ({done / max(elapsed, 1e-9):.1f} crops/s)")

    best = run_dir / "best.weights.h5"
    model_path = export_model(best if best.is_file() else run_dir / "last.weights.h5", config, run_dir / "model")
    print(f"model: {model_path} (+ {model_path.name.replace('.weights.h5', '.json')}), for tools.predict")
    if val_samples and not args.no_val_score:
        predictor = UNetPredictor.from_path(model_path)
        result = score_predictor(predictor, val_samples)
        from preprocessing.files import save_json_atomic

        save_json_atomic(run_dir / "val_score.json", result)
        per_type = ", ".join(f"{k} {v:.4f}" for k, v in sorted(result.get("per_type", {}).items()))
        print(f"validation DSB score: {result['score']:.4f} ({per_type})")
    return 0


def main(argv=None):
    from tools.engine.callbacks import run_training_cli

    return run_training_cli(build_parser, train, argv)


if __name__ == "__main__":
    sys.exit(main())
