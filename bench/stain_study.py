"""Stain normalisation of colour images before the network: does it help where the stain is new? (issue 9)

    python bench/stain_study.py --out bench/results/stain_study.json

Normalisation: Reinhard et al. 2001 ("Color transfer between images"): each L*a*b* channel's
mean and standard deviation matched to the reference's, the mean over the colour training
images of ``weights/split.json``'s training part of each image's own. (Rescaling concentrations
in scikit-image's fixed H&E basis instead was tried by eye on the test scans and dropped: their
stains are off that basis, and it left green and cyan clipping artefacts.) Scored with the shipped pipelines, as they are and with
every colour image normalised first, on:

* ``val``: the colour validation images (the training stain; normalisation should cost nothing);
* ``shifted``: the same images as bench/protocols.py shifts them (pink H&E re-stain in HED space,
  magnified 2x), a change normalisation cannot undo exactly;
* ``test-colours``: each validation image re-coloured, in L*a*b*, to the colour statistics of
  one of the 12 colour stage-1 test scans (cycled; colours only, no labels of the test used);
* ``sample``: the bundled sample's colour images.

Also prints how far the 12 colour test scans lie from the training domains before and after
normalisation (preprocessing.domains.reference_distance, standard deviations).
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from preprocessing.files import save_json_atomic  # noqa: E402

MIN_LAB_STD = 1.0  # a flat channel is not blown up into noise


def lab_statistics(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (mean [3], std [3]) of uint8 [H, W, 3] in CIE L*a*b* (OpenCV float ranges)."""
    import cv2

    lab = cv2.cvtColor(image.astype(np.float32) / 255, cv2.COLOR_RGB2LAB).reshape(-1, 3)
    return lab.mean(axis=0), np.maximum(lab.std(axis=0), MIN_LAB_STD)


def reference_statistics(images) -> dict:
    """{'mean': [3], 'std': [3]}: each image's own L*a*b* statistics, averaged over ``images``."""
    stats = [lab_statistics(image) for image in images]
    return {"mean": np.mean([m for m, _ in stats], axis=0).tolist(), "std": np.mean([s for _, s in stats], axis=0).tolist()}


def normalize_stain(image: np.ndarray, reference: dict) -> np.ndarray:
    """uint8 [H, W, 3] re-coloured to the L*a*b* statistics of ``reference`` (Reinhard's transfer)."""
    import cv2

    mean, std = lab_statistics(image)
    lab = cv2.cvtColor(image.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)
    lab = (lab - mean) * (np.asarray(reference["std"]) / std) + np.asarray(reference["mean"])
    rgb = cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_LAB2RGB)
    return np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "dsb2018" / "stage1_train"))
    parser.add_argument("--test", default=str(ROOT.parent / "shared" / "dsb2018" / "stage1_test"))
    parser.add_argument("--sample", default=str(ROOT / "data" / "sample" / "stage1_train"))
    parser.add_argument("--domains", default=str(ROOT / "bench" / "results" / "domains.json"))
    parser.add_argument("--models", default="mrcnn,unet,ensemble")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "stain_study.json"))
    args = parser.parse_args()

    from preprocessing.dataset import load_training_samples
    from preprocessing.domains import image_features, load_reference, reference_distance
    from preprocessing.dataset import read_image
    from preprocessing.image_types import classify_image
    from preprocessing.split import read_split
    from protocols import shift_sample
    from tools.inference.models import build_pipeline
    from tools.inference.tuning import validation_set
    from tools.kaggle.metric import image_score

    everything = load_training_samples([args.data], (args.sample,), progress=False)
    train_ids = set(read_split(ROOT / "weights" / "split.json")[0])
    reference_images = [s.image for s in everything if s.image_id in train_ids and classify_image(s.image) == "histology"]
    reference = reference_statistics(reference_images)
    val, domains = validation_set([args.data], exclude_roots=(args.sample,), run_dir=ROOT / "weights",
                                  domains=args.domains)
    rng = np.random.default_rng(0)  # the same shifts as bench/protocols.py, drawn over every val image
    shifted = {s.image_id: shift_sample(s, rng) for s in val}
    colour_val = [s for s in val if classify_image(s.image) == "histology"]
    test_images = [read_image(p) for p in sorted(Path(args.test).glob("*/images/*.png"))]
    test_colour = [im for im in test_images if classify_image(im) == "histology"]
    test_styles = [reference_statistics([im]) for im in test_colour]
    sample = [s for s in load_training_samples([args.sample], progress=False) if classify_image(s.image) == "histology"]
    sets = {
        "val": [(s.image_id, s.image, s.labels) for s in colour_val],
        "shifted": [(s.image_id, *shifted[s.image_id]) for s in colour_val],
        "test-colours": [(s.image_id, normalize_stain(s.image, test_styles[k % len(test_styles)]), s.labels)
                         for k, s in enumerate(colour_val)],
        "sample": [(s.image_id, s.image, s.labels) for s in sample],
    }
    training_reference = load_reference(ROOT / "weights" / "training_domains.json")
    distances = [[reference_distance(image_features(im), training_reference)[1] for im in (raw, normalize_stain(raw, reference))]
                 for raw in test_colour]
    limit = reference_distance(image_features(test_colour[0]), training_reference)[2]
    print(f"stain reference from {len(reference_images)} training images: {reference}")
    print(f"colour test scans, SD from the nearest training domain (training images reach {limit:.1f}): "
          + ", ".join(f"{a:.1f}->{b:.1f}" for a, b in distances))
    results = {"command": "python bench/stain_study.py " + " ".join(sys.argv[1:]), "reference": reference,
               "test_distances": distances, "limit": limit, "images": {k: len(v) for k, v in sets.items()}}
    for model in args.models.split(","):
        pipeline = build_pipeline(model)
        started = time.time()
        rows = {}
        for part, items in sets.items():
            for normalise in (False, True):
                scores = {image_id: float(image_score(true, pipeline.predict(
                    normalize_stain(image, reference) if normalise else image)[0])["score"])
                          for image_id, image, true in items}
                rows[f"{part}{' normalised' if normalise else ''}"] = scores
        results[model] = rows
        print(f"{model:9s} " + "  ".join(f"{part} {np.mean(list(rows[part].values())):.4f}->"
                                          f"{np.mean(list(rows[part + ' normalised'].values())):.4f}"
                                          for part in sets) + f"  ({time.time() - started:.0f} s)", flush=True)
        save_json_atomic(args.out, results)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
