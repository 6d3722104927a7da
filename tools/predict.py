"""Predict nuclei: ``python -m tools.predict --model unet --weights FILE --images DIR --out OUTDIR``.

Writes:
    OUTDIR/submission.csv        Kaggle's ImageId,EncodedPixels (atomic, no overlapping nuclei)
    OUTDIR/labels/<id>.png       16-bit instance label image per input
    OUTDIR/overlays/<id>.png     nucleus outlines drawn on the image (unless --no-overlays)

``--images`` takes Kaggle's layout (<id>/images/<id>.png) or a flat folder of images.
Without ``--weights`` the shipped weights in weights/ are used.
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
    return parser


def predict_folder(predictor, images_dir, out_dir, overlays=True, label_images=True, progress=True):
    """Predict every image under ``images_dir``; write outputs; return {id: labels} summary counts."""
    from preprocessing.dataset import iter_images, read_image, write_png
    from tools.overlay import draw_outlines
    from tools.submission import write_submission

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
            if label_images:
                write_png(out_dir / "labels" / f"{image_id}.png", labels.astype(np.uint16))
            if overlays:
                write_png(out_dir / "overlays" / f"{image_id}.png", draw_outlines(image, labels))
            yield image_id, labels

    write_submission(out_dir / "submission.csv", predictions())
    return counts


def main(argv=None):
    warnings.filterwarnings("ignore", category=FutureWarning)
    args = build_parser().parse_args(argv)
    try:
        predictor = load_predictor(args.model, args.weights)
        started = time.time()
        counts = predict_folder(predictor, args.images, args.out, not args.no_overlays, not args.no_labels,
                                progress=True)
    except NucleiError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    elapsed = time.time() - started
    out = Path(args.out)
    print(f"{len(counts)} images, {sum(counts.values())} nuclei in {elapsed:.1f} s "
          f"({elapsed / len(counts):.2f} s/image)")
    print(f"submission: {out / 'submission.csv'}")
    if not args.no_overlays:
        print(f"overlays:   {out / 'overlays'}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
