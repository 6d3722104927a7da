"""How the Mask R-CNN's masks become outlines, per IoU threshold (issue 14).

    python bench/mask_paste.py --out bench/results/mask_paste.json

The shipped Mask R-CNN's detections (single pass) on the validation images of
``weights/split.json`` and on the bundled sample are computed once; each (MASK_PASTE,
MASK_THRESHOLD) pair then pastes them (mrcnn.paste.detections_to_labels) and the shipped
post-processing (weights/mrcnn.params.json) runs. Prints, per pair, the DSB score, the
domain-balanced score, the sample score and the precision at IoU 0.5, 0.75, 0.9 and 0.95.
A setting is worth adopting only if it wins on validation *and* on the sample.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from preprocessing.files import save_json_atomic  # noqa: E402

SHOWN_IOUS = (0.5, 0.75, 0.9, 0.95)
SETTINGS = (("soft", 0.5), ("binary", 0.5), ("soft", 0.4), ("soft", 0.6), ("soft", 0.7), ("soft", 0.8))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "dsb2018" / "stage1_train"))
    parser.add_argument("--sample", default=str(ROOT / "data" / "sample" / "stage1_train"))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "mask_paste.json"))
    args = parser.parse_args()

    from mrcnn.paste import detections_to_labels
    from preprocessing.dataset import load_training_samples
    from tools.inference.models import build_pipeline
    from tools.inference.postprocess import postprocess
    from tools.inference.tuning import objective, validation_set
    from tools.kaggle.metric import THRESHOLDS, dataset_score

    val, domains = validation_set([args.data], exclude_roots=(args.sample,), run_dir=ROOT / "weights")
    sample = load_training_samples([args.sample], progress=False)
    pipeline = build_pipeline("mrcnn")
    predictor = pipeline.instance.predictor
    detections = {s.image_id: predictor.detect(s.image) for s in val + sample}
    columns = [int(np.argmin(np.abs(np.asarray(THRESHOLDS) - t))) for t in SHOWN_IOUS]
    results = {}
    for mode, threshold in SETTINGS:
        def labels_of(s):
            d = detections[s.image_id]
            labels, scores, _ = detections_to_labels(d["boxes"], d["scores"], d["masks"], d["image_shape"],
                                                     threshold, mode=mode)
            return postprocess(labels, scores, pipeline.params.postprocess)[0]

        row = {}
        for name, items in (("val", val), ("sample", sample)):
            result = dataset_score([(s.image_id, s.labels, labels_of(s)) for s in items])
            row[name] = result["score"]
            row[f"{name}_per_iou"] = [float(v) for v in result["per_threshold"]]
            if name == "val":
                row["val_balanced"] = objective({r["id"]: r["score"] for r in result["per_image"]}, domains)
        results[f"{mode} {threshold}"] = row
    print(f"{len(val)} validation images ({len(set(domains.values()))} domains), {len(sample)} sample images; "
          "shipped Mask R-CNN and params")
    print(f"{'paste, threshold':18s} {'val':>7s} {'balanced':>8s} {'sample':>7s} "
          + " ".join(f"{'AP@' + str(t):>8s}" for t in SHOWN_IOUS) + "  (validation)")
    for setting, row in results.items():
        print(f"{setting:18s} {row['val']:7.4f} {row['val_balanced']:8.4f} {row['sample']:7.4f} "
              + " ".join(f"{row['val_per_iou'][k]:8.3f}" for k in columns))
    save_json_atomic(args.out, {"command": "python bench/mask_paste.py " + " ".join(sys.argv[1:]),
                                "thresholds": [float(t) for t in THRESHOLDS], "results": results})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
