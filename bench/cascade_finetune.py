"""Cascade R-CNN and 56-pixel masks against a single box head with 28-pixel masks, each fine-tuned
from the shipped Mask R-CNN on the CPU (issue 14).

    python bench/cascade_finetune.py --minutes 20 --out bench/results/cascade_finetune.json
    python bench/cascade_finetune.py --minutes 20 --variants single,mask56 --out bench/results/mask56_finetune.json

Runs of ``tools.train mrcnn`` from the shipped weights, the same minutes, data, split
(``weights/split.json``), augmentation and learning rate, training the heads only
(``--layers heads``: RPN, FPN, box and mask heads; the backbone frozen, as Matterport's first
stage):

* ``single``: the shipped architecture (``--warm-start weights/mrcnn.weights.h5``), the control
  that separates the effect of more training from the effect of the change;
* ``cascade``: ``--cascade 3 --cascade-from weights/mrcnn.weights.h5`` (stages 2 and 3 start as
  copies of the single box head and train at IoU 0.6 and 0.7);
* ``mask56``: ``--mask-shape 56 --warm-start weights/mrcnn.weights.h5`` (a second 2x upsampling
  in the mask head, starting as nearest-neighbour so the masks start as the shipped model's;
  targets from the 56 x 56 mini masks the shipped config already keeps). Its untrained start is
  scored too (``mask56 start``), which checks that start;
* ``mask56_only``: the same with only the mask head training (``--layers 'mrcnn_mask.*'``): the
  shipped model's detections unchanged, so what moves is the outlines alone (how the 56-pixel
  head shipped in session 29). With the shipped model at 56 already, both ``mask56`` variants are
  plain warm starts (more training of the same head) and ``mask56 start`` is not scored.

Each, and the shipped model untouched, is scored with the shipped params
(weights/mrcnn.params.json: post-processing and the 0.6 mask threshold) on the validation images
of ``weights/split.json`` and the bundled sample, per IoU threshold (bench/per_iou.py). A variant
is worth a GPU run if it beats ``single`` at IoU >= 0.75 on both sets. Budgets are CPU
time: run nothing else meanwhile.
"""

import argparse
import sys
from pathlib import Path

from per_iou import ROOT, add_data_options, load_sets, report, score_settings, train_variants

VARIANTS = {
    "single": ["--warm-start", "weights/mrcnn.weights.h5"],
    "cascade": ["--cascade", "3", "--cascade-from", "weights/mrcnn.weights.h5"],
    "mask56": ["--mask-shape", "56", "--warm-start", "weights/mrcnn.weights.h5"],
    # the mask head alone trains (the last --layers wins): the shipped detections, finer outlines
    "mask56_only": ["--mask-shape", "56", "--warm-start", "weights/mrcnn.weights.h5", "--layers", "mrcnn_mask.*"],
}


def finer_masks_start(folder: Path) -> Path:
    """The shipped model with 56 x 56 masks before any training (mrcnn.model.warm_start_finer_masks)."""
    from mrcnn.config import Config
    from mrcnn.model import MaskRCNN, warm_start_finer_masks

    shipped = ROOT / "weights" / "mrcnn.weights.h5"
    config = Config.load(ROOT / "weights" / "mrcnn.json").replace(MASK_SHAPE=(56, 56), BACKBONE_WEIGHTS=None)
    model = MaskRCNN(config)
    warm_start_finer_masks(model, shipped)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_model(folder / "model.weights.h5")
    return folder / "model.weights.h5"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_options(parser, "cascade_finetune.json")
    parser.add_argument("--minutes", type=float, default=20.0, help="training budget of each run")
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--augment", default="light", help="the shipped model's own (weights/mrcnn.json)")
    parser.add_argument("--seed", type=int, help="training seed of both runs (default: the config's)")
    parser.add_argument("--work", default="/tmp/cascade_finetune")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--score-only", action="store_true", help="score the runs --work already holds")
    args = parser.parse_args()

    from tools.inference.models import build_pipeline

    params = ROOT / "weights" / "mrcnn.params.json"
    command = [sys.executable, "-m", "tools.train", "mrcnn", "--data", args.data, "--exclude", args.sample,
               "--split", str(ROOT / "weights" / "split.json"), "--config", str(ROOT / "weights" / "mrcnn.json"),
               "--layers", "heads", "--augment", args.augment, "--learning-rate", str(args.learning_rate),
               "--time-limit", str(int(args.minutes * 60)), "--epochs", "10000", "--no-val-score", "--export", "last"]
    if args.seed is not None:
        command += ["--seed", str(args.seed)]
    variants = {name: VARIANTS[name] for name in args.variants.split(",")}
    runs = train_variants(Path(args.work), variants, command, args.score_only)

    val, domains, sample = load_sets(args)
    models = [("shipped", ROOT / "weights" / "mrcnn.weights.h5")]
    from mrcnn.config import Config

    shipped_masks = Config.load(ROOT / "weights" / "mrcnn.json").MASK_SHAPE[0]
    if ("mask56" in runs or "mask56_only" in runs) and shipped_masks < 56:  # 56 ships since session 29
        models.append(("mask56 start", finer_masks_start(Path(args.work) / "mask56_start")))
    settings = {}
    for name, weights in [*models, *runs.items()]:
        pipeline = build_pipeline("mrcnn", weights=weights, params=params)
        predicted = {s.image_id: pipeline.predict(s.image)[0] for s in val + sample}
        settings[name] = lambda s, predicted=predicted: predicted[s.image_id]
    results = score_settings(settings, val, domains, sample)
    print(f"{len(val)} validation images, {len(sample)} sample images; shipped params ({params.name})")
    report(results, "model", args.out, "python bench/cascade_finetune.py " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
