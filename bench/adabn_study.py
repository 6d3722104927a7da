"""Batch-norm statistics re-estimated on the images of one new acquisition (AdaBN, Li et al.
2016): does the Mask R-CNN segment an unfamiliar folder better when its backbone normalises
with that folder's activation statistics? No labels and no training: only the folder's images.

    python bench/adabn_study.py --out bench/results/adabn_study.json

Each of the backbone's batch norms gets the per-channel mean and variance of its input over
crops of the folder's images (8 random 256-pixel crops per image, one forward pass in training
mode, so each sees the earlier ones adapted), blended with the trained statistics: ``alpha`` 1
is the folder's alone.
A "folder" is one acquisition: the images of one domain (bench/domains.py grouping of the
originals) of

* ``target``: the ``shifted`` protocol of bench/protocols.py (the 65 validation images moved to
  acquisitions the training set lacks; bench/self_training.py's target folder);
* ``val``: the same images unshifted (acquisitions the model was trained on: re-estimating
  should change little there);
* ``sample``: the bundled sample, one folder per image type.

The shipped Mask R-CNN (not routed to its stain model, so the adaptation is what differs) with
the shipped params, single pass. Scores are domain-balanced as elsewhere.
"""

import argparse
import sys
import time

import numpy as np

from per_iou import ROOT, add_data_options, load_sets
from self_training import target_images

def batch_norms(backbone) -> list:
    import keras

    return [layer for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)]


def folder_batch(images: list, config, crops_per_image: int = 8, seed: int = 0) -> np.ndarray:
    """One batch of same-size crops of every image of a folder, as the network sees them
    (mrcnn.data.model_input): float32 [n, side, side, C]; side: 256 or the folder's smallest image
    side, floored to a multiple of 32."""
    from mrcnn.data import model_input

    rng = np.random.default_rng(seed)
    side = min(256, min(min(image.shape[:2]) for image in images)) // 32 * 32
    crops = []
    for image in images:
        x, (height, width) = model_input(image, config)
        for _ in range(crops_per_image):
            top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
            crops.append(x[top:top + side, left:left + side])
    return np.stack(crops)


def adapt_batch_norm(backbone, batch: np.ndarray, alpha: float = 1.0) -> None:
    """Re-estimate every batch norm of ``backbone`` on ``batch`` [n, H, W, C] in one forward pass
    in training mode: each normalises with the batch's statistics, so each sees the earlier ones
    already adapted, and keeps moving statistics (1 - alpha) * trained + alpha * the batch's."""
    layers = batch_norms(backbone)
    saved = [(layer.trainable, layer.momentum) for layer in layers]
    for layer in layers:
        layer.trainable, layer.momentum = True, 1.0 - alpha
    try:
        backbone(batch, training=True)
    finally:
        for layer, (trainable, momentum) in zip(layers, saved):
            layer.trainable, layer.momentum = trainable, momentum


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_options(parser, "adabn_study.json")
    parser.add_argument("--alphas", default="0.5,1.0", help="blends to score (0 = the trained statistics)")
    args = parser.parse_args()

    from preprocessing.files import save_json_atomic
    from tools.inference.models import build_pipeline
    from tools.inference.tuning import objective
    from tools.kaggle.metric import dataset_score

    val, domains, sample = load_sets(args)
    sets = {"target": (target_images(val), domains), "val": (val, domains),
            "sample": (sample, {s.image_id: s.image_type for s in sample})}
    pipeline = build_pipeline("mrcnn", params=ROOT / "weights" / "mrcnn.params.json", stain_models=False)
    predictor = pipeline.instance.predictor
    backbone = predictor.model.backbone
    trained = [(np.asarray(b.moving_mean).copy(), np.asarray(b.moving_variance).copy()) for b in batch_norms(backbone)]
    print(f"{len(batch_norms(backbone))} batch norms in the backbone", flush=True)

    def restore() -> None:
        for layer, (mean, variance) in zip(batch_norms(backbone), trained):
            layer.moving_mean.assign(mean)
            layer.moving_variance.assign(variance)

    results = {}
    for alpha in [0.0, *(float(a) for a in args.alphas.split(","))]:
        row = {}
        for set_name, (items, groups) in sets.items():
            started = time.perf_counter()
            predicted = {}
            for group in sorted(set(groups.values())):
                members = [s for s in items if groups[s.image_id] == group]
                restore()
                if alpha > 0:
                    adapt_batch_norm(backbone, folder_batch([s.image for s in members], predictor.config), alpha)
                predicted.update({s.image_id: pipeline.predict(s.image)[0] for s in members})
            result = dataset_score([(s.image_id, s.labels, predicted[s.image_id]) for s in items])
            per_image = {r["id"]: r["score"] for r in result["per_image"]}
            row[set_name] = objective(per_image, groups)
            row[f"{set_name}_mean"] = result["score"]
            row[f"{set_name}_per_iou"] = [float(v) for v in result["per_threshold"]]
            row[f"{set_name}_found"] = int(sum(r["n_pred"] for r in result["per_image"]))
            row[f"{set_name}_true"] = int(sum(r["n_true"] for r in result["per_image"]))
            print(f"alpha {alpha:.2f} {set_name:7s} balanced {row[set_name]:.4f} mean {result['score']:.4f} "
                  f"found {row[f'{set_name}_found']}/{row[f'{set_name}_true']} "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
        results[f"alpha {alpha:g}"] = row
    restore()
    save_json_atomic(args.out, {"command": "python bench/adabn_study.py " + " ".join(sys.argv[1:]),
                                "results": results})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
