"""Predict nuclei: ``python -m tools.predict --model unet --weights FILE --images DIR --out OUTDIR``.

Writes:
    OUTDIR/submission.csv        Kaggle's ImageId,EncodedPixels (atomic, no overlapping nuclei)
    OUTDIR/labels/<id>.png       16-bit instance label image per input
    OUTDIR/overlays/<id>.png     nucleus outlines drawn on the image (unless --no-overlays)

    OUTDIR/contact_sheet.html    with --labels: true positives, false positives and misses per image
    OUTDIR/contact_sheet.png     (the same as one picture) and OUTDIR/score.json

``--images`` takes Kaggle's layout (<id>/images/<id>.png) or a flat folder of images.
Without ``--weights`` the shipped weights in weights/ are used.

Test time: ``--tta N`` averages N of the 15 transforms of tools/tta.py (``--tta 15``: all);
``--ensemble`` combines the U-Net and Mask R-CNN (tools/ensemble.py); ``--dilate``,
``--fill-holes``, ``--closing``, ``--min-size``, ``--max-count`` post-process every
image (tools/postprocess.py); ``--params`` reads the choices made by ``python -m tools.tune``
(flags given on the command line win).
"""

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from preprocessing.errors import NucleiError

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_WEIGHTS = {"unet": WEIGHTS_DIR / "unet.weights.h5", "mrcnn": WEIGHTS_DIR / "mrcnn.weights.h5"}


def load_predictor(model, weights=None):
    """The predictor for ``model`` ('unet' or 'mrcnn') with weights from ``weights`` or weights/."""
    weights = Path(weights) if weights else DEFAULT_WEIGHTS[model]
    if not weights.is_file():
        raise NucleiError("weights file not found (see weights/README.md for how to get or train it)", weights)
    if model == "unet":
        from unet.predictor import UNetPredictor

        return UNetPredictor.from_path(weights)
    from mrcnn.predictor import MrcnnPredictor

    return MrcnnPredictor.from_path(weights)


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m tools.predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("unet", "mrcnn"), default="unet")
    parser.add_argument("--weights", help="weights file (its config JSON beside it); default: weights/<model>")
    parser.add_argument("--images", required=True, help="folder in Kaggle's layout or a flat folder of images")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--no-overlays", action="store_true", help="do not write overlay PNGs")
    parser.add_argument("--no-labels", action="store_true", help="do not write label PNGs")
    tta = parser.add_argument_group("test time")
    tta.add_argument("--tta", type=int, default=None, metavar="N",
                     help="test-time transforms, 1..15 (1 = single pass; 15 = all of tools/tta.py)")
    tta.add_argument("--ensemble", action="store_true",
                     help="combine the U-Net and Mask R-CNN (Mask R-CNN instances refined and completed by "
                          "the U-Net's maps); weights from --unet-weights / --mrcnn-weights or weights/")
    tta.add_argument("--unet-weights", help="U-Net weights for --ensemble (default: --weights if --model unet)")
    tta.add_argument("--mrcnn-weights", help="Mask R-CNN weights for --ensemble (default: --weights if --model mrcnn)")
    tta.add_argument("--params", help="JSON written by python -m tools.tune (post-processing, thresholds); "
                                      "default: X.params.json beside the weights X.weights.h5, when present")
    tta.add_argument("--no-params", action="store_true", help="ignore tuned parameters shipped beside the weights")
    post = parser.add_argument_group("post-processing (each off unless given)")
    post.add_argument("--dilate", type=int, default=None, metavar="PIXELS",
                      help="grow each nucleus by this many pixels, never into a neighbour")
    post.add_argument("--fill-holes", action="store_true", default=None, help="fill holes inside each nucleus")
    post.add_argument("--closing", type=int, default=None, metavar="RADIUS", help="closing of each nucleus")
    post.add_argument("--min-size", type=int, default=None, metavar="PIXELS", help="drop smaller nuclei")
    post.add_argument("--max-count", type=int, default=None, metavar="N", help="keep the N best-scoring nuclei")
    post.add_argument("--min-score", type=float, default=None, metavar="S",
                      help="drop nuclei scoring below S (detection confidence; U-Net: mean foreground)")
    parser.add_argument("--labels", metavar="DIR",
                        help="true masks for these images (Kaggle layout): print the DSB score and write a "
                             "contact sheet of true positives, false positives and misses")
    parser.add_argument("--sheet-images", type=int, default=24, metavar="N",
                        help="images on the contact sheet, worst first (default 24)")
    return parser


POSTPROCESS_FLAGS = ("dilate", "fill_holes", "closing", "min_size", "max_count", "min_score")


def read_params(path):
    """The JSON of python -m tools.tune: {postprocess: {...}, thresholds: {...}, ensemble: {...}, tta: N}."""
    import json

    try:
        params = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise NucleiError(f"cannot read parameters: {error}", path) from None
    if not isinstance(params, dict):
        raise NucleiError("parameters must be a JSON object", path)
    return params


def default_params_path(args):
    """Tuned parameters shipped beside the weights: X.params.json for X.weights.h5 (None if absent).

    In ensemble mode the file is looked for beside the U-Net weights as X.ensemble.params.json.
    """
    model = "unet" if args.ensemble else args.model
    weights = Path(args.unet_weights or args.weights or DEFAULT_WEIGHTS[model]) if model == "unet" else Path(
        args.mrcnn_weights or args.weights or DEFAULT_WEIGHTS[model])
    stem = weights.name[: -len(".weights.h5")] if weights.name.endswith(".weights.h5") else weights.stem
    path = weights.with_name(stem + (".ensemble" if args.ensemble else "") + ".params.json")
    return path if path.is_file() else None


def build_pipeline(args):
    """The InferencePipeline the command line asks for."""
    from tools.inference.ensemble import EnsembleConfig
    from tools.inference.pipeline import DenseModel, InferencePipeline, InstanceModel
    from tools.inference.postprocess import PostprocessConfig

    params_path = args.params or (None if args.no_params else default_params_path(args))
    params = read_params(params_path) if params_path else {}
    if params_path:
        print(f"parameters: {params_path}")
    post = dict(params.get("postprocess", {}))
    for name in POSTPROCESS_FLAGS:
        value = getattr(args, name)
        if value is not None:
            post[name] = value
    tta = args.tta if args.tta is not None else int(params.get("tta", 1))
    from tools.inference.tta import select_transforms

    select_transforms(tta)  # a bad --tta fails before any model loads
    post_config = PostprocessConfig.from_dict(post)
    use_unet = args.model == "unet" or args.ensemble
    use_mrcnn = args.model == "mrcnn" or args.ensemble
    dense = instance = None
    if use_unet:
        weights = args.unet_weights or (args.weights if args.model == "unet" else None)
        thresholds = params.get("thresholds") or None
        dense = DenseModel(load_predictor("unet", weights), thresholds)
    if use_mrcnn:
        weights = args.mrcnn_weights or (args.weights if args.model == "mrcnn" else None)
        instance = InstanceModel(load_predictor("mrcnn", weights))
    return InferencePipeline(dense, instance, tta=tta, postprocess_config=post_config,
                             ensemble_config=EnsembleConfig.from_dict(params.get("ensemble", {})))


def predict_folder(predictor, images_dir, out_dir, overlays=True, label_images=True, progress=True,
                   keep_labels=None):
    """Predict every image under ``images_dir``; write outputs; return {id: nucleus count}.

    ``predictor`` is anything with ``predict(image) -> (labels, scores)`` (a model's
    predictor or a tools.inference.pipeline.InferencePipeline). ``keep_labels``: optional dict
    filled with {id: labels} for the ids it already holds as keys (for scoring).
    """
    from preprocessing.dataset import iter_images, read_image, write_png
    from tools.inference.overlay import draw_outlines
    from tools.kaggle.submission import write_submission

    out_dir = Path(out_dir)
    items = list(iter_images(images_dir))
    if not items:
        raise NucleiError("no images found", images_dir)
    for sub, wanted in (("labels", label_images), ("overlays", overlays)):
        if wanted:
            (out_dir / sub).mkdir(parents=True, exist_ok=True)
    counts = {}
    iterator = items
    if progress:
        from tqdm import tqdm

        iterator = tqdm(items, desc="predicting", unit="img", disable=None)

    def predictions():
        for image_id, path in iterator:
            image = read_image(path)
            labels, _ = predictor.predict(image)
            counts[image_id] = int(labels.max())
            if keep_labels is not None and image_id in keep_labels:
                keep_labels[image_id] = labels
            if label_images:
                write_png(out_dir / "labels" / f"{image_id}.png", labels.astype(np.uint16))
            if overlays:
                write_png(out_dir / "overlays" / f"{image_id}.png", draw_outlines(image, labels))
            yield image_id, labels

    write_submission(out_dir / "submission.csv", predictions())
    return counts


def report_against_truth(truth, predicted, out_dir, sheet_images):
    """Score the predicted images that have true masks; write score.json and the contact sheet."""
    from tools.inference.contact_sheet import write_contact_sheet
    from tools.evaluate import evaluate_labels
    from preprocessing.files import save_json_atomic

    scored = {image_id: labels for image_id, labels in predicted.items() if labels is not None}
    if not scored:
        raise NucleiError("none of the predicted images has true masks in --labels")
    true = {image_id: truth[image_id].labels for image_id in scored}
    result = evaluate_labels(scored, true, {image_id: truth[image_id].image_type for image_id in scored})
    save_json_atomic(out_dir / "score.json", {"score": result["score"], "per_type": result["per_type"],
                                              "per_image": result["per_image"]})
    samples = [truth[image_id] for image_id in scored]
    write_contact_sheet(out_dir, samples, scored, max_images=sheet_images)
    print(f"DSB score on {len(scored)} labelled images: {result['score']:.4f}")
    print(f"contact sheet: {out_dir / 'contact_sheet.html'}")


def main(argv=None):
    warnings.filterwarnings("ignore", category=FutureWarning)
    args = build_parser().parse_args(argv)
    try:
        predictor = build_pipeline(args)
        truth = None
        keep = None
        if args.labels:
            from preprocessing.dataset import load_dataset

            truth = {s.image_id: s for s in load_dataset(args.labels).samples if s.labels is not None}
            keep = dict.fromkeys(truth)
        started = time.time()
        counts = predict_folder(predictor, args.images, args.out, not args.no_overlays, not args.no_labels,
                                progress=True, keep_labels=keep)
        elapsed = time.time() - started
        if truth is not None:
            report_against_truth(truth, keep, Path(args.out), args.sheet_images)
    except NucleiError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out)
    print(f"{len(counts)} images, {sum(counts.values())} nuclei in {elapsed:.1f} s "
          f"({elapsed / len(counts):.2f} s/image)")
    print(f"submission: {out / 'submission.csv'}")
    if not args.no_overlays:
        print(f"overlays:   {out / 'overlays'}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
