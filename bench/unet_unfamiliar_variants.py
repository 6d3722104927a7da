"""Which inference choices for the images ``tools.predict`` flags as unfamiliar, for the U-Net? (issue 9)

    python bench/unet_unfamiliar_variants.py --out bench/results/unfamiliar_variants_unet.json

The Mask R-CNN decodes flagged images with its params' ``unfamiliar`` set (bench/unfamiliar_tta.py).
This asks the same of the U-Net: on the flagged images of bench/unfamiliar_tta.py's labelled sets
(the bundled sample, the shifted validation, the shifted sample seeds 1-3), each candidate
``unfamiliar`` set against the shipped params (the single pass of ``weights/unet.params.json``):

* ``tta8 tuned``: ``weights/unet.tta8.params.json`` (8-way TTA, its tuned thresholds);
* ``tta8 defaults``: 8-way TTA, default thresholds (``+min32``: with minimum size 32);
* ``single defaults``: one pass, default thresholds.

Prints each set's mean over its flagged images and the mean over all of them; about 75 minutes
on the 2-core CPU (8-way TTA on large shifted images is slow).
"""

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from preprocessing.files import save_json_atomic  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "dsb2018" / "stage1_train"))
    parser.add_argument("--sample", default=str(ROOT / "data" / "sample" / "stage1_train"))
    parser.add_argument("--domains", default=str(ROOT / "bench" / "results" / "domains.json"))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "unfamiliar_variants_unet.json"))
    args = parser.parse_args()
    # bench/unfamiliar_tta.py's sets: shifted validation seed 0, shifted sample seeds 1-3
    args.val_seed, args.first_sample_seed, args.sample_seeds, args.vary_colour = 0, 1, 3, False

    from preprocessing.domains import load_reference
    from tools.inference.folder import unfamiliar_image
    from tools.inference.models import build_pipeline
    from tools.inference.params import InferenceParams, load_params
    from tools.kaggle.metric import image_score
    from unfamiliar_tta import labelled_sets

    sets, _ = labelled_sets(args)
    reference = load_reference(ROOT / "weights" / "training_domains.json")
    flagged = {part: [(image, labels) for _, image, labels in items if unfamiliar_image(image, reference) is not None]
               for part, items in sets.items()}
    flagged = {part: items for part, items in flagged.items() if items}
    shipped = load_params(ROOT / "weights" / "unet.params.json")
    candidates = {"shipped": None,
                  "tta8 tuned": load_params(ROOT / "weights" / "unet.tta8.params.json"),
                  "tta8 defaults": InferenceParams(tta=8),
                  "single defaults": InferenceParams(),
                  "tta8 defaults+min32": InferenceParams(tta=8, postprocess={"min_size": 32})}
    results: dict[str, dict[str, list[float]]] = {}
    for name, unfamiliar in candidates.items():
        params = shipped if unfamiliar is None else shipped.replace(unfamiliar=unfamiliar.replace(unfamiliar=None))
        pipeline = build_pipeline("unet", params=params)
        results[name] = {part: [float(image_score(labels, pipeline.predict(image)[0])["score"])
                                for image, labels in items]
                         for part, items in flagged.items()}
        every = [score for scores in results[name].values() for score in scores]
        print(f"{name:20s} " + "  ".join(f"{part} {np.mean(scores):.4f}" for part, scores in results[name].items())
              + f"  all {np.mean(every):.4f} (n={len(every)})", flush=True)
        save_json_atomic(args.out, results)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
