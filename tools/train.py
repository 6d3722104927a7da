"""Train a model: ``python -m tools.train {unet,mrcnn} --data DIR [--data DIR2] --out RUN_DIR [options]``.

Both models train through the one engine (:mod:`tools.engine.trainer`): data roots in Kaggle's
layout or the compact labels layout, a validation split stratified by image type (written to
RUN_DIR/split.json), augmented random crops, atomic best/last checkpoints with optimizer state,
CSV + TensorBoard logs, a clean stop on Ctrl-C / SIGTERM (exit 130; continue with ``--resume``),
a refusal to go on after a NaN loss, and at the end the exported model
RUN_DIR/model.weights.h5 + model.json (what ``tools.predict --weights`` takes) scored on the
validation images with the DSB metric.

``--resume`` continues the run in RUN_DIR with its saved config: the options of a new stage
(learning rate, epochs, time limit, layers, steps, workers) apply; the ones that would change
the network are refused. ``python -m tools.train unet --help`` lists each model's options.

Several GPUs, several machines: ``--multi-gpu`` trains on every GPU of this machine,
``--multi-worker`` on every GPU of every machine of the cluster in TF_CONFIG (the cluster
manager starts the same command on each machine, with the same RUN_DIR on a shared file system;
worker 0 writes it). The batch options are per GPU; the global batch and the learning rate grow
with the GPUs (--lr-scaling; tools/engine/distribute.py says how)::

    # on node1; on node2 the same with "index": 1
    export TF_CONFIG='{"cluster": {"worker": ["node1:23456", "node2:23456"]}, "task": {"type": "worker", "index": 0}}'
    python -m tools.train unet --multi-worker --data DIR --out /shared/run
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from preprocessing.errors import NucleiError
from preprocessing.precision import PRECISION_CHOICES, resolve_precision
from tools.cli import run_command

# command-line option -> Mask R-CNN config field
MRCNN_FIELDS = {
    "backbone": "BACKBONE", "alpha": "BACKBONE_ALPHA", "crop_size": "IMAGE_CROP_SIZE",
    "images_per_gpu": "IMAGES_PER_GPU", "learning_rate": "LEARNING_RATE", "steps_per_epoch": "STEPS_PER_EPOCH",
    "validation_steps": "VALIDATION_STEPS", "augment": "AUGMENT", "normalize": "NORMALIZE", "seed": "SEED",
    "optimizer": "OPTIMIZER", "train_rois": "TRAIN_ROIS_PER_IMAGE", "pyramid_size": "TOP_DOWN_PYRAMID_SIZE",
    "backbone_weights": "BACKBONE_WEIGHTS", "invert_light_background": "INVERT_LIGHT_BACKGROUND",
    "cascade": "CASCADE_STAGES", "mask_paste": "MASK_PASTE",
}
UNET_FIELDS = ("base_filters", "max_filters", "depth", "crop_size", "batch_size", "learning_rate", "dropout",
               "focal_gamma", "normalization", "invert_light_background", "encoder", "encoder_weights",
               "distance_head", "distance_weight", "border_width_factor", "border_width_max")
# --preset NAME: a training recipe for a kind of machine (config fields + augmentation + precision);
# options given on the command line override it. 'cpu': the ImageNet MobileNetV2 encoder, light
# augmentation, for a time budget (--time-limit anneals the learning rate over it). Against StarDist
# trained for the same 10 minutes on the same 2-core CPU and split it scored 0.424 vs 0.349 on
# validation and 0.370 vs 0.296 on the bundled sample; the plain U-Net at 16 filters scored 0.331 /
# 0.315 (bench/side_by_side.py, bench/RESULTS.md). bfloat16 where the CPU has it (AVX512-BF16 / AMX):
# 1.1-1.4x the crops in the same 10 minutes, and +0.056 / +0.052 on validation, +0.079 / +0.088 on
# the sample over float32 (seeds 0 / 1, bench/RESULTS.md).
UNET_PRESETS = {
    "cpu": {"encoder": "mobilenetv2", "depth": 5, "crop_size": 256, "batch_size": 8, "augment": "light",
            "precision": "auto",  # bfloat16 where the CPU computes it natively
            "encoder_weights": str(Path(__file__).resolve().parents[1] / "weights" / "mobilenetv2_imagenet.weights.h5")},
}
# config fields a resumed run may change (a new stage); any other change is refused
RESUMABLE = {"learning_rate", "batch_size", "LEARNING_RATE", "STEPS_PER_EPOCH", "VALIDATION_STEPS", "AUGMENT",
             "IMAGES_PER_GPU", "SEED"}


def add_run_options(parser: argparse.ArgumentParser, epochs: int) -> None:
    """Options of the engine, the same for both models."""
    parser.add_argument("--data", action="append", required=True, help="data root (repeatable)")
    parser.add_argument("--out", required=True, help="run folder (checkpoints, logs, config, split)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out (see above)")
    parser.add_argument("--exclude", action="append", default=[],
                        help="folder whose image ids are left out of training and validation (repeatable)")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=epochs, help="epoch to stop at (cumulative)")
    parser.add_argument("--time-limit", type=float,
                        help="train for this many seconds (cosine learning rate over the time), then stop")
    parser.add_argument("--workers", type=int, default=1, help="PyDataset workers")
    parser.add_argument("--multiprocessing", action="store_true", help="workers are processes, not threads")
    parser.add_argument("--multi-gpu", action="store_true", help="tf.distribute.MirroredStrategy over all GPUs")
    parser.add_argument("--multi-worker", action="store_true",
                        help="tf.distribute.MultiWorkerMirroredStrategy over the machines named by TF_CONFIG "
                             "(all their GPUs); --out must be a folder every machine sees; the chief writes it")
    parser.add_argument("--lr-scaling", choices=("linear", "sqrt", "none"), default="linear",
                        help="on several GPUs or machines the batch options are per GPU and the global batch "
                             "is that x the GPUs; the learning rate is multiplied by the GPUs (linear, default), "
                             "by their square root (sqrt), or kept as given (none)")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = the backend's choice)")
    parser.add_argument("--max-images", type=int, help="use at most this many images (quick runs)")
    parser.add_argument("--export", choices=("best", "last"),
                        help="checkpoint exported as RUN/model.weights.h5: 'best' by validation loss or 'last'; "
                             "default 'last' with --time-limit (the learning rate has annealed there), else 'best'")
    parser.add_argument("--no-val-score", action="store_true", help="skip the final DSB scoring")
    parser.add_argument("--holdout-domains", metavar="auto|NAME,NAME",
                        help="validate on whole acquisition domains instead of a stratified split: 'auto' "
                             "(one colour and one grey domain, preprocessing.domains.default_holdout) or names")
    parser.add_argument("--split", metavar="SPLIT.json",
                        help="train and validate on the ids of this split file (another run's split.json, or "
                             "weights/split.json: the shipped models'); ids absent from --data are skipped")
    parser.add_argument("--precision", choices=PRECISION_CHOICES,
                        help="arithmetic of the network's layers: float32 (default; the cpu preset: auto), "
                             "bfloat16 compute with float32 weights (Keras' mixed_bfloat16; the files are the "
                             "same, so a bfloat16 run resumes, exports and predicts as float32), for GPUs with "
                             "bfloat16 units and CPUs with AVX512-BF16 / AMX (elsewhere it is emulated, about 13x "
                             "slower), or auto: bfloat16 where the CPU computes it natively, else float32")
    parser.add_argument("--warm-start", metavar="WEIGHTS",
                        help="start from these weights (same architecture: pass its config with --config), "
                             "e.g. weights/unet.weights.h5 with --config weights/unet.json")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    models = parser.add_subparsers(dest="model", required=True, metavar="{unet,mrcnn}")

    unet = models.add_parser("unet", help="the U-Net (body / border / background maps + watershed)")
    add_run_options(unet, epochs=20)
    unet.add_argument("--config", help="U-Net config JSON to start from (options below override it)")
    unet.add_argument("--seed", type=int, default=0)
    unet.add_argument("--steps-per-epoch", type=int, default=200)
    unet.add_argument("--preset", choices=sorted(UNET_PRESETS),
                      help="a recipe: 'cpu' = ImageNet MobileNetV2 encoder, crop 256, batch 8, light augmentation, "
                           "bfloat16 where the CPU has it, for a --time-limit on a machine without a GPU (beat "
                           "StarDist at equal CPU time); "
                           "options given here override it")
    unet.add_argument("--augment", help="preprocessing.augment preset (none, light, heavy, ...; default heavy)")
    unet.add_argument("--no-balanced", action="store_true", help="sample images uniformly")
    for field in ("base_filters", "max_filters", "depth", "crop_size", "batch_size", "border_width_max"):
        unet.add_argument("--" + field.replace("_", "-"), type=int)
    unet.add_argument("--learning-rate", type=float)
    unet.add_argument("--dropout", type=float)
    unet.add_argument("--focal-gamma", type=float)
    unet.add_argument("--border-width-factor", type=float,
                      help="border band width = clip(round(sqrt(area) * this), 1, --border-width-max) (unet.config)")
    unet.add_argument("--normalization", choices=("plain", "clahe"))
    unet.add_argument("--invert-light-background", action="store_true", default=None)
    unet.add_argument("--distance-head", action="store_true", default=None,
                      help="add the auxiliary distance-map output (unet.config); with --warm-start from a model "
                           "without one, the head starts fresh and the rest loads")
    unet.add_argument("--distance-weight", type=float, help="weight of the distance head's loss (default 1)")
    unet.add_argument("--encoder", choices=("plain", "mobilenetv2"))
    unet.add_argument("--encoder-weights", help="ImageNet encoder weights (.weights.h5)")

    mrcnn = models.add_parser("mrcnn", help="the Mask R-CNN (FPN backbone, RPN, RoIAlign, box and mask heads)")
    add_run_options(mrcnn, epochs=40)
    mrcnn.add_argument("--config", default="nucleus",
                       help="config name (nucleus, tiny, base) or a config JSON file; options below override it")
    mrcnn.add_argument("--layers", default="all", help="heads, 3+, 4+, 5+, all, or a regex over layer names")
    mrcnn.add_argument("--init-weights", help="HDF5 weights loaded by layer name before training (heads excluded)")
    mrcnn.add_argument("--backbone", choices=("mobilenetv2", "resnet50", "resnet101", "tiny"))
    mrcnn.add_argument("--alpha", type=float, help="MobileNetV2 width multiplier")
    mrcnn.add_argument("--crop-size", type=int)
    mrcnn.add_argument("--images-per-gpu", type=int)
    mrcnn.add_argument("--learning-rate", type=float)
    mrcnn.add_argument("--steps-per-epoch", type=int)
    mrcnn.add_argument("--validation-steps", type=int)
    mrcnn.add_argument("--augment", help="preprocessing.augment preset (none, light, heavy, ...)")
    mrcnn.add_argument("--normalize", choices=("standardize", "imagenet", "plain", "clahe"),
                       help="input normalisation (default: the config's; 'imagenet' with --backbone-weights)")
    mrcnn.add_argument("--backbone-weights", metavar="PATH",
                       help="ImageNet backbone weights (named-layer file, e.g. weights/mobilenetv2_imagenet."
                            "weights.h5; mobilenetv2, alpha 1.0); then train --layers heads first, then 4+ or all")
    mrcnn.add_argument("--cascade", type=int, metavar="STAGES",
                       help="box-head stages: 1 = Mask R-CNN (default), 3 = Cascade R-CNN (IoU 0.5/0.6/0.7)")
    mrcnn.add_argument("--cascade-from", metavar="WEIGHTS",
                       help="start a --cascade model from a single-stage model (e.g. weights/mrcnn.weights.h5 "
                            "with --config weights/mrcnn.json): every stage's box head from its box head")
    mrcnn.add_argument("--mask-shape", type=int, choices=(28, 56),
                       help="side of the mask head's output (default: the config's, 28); 56 with --warm-start "
                            "from a 28 model starts its extra upsampling as nearest-neighbour")
    mrcnn.add_argument("--mask-paste", choices=("soft", "binary"),
                       help="masks pasted into their boxes as probabilities, thresholded after (soft, default), "
                            "or thresholded first (binary)")
    mrcnn.add_argument("--invert-light-background", action="store_true", default=None,
                       help="invert light-background images so nuclei are always bright (as the U-Net's option)")
    mrcnn.add_argument("--optimizer", choices=("SGD", "ADAM"))
    mrcnn.add_argument("--train-rois", type=int)
    mrcnn.add_argument("--pyramid-size", type=int)
    mrcnn.add_argument("--seed", type=int)
    return parser


def resumed_config(saved: Any, changes: dict[str, Any], run_dir: Path) -> Any:
    """The run's saved config with the changes a new stage may make; others refused."""
    changed = {name: value for name, value in changes.items() if getattr(saved, name) != value}
    refused = sorted(name for name in changed if name not in RESUMABLE)
    if refused:
        shown = ", ".join(f"{name} ({getattr(saved, name)!r} -> {changed[name]!r})" for name in refused)
        raise NucleiError(f"--resume cannot change what the run was built with: {shown}; "
                          "start a new run (another --out) for that", run_dir)
    if changed:
        print("resuming with " + ", ".join(f"{name}={value!r}" for name, value in changed.items()))
    return saved.replace(**changed) if changed else saved


def unet_task(args: argparse.Namespace, run_dir: Path) -> Any:
    from tools.engine.tasks import UNetTask
    from unet.config import UNetConfig

    preset = dict(UNET_PRESETS[args.preset]) if getattr(args, "preset", None) else {}
    augment = args.augment or preset.pop("augment", "heavy")
    preset.pop("augment", None)  # given on the command line: the preset's is not a config field either
    preset_precision = preset.pop("precision", "float32")  # not a config field either
    precision = resolve_precision(args.precision or preset_precision)
    overrides = {**preset, **{name: getattr(args, name) for name in UNET_FIELDS if getattr(args, name) is not None}}
    if args.resume and (run_dir / "config.json").is_file():
        config = resumed_config(UNetConfig.load(run_dir / "config.json"), overrides, run_dir)
    else:
        base = UNetConfig.load(args.config) if args.config else UNetConfig()
        config = base.replace(**overrides)
    if args.steps_per_epoch < 1:
        raise NucleiError(f"--steps-per-epoch must be >= 1, got {args.steps_per_epoch}")
    return UNetTask(config, args.steps_per_epoch, augment, balanced=not args.no_balanced, precision=precision)


def mrcnn_task(args: argparse.Namespace, run_dir: Path) -> Any:
    from mrcnn.config import CONFIGS, Config, config_from_name
    from tools.engine.tasks import MrcnnTask

    overrides = {field: getattr(args, name) for name, field in MRCNN_FIELDS.items() if getattr(args, name) is not None}
    if args.mask_shape is not None:
        overrides["MASK_SHAPE"] = (args.mask_shape, args.mask_shape)
    if args.resume and (run_dir / "config.json").is_file():
        config = resumed_config(Config.load(run_dir / "config.json"), overrides, run_dir)
    else:
        base = config_from_name(args.config) if args.config in CONFIGS else Config.load(args.config)
        if args.backbone_weights and args.normalize is None:
            # the pretrained filters and BN statistics were fit to ImageNet-normalised RGB; with a
            # frozen backbone ('heads') other input statistics would shift every activation
            overrides["NORMALIZE"] = "imagenet"
        # GPU_COUNT is set at run time to the replicas the run has (tools.engine.tasks.MrcnnTask)
        config = base.replace(**overrides)
    return MrcnnTask(config, args.layers, args.init_weights if not args.resume else None,
                     cascade_from=args.cascade_from if not args.resume else None,
                     precision=resolve_precision(args.precision or "float32"))


def run_training(args: argparse.Namespace) -> int:
    from tools.engine.distribute import cluster_from_env, set_threads
    from tools.engine.trainer import TrainOptions, check_run_folder, train

    run_dir = Path(args.out)
    set_threads(args.threads)
    task = unet_task(args, run_dir) if args.model == "unet" else mrcnn_task(args, run_dir)
    seed = args.seed if args.seed is not None else task.config.SEED
    # options are validated (e.g. --epochs 0) before anything is written
    options = TrainOptions(data=list(args.data), exclude=list(args.exclude), val_fraction=args.val_fraction,
                           seed=seed, epochs=args.epochs, time_limit=args.time_limit, max_images=args.max_images,
                           workers=args.workers, multiprocessing=args.multiprocessing, multi_gpu=args.multi_gpu,
                           multi_worker=args.multi_worker, lr_scaling=args.lr_scaling, export=args.export,
                           val_score=not args.no_val_score,
                           holdout_domains=args.holdout_domains.split(",") if args.holdout_domains else None,
                           warm_start=args.warm_start, split_file=args.split)
    cluster = cluster_from_env() if args.multi_worker else None
    if args.multi_worker and cluster is None:
        raise NucleiError("--multi-worker needs TF_CONFIG, the cluster's workers and this process's place among "
                          "them (see python -m tools.train --help)")
    chief = cluster is None or cluster.is_chief
    # before any model or data is loaded (train() says it); only the chief creates the folder
    check_run_folder(run_dir, args.resume, quiet=True, create=chief)
    if args.model == "mrcnn" and chief:
        print(task.config.display())
    if task.precision == "bfloat16" and chief:
        from preprocessing.precision import emulated_bfloat16_warning
        from tools.engine.distribute import accelerator_present

        print("precision: bfloat16 compute, float32 weights")
        warning = None if accelerator_present() else emulated_bfloat16_warning(task.precision)
        if warning:
            print(warning, file=sys.stderr)
    return train(task, options, run_dir, resume=args.resume)


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser, run_training, argv)


if __name__ == "__main__":
    sys.exit(main())
