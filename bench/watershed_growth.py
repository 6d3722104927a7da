"""How the U-Net's seeds grow, per IoU threshold (issue 14): watershed surfaces on the same maps.

    python bench/watershed_growth.py --out bench/results/watershed_growth.json

The shipped U-Net's probability maps (single pass) of the validation images of
``weights/split.json`` and of the bundled sample are computed once; each growth surface of
``unet.config.WATERSHED_SURFACES`` then decodes them with the shipped parameters
(weights/unet.params.json: thresholds and post-processing). Prints, per surface, the DSB
score, the domain-balanced score (domains grouped as tools.tune does), the sample score and the
mean precision at IoU 0.5, 0.75, 0.9 and 0.95. A surface is worth adopting only if it wins on
validation *and* on the sample, which it was not chosen on.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from preprocessing.files import save_json_atomic  # noqa: E402

SHOWN_IOUS = (0.5, 0.75, 0.9, 0.95)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "dsb2018" / "stage1_train"))
    parser.add_argument("--sample", default=str(ROOT / "data" / "sample" / "stage1_train"))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "watershed_growth.json"))
    args = parser.parse_args()

    from preprocessing.dataset import load_training_samples
    from tools.inference.models import build_pipeline
    from tools.inference.postprocess import postprocess
    from tools.inference.tuning import objective, validation_set
    from tools.kaggle.metric import THRESHOLDS, dataset_score
    from unet.config import WATERSHED_SURFACES

    val, domains = validation_set([args.data], exclude_roots=(args.sample,), run_dir=ROOT / "weights")
    sample = load_training_samples([args.sample], progress=False)
    pipeline = build_pipeline("unet")
    maps = {s.image_id: pipeline.probabilities(s.image) for s in val + sample}
    columns = [int(np.argmin(np.abs(np.asarray(THRESHOLDS) - t))) for t in SHOWN_IOUS]
    results = {}
    for surface in WATERSHED_SURFACES:
        thresholds = {**pipeline.params.thresholds, "watershed_surface": surface}

        def decode(s):
            labels, scores = pipeline.dense.decode(maps[s.image_id], thresholds)
            return postprocess(labels, scores, pipeline.params.postprocess)[0]

        row = {}
        for name, items in (("val", val), ("sample", sample)):
            result = dataset_score([(s.image_id, s.labels, decode(s)) for s in items])
            row[name] = result["score"]
            row[f"{name}_per_iou"] = [float(v) for v in result["per_threshold"]]
            if name == "val":
                row["val_balanced"] = objective({r["id"]: r["score"] for r in result["per_image"]}, domains)
        results[surface] = row
    print(f"{len(val)} validation images ({len(set(domains.values()))} domains), {len(sample)} sample images; "
          "shipped U-Net and params")
    print(f"{'surface':18s} {'val':>7s} {'balanced':>8s} {'sample':>7s} "
          + " ".join(f"{'AP@' + str(t):>8s}" for t in SHOWN_IOUS) + "  (validation)")
    for surface, row in results.items():
        print(f"{surface:18s} {row['val']:7.4f} {row['val_balanced']:8.4f} {row['sample']:7.4f} "
              + " ".join(f"{row['val_per_iou'][k]:8.3f}" for k in columns))
    save_json_atomic(args.out, {"command": "python bench/watershed_growth.py " + " ".join(sys.argv[1:]),
                                "thresholds": [float(t) for t in THRESHOLDS], "results": results})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
