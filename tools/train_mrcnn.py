"""Train the Mask R-CNN: ``python -m tools.train mrcnn --data DIR --out RUN_DIR [options]``.

Reads one or more data roots (Kaggle layout or the compact labels layout), splits a
validation set stratified by image type, trains on augmented random crops with
Matterport's stages (``--layers heads|3+|4+|5+|all|REGEX``), writes atomic best/last
checkpoints, CSV and TensorBoard logs into RUN_DIR (resumable with ``--resume``), and
at the end scores the validation images with the DSB metric.

The trained model is RUN_DIR/model.weights.h5 + RUN_DIR/model.json: the best checkpoint (by
validation loss), or the last one with ``--time-limit`` (``--export`` chooses), without its
optimizer state; predict with
``python -m tools.predict --model mrcnn --weights RUN_DIR/model.weights.h5 --images DIR --out OUT``.
"""

import argparse
import logging
import shutil
import sys
import time
from pathlib import Path

from preprocessing.errors import NucleiError

log = logging.getLogger("train_mrcnn")

# command-line option -> config field
OVERRIDES = {
    "backbone": "BACKBONE", "alpha": "BACKBONE_ALPHA", "crop_size": "IMAGE_CROP_SIZE",
    "images_per_gpu": "IMAGES_PER_GPU", "learning_rate": "LEARNING_RATE", "steps_per_epoch": "STEPS_PER_EPOCH",
    "validation_steps": "VALIDATION_STEPS", "augment": "AUGMENT", "normalize": "NORMALIZE", "seed": "SEED",
    "optimizer": "OPTIMIZER", "train_rois": "TRAIN_ROIS_PER_IMAGE", "pyramid_size": "TOP_DOWN_PYRAMID_SIZE",
    "backbone_weights": "BACKBONE_WEIGHTS",
}


# options that --resume applies on top of the run's saved config (the others are ignored)
RESUME_OVERRIDES = ("learning_rate", "steps_per_epoch", "validation_steps")


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m tools.train mrcnn", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", action="append", required=True, help="data root (repeatable)")
    parser.add_argument("--out", required=True, help="run folder (checkpoints, logs, config)")
    parser.add_argument("--config", default="nucleus",
                        help="config name (nucleus, tiny, base) or a config JSON file; options below override it")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out with its config (only --learning-rate, --steps-per-epoch, "
                             "--validation-steps and --layers may change, e.g. for the next stage)")
    parser.add_argument("--exclude", action="append", default=[],
                        help="folder whose image ids are left out of training and validation (repeatable)")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=40, help="epoch to stop at (cumulative)")
    parser.add_argument("--layers", default="all", help="heads, 3+, 4+, 5+, all, or a regex over layer names")
    parser.add_argument("--init-weights", help="HDF5 weights loaded by layer name before training (heads excluded)")
    parser.add_argument("--time-limit", type=float, help="seconds: cosine LR over this budget, then stop")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = the backend's choice)")
    parser.add_argument("--workers", type=int, default=1, help="PyDataset worker threads")
    parser.add_argument("--multiprocessing", action="store_true",
                        help="workers are processes, not threads (keeps the GIL free for the training loop)")
    parser.add_argument("--multi-gpu", action="store_true", help="tf.distribute.MirroredStrategy over all GPUs")
    parser.add_argument("--max-images", type=int, help="use at most this many images (quick runs)")
    parser.add_argument("--export", choices=("best", "last"),
                        help="checkpoint exported as RUN/model.weights.h5: 'best' by validation loss or "
                             "'last'; default 'last' with --time-limit (the learning rate has annealed to "
                             "its lowest there), else 'best'")
    parser.add_argument("--no-val-score", action="store_true", help="skip the final DSB scoring")
    parser.add_argument("--backbone", choices=("mobilenetv2", "resnet50", "resnet101", "tiny"))
    parser.add_argument("--alpha", type=float, help="MobileNetV2 width multiplier")
    parser.add_argument("--crop-size", type=int)
    parser.add_argument("--images-per-gpu", type=int)
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--steps-per-epoch", type=int)
    parser.add_argument("--validation-steps", type=int)
    parser.add_argument("--augment", choices=("none", "light", "heavy"))
    parser.add_argument("--normalize", choices=("standardize", "imagenet", "plain", "clahe"),
                        help="input normalisation (default: the config's; 'imagenet' with --backbone-weights)")
    parser.add_argument("--backbone-weights", metavar="PATH",
                        help="ImageNet backbone weights (named-layer file, e.g. weights/mobilenetv2_imagenet."
                             "weights.h5; mobilenetv2, alpha 1.0); then train --layers heads first, then 4+ or all")
    parser.add_argument("--optimizer", choices=("SGD", "ADAM"))
    parser.add_argument("--train-rois", type=int)
    parser.add_argument("--pyramid-size", type=int)
    parser.add_argument("--seed", type=int)
    return parser


def make_config(args, run_dir):
    from mrcnn.config import CONFIGS, Config, config_from_name

    if args.resume and (run_dir / "config.json").is_file():
        config = Config.load(run_dir / "config.json")
        # a new stage of a run (e.g. heads, then all) may change these; the rest is the run's
        changed = {field: getattr(args, name) for name, field in OVERRIDES.items()
                   if name in RESUME_OVERRIDES and getattr(args, name) is not None}
        if changed:
            print(f"resuming with {changed}")
            config = Config.from_dict({**config.to_dict(), **changed})
        return config
    if args.config in CONFIGS:
        base = config_from_name(args.config)
    else:
        base = Config.load(args.config)
    overrides = {field: getattr(args, name) for name, field in OVERRIDES.items() if getattr(args, name) is not None}
    if args.backbone_weights and args.normalize is None:
        # the pretrained filters and BN statistics were fit to ImageNet-normalised RGB; with a
        # frozen backbone ('heads') other input statistics would shift every activation
        overrides["NORMALIZE"] = "imagenet"
    if args.multi_gpu:
        import tensorflow as tf

        overrides["GPU_COUNT"] = max(1, len(tf.config.list_logical_devices("GPU")))
    return Config.from_dict({**base.to_dict(), **overrides})


def export_model(checkpoint, config, stem):
    """Write STEM.weights.h5 (model weights only: checkpoints also hold the optimizer's
    variables, 3x the size) + STEM.json from a checkpoint."""
    from mrcnn.config import Config
    from mrcnn.model import MaskRCNN

    # the checkpoint holds the backbone: the ImageNet file it started from is not needed
    model = MaskRCNN(Config.from_dict({**config.to_dict(), "BACKBONE_WEIGHTS": None}))
    model.load_weights(str(checkpoint))  # a model never compiled skips the optimizer variables
    model.save_model(Path(f"{stem}.weights.h5"))
    return Path(f"{stem}.weights.h5")


def train(args):
    import keras

    if args.threads and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, args.threads))
    elif args.threads and keras.backend.backend() == "torch":
        import torch

        torch.set_num_threads(args.threads)

    from mrcnn.data import MrcnnDataset
    from mrcnn.model import MaskRCNN
    from preprocessing.dataset import load_training_samples
    from preprocessing.split import stratified_split
    from tools.evaluate import score_predictor
    from preprocessing.files import save_json_atomic
    from tools.engine.callbacks import TimeBudget, cosine_schedule, get_strategy

    run_dir = Path(args.out)
    if (run_dir / "state.json").exists() and not args.resume:
        raise NucleiError("run folder already holds a run; pass --resume to continue it or choose another --out",
                          run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config = make_config(args, run_dir)
    config.save(run_dir / "config.json")
    keras.utils.set_random_seed(config.SEED)
    print(config.display())

    samples = load_training_samples(args.data, args.exclude, args.max_images, config.SEED)
    train_ids, val_ids = stratified_split([s.image_id for s in samples], [s.image_type for s in samples],
                                          args.val_fraction, config.SEED)
    train_set = set(train_ids)
    train_samples = [s for s in samples if s.image_id in train_set]
    val_samples = [s for s in samples if s.image_id not in train_set]
    save_json_atomic(run_dir / "split.json", {"train": train_ids, "val": val_ids})
    print(f"training on {len(train_samples)} images, validating on {len(val_samples)}")

    train_data = MrcnnDataset(train_samples, config, training=True, workers=args.workers,
                              use_multiprocessing=args.multiprocessing, max_queue_size=2 * max(1, args.workers))
    val_data = MrcnnDataset(val_samples, config, training=False) if val_samples else None

    strategy = get_strategy(args.multi_gpu)
    with strategy.scope():
        model = MaskRCNN(config)
        if args.init_weights and not args.resume:
            from mrcnn.weights import load_weights_by_name

            report = load_weights_by_name(model, args.init_weights, skip_mismatch=True)
            print(f"loaded {len(report['loaded'])} layers by name from {args.init_weights}")
        schedule = (TimeBudget(config.LEARNING_RATE, args.time_limit) if args.time_limit
                    else cosine_schedule(config.LEARNING_RATE, args.epochs))
        started = time.time()
        model.train(train_data, val_data, config.LEARNING_RATE, args.epochs, args.layers, run_dir=run_dir,
                    schedule=schedule, verbose=1 if sys.stdout.isatty() else 2)
    elapsed = time.time() - started
    done = getattr(model, "steps_trained", 0) * config.BATCH_SIZE  # 0 when the run was already complete
    print(f"trained {done} crops in {elapsed:.0f} s ({done / max(elapsed, 1e-9):.2f} crops/s)")

    best = run_dir / "best.weights.h5"
    last = run_dir / "last.weights.h5"
    if not best.is_file() and last.is_file():
        shutil.copyfile(last, best)
    config.save(run_dir / "best.json")
    export = args.export or ("last" if args.time_limit else "best")
    chosen = last if export == "last" and last.is_file() else best
    if not chosen.is_file():
        return 0
    model_path = export_model(chosen, config, run_dir / "model")
    print(f"model: {model_path} (+ {model_path.with_name('model.json').name}), from {chosen.name}")
    if val_samples and not args.no_val_score:
        from mrcnn.predictor import MrcnnPredictor

        result = score_predictor(MrcnnPredictor.from_path(model_path), val_samples)
        save_json_atomic(run_dir / "val_score.json", result)
        print(f"validation DSB score: {result['score']:.4f}")
    return 0


def main(argv=None):
    from tools.engine.callbacks import run_training_cli

    return run_training_cli(build_parser, train, argv)


if __name__ == "__main__":
    sys.exit(main())
