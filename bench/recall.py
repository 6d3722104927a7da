"""Where do the missing nuclei go? Recall of the shipped pipelines, cause by cause, per domain.

    python bench/recall.py --data ../shared/dsb2018/stage1_train --exclude data/sample/stage1_train \
        --domains bench/results/domains.json --out bench/results/recall.json
    python bench/recall.py ... --mrcnn-nms 0.3,0.5,0.7     # Mask R-CNN detection NMS sweep too

Every true nucleus of the validation images (training's stratified split, never trained on)
that the final output does not match at IoU > 0.5 gets one cause, the first that applies:

* ``tiny``: the true nucleus has fewer than 32 pixels (what ``min_size 32`` removes);
* ``merged``: one predicted nucleus holds more than half of it and more than half of
  another true nucleus (touching nuclei predicted as one);
* ``post-processed away``: the output before post-processing (score cut, minimum size,
  closing) matched it;
* ``poor outline``: the best-overlapping prediction has IoU 0.1..0.5;
* ``not found``: nothing overlaps it with IoU above 0.1.

For the Mask R-CNN it also reports how often an image hits DETECTION_MAX_INSTANCES and, with
``--mrcnn-nms``, the DSB score and recall at each detection NMS threshold. Predicted vs true
counts per domain. Writes JSON.
"""

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from preprocessing.files import save_json_atomic  # noqa: E402

CAUSES = ("tiny", "merged", "post-processed away", "poor outline", "not found")
TINY = 32


def overlap_table(true_labels: np.ndarray, pred_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(intersection [T+1, P+1], true areas [T+1], pred areas [P+1]) of two label images."""
    t, p = int(true_labels.max()), int(pred_labels.max())
    table = np.bincount(true_labels.ravel().astype(np.int64) * (p + 1) + pred_labels.ravel(),
                        minlength=(t + 1) * (p + 1)).reshape(t + 1, p + 1)
    return table, table.sum(axis=1), table.sum(axis=0)


def matched_true(true_labels: np.ndarray, pred_labels: np.ndarray) -> np.ndarray:
    """bool [T]: true nucleus k+1 has a prediction with IoU > 0.5."""
    table, true_area, pred_area = overlap_table(true_labels, pred_labels)
    inter = table[1:, 1:]
    union = true_area[1:, None] + pred_area[None, 1:] - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    return (iou > 0.5).any(axis=1) if iou.shape[1] else np.zeros(iou.shape[0], bool)


def miss_causes(true_labels: np.ndarray, final: np.ndarray, raw: np.ndarray) -> Counter:
    """Counter of cause -> missed true nuclei (see the module doc), plus 'found' and 'true'."""
    table, true_area, pred_area = overlap_table(true_labels, final)
    inter = table[1:, 1:]
    union = true_area[1:, None] + pred_area[None, 1:] - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0) if inter.size else np.zeros((len(true_area) - 1, 0))
    found = (iou > 0.5).any(axis=1) if iou.shape[1] else np.zeros(iou.shape[0], bool)
    raw_found = matched_true(true_labels, raw)
    # a prediction holding > half of two or more true nuclei
    holds = inter > 0.5 * true_area[1:, None]
    merging = holds.sum(axis=0) >= 2 if holds.size else np.zeros(0, bool)
    counts = Counter(true=len(found), found=int(found.sum()))
    for k in np.flatnonzero(~found):
        if true_area[k + 1] < TINY:
            counts["tiny"] += 1
        elif holds.size and (holds[k] & merging).any():
            counts["merged"] += 1
        elif raw_found[k]:
            counts["post-processed away"] += 1
        elif iou.shape[1] and iou[k].max() > 0.1:
            counts["poor outline"] += 1
        else:
            counts["not found"] += 1
    return counts


def analyse(pipeline, samples, domains) -> dict:
    """Causes and counts per domain for one pipeline (raw = before post-processing)."""
    from preprocessing.labels import relabel_consecutive
    from tools.inference.postprocess import postprocess
    from tools.kaggle.metric import image_score

    per_domain: dict[str, Counter] = {}
    scores = {}
    for sample in samples:
        raw, raw_scores = pipeline.raw(sample.image)
        final, _ = postprocess(raw, raw_scores, pipeline.params.postprocess, sample.image)
        true = relabel_consecutive(sample.labels)
        counts = miss_causes(true, final, relabel_consecutive(raw))
        counts["predicted"] += int(final.max())
        counts["images"] += 1
        per_domain.setdefault(domains[sample.image_id], Counter()).update(counts)
        scores[sample.image_id] = float(image_score(sample.labels, final)["score"])
    total = sum(per_domain.values(), Counter())
    return {"total": dict(total), "per_domain": {k: dict(v) for k, v in sorted(per_domain.items())},
            "score": float(np.mean(list(scores.values()))), "per_image": scores}


def print_causes(name: str, result: dict) -> None:
    total = result["total"]
    missed = total["true"] - total["found"]
    print(f"\n{name}: DSB {result['score']:.4f}; true {total['true']}, predicted {total['predicted']}, "
          f"found at IoU 0.5: {total['found']} ({total['found'] / total['true']:.1%}); missed {missed}:")
    for cause in CAUSES:
        print(f"  {cause:20s} {total.get(cause, 0):6d}  ({total.get(cause, 0) / max(missed, 1):.0%})")
    print(f"  {'domain':24s} {'images':>6s} {'true':>6s} {'pred':>6s} {'found':>6s} " +
          " ".join(f"{c[:10]:>10s}" for c in CAUSES))
    for domain, row in result["per_domain"].items():
        print(f"  {domain:24s} {row['images']:6d} {row['true']:6d} {row['predicted']:6d} {row['found']:6d} " +
              " ".join(f"{row.get(c, 0):10d}" for c in CAUSES))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", action="append", required=True)
    parser.add_argument("--exclude", action="append", default=[])
    parser.add_argument("--domains", required=True, help="domain file from bench/domains.py")
    parser.add_argument("--max-images", type=int, default=None)
    parser.add_argument("--pipelines", default="unet,mrcnn")
    parser.add_argument("--mrcnn-nms", default="", help="comma-separated DETECTION_NMS_THRESHOLD values to sweep")
    parser.add_argument("--mrcnn-min-confidence", type=float, default=None,
                        help="DETECTION_MIN_CONFIDENCE for the sweep (default: the config's)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "recall.json"))
    args = parser.parse_args()

    from mrcnn.predictor import MrcnnPredictor
    from tools.inference.models import DEFAULT_WEIGHTS, build_pipeline
    from tools.inference.pipeline import InferencePipeline, InstanceModel
    from tools.inference.tuning import validation_set

    samples, domains = validation_set(args.data, 0.1, 0, args.max_images, args.exclude, domains=args.domains)
    results = {}
    for name in args.pipelines.split(","):
        started = time.time()
        pipeline = build_pipeline(name)
        results[name] = analyse(pipeline, samples, domains)
        results[name]["seconds"] = time.time() - started
        print_causes(name, results[name])
        if name == "mrcnn":
            cap = pipeline.instance.predictor.config.DETECTION_MAX_INSTANCES
            raw_counts = [int(pipeline.raw(s.image)[0].max()) for s in samples]
            results[name]["images_at_detection_cap"] = sum(c >= cap for c in raw_counts)
            print(f"  images at DETECTION_MAX_INSTANCES ({cap}): {results[name]['images_at_detection_cap']}")
    sweep = {}
    for value in [float(v) for v in args.mrcnn_nms.split(",") if v]:
        overrides = {"DETECTION_NMS_THRESHOLD": value}
        if args.mrcnn_min_confidence is not None:
            overrides["DETECTION_MIN_CONFIDENCE"] = args.mrcnn_min_confidence
        shipped = build_pipeline("mrcnn")
        predictor = MrcnnPredictor.from_path(DEFAULT_WEIGHTS["mrcnn"], **overrides)
        pipeline = InferencePipeline(None, InstanceModel(predictor), shipped.params)
        result = analyse(pipeline, samples, domains)
        sweep[str(value)] = result
        print_causes(f"mrcnn DETECTION_NMS_THRESHOLD {value}", result)
    save_json_atomic(args.out, {"command": "python bench/recall.py " + " ".join(sys.argv[1:]),
                                "images": len(samples), "results": results, "mrcnn_nms_sweep": sweep})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
