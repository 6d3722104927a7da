"""Does resizing an image before the network help, and can the first pass say by how much? (issue 9)

    python bench/scale_study.py --models unet,mrcnn --out bench/results/scale_study.json
    python bench/scale_study.py --analyse        # the tables again, from the JSON

Every validation image of ``weights/split.json``, its seeded "shifted" copy (bench/protocols.py:
re-stained, magnified 2x or shrunk to 0.6x) and every bundled sample image is predicted by the
shipped pipelines at each scale of ``--scales``: the image is resized by the factor, the network
and the decoding run there, the label image is brought back to the original size (nearest
neighbour) and the shipped post-processing runs at the original size. Per image it stores the
DSB score at every scale and the first pass's nucleus statistics (count, median area), so a rule
"resize so the median nucleus has area A" can be chosen and checked afterwards without rerunning
the networks (``--analyse``).
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

SCALES = (0.5, 0.71, 1.0, 1.41, 2.0)
# The rule checked by --analyse: resize to the scale nearest sqrt(A / first-pass median area),
# unless that is within a factor TOLERANCE of 1.
RULE_AREAS = (100, 150, 200, 300, 400, 600, 900)
RULE_TOLERANCES = (1.2, 1.4)


def balanced(per_image: dict[str, float], domains: dict[str, str]) -> float:
    """Domain-balanced mean of {'part/id': score} (the sample is one domain)."""
    groups: dict[str, list[float]] = {}
    for key, value in per_image.items():
        part, image_id = key.split("/", 1)
        groups.setdefault("sample" if part == "sample" else domains.get(image_id, "?"), []).append(value)
    return float(np.mean([np.mean(v) for v in groups.values()]))


def rule_scale(row: dict, scales: list[float], area: float, tolerance: float) -> float:
    """The scale the rule picks for one image's first-pass statistics."""
    if row["median_area"] <= 0:
        return 1.0
    wanted = np.sqrt(area / row["median_area"])
    if 1 / tolerance <= wanted <= tolerance:
        return 1.0
    return min(scales, key=lambda s: abs(np.log(s) - np.log(wanted)))


def analyse(results: dict) -> None:
    """Fixed scales, the per-image oracle, and the rule chosen on validation, per model."""
    scales, domains = results["scales"], results["domains"]
    for model in (m for m in ("unet", "mrcnn", "ensemble") if m in results):
        rows = results[model]
        parts = {part: {k: v for k, v in rows.items() if k.startswith(part + "/")} for part in ("val", "shifted", "sample")}
        for part, items in parts.items():
            print(f"{model:8s} {part:8s} " + "  ".join(
                f"x{s}: {np.mean([v['scores'][str(s)] for v in items.values()]):.4f}" for s in scales)
                  + f"  per-image best: {np.mean([max(v['scores'].values()) for v in items.values()]):.4f}")

        def rule_scores(part, area, tolerance):
            return {k: v["scores"][str(rule_scale(v, scales, area, tolerance))] for k, v in parts[part].items()}

        best = max(((a, t) for a in RULE_AREAS for t in RULE_TOLERANCES),
                   key=lambda at: balanced(rule_scores("val", *at), domains))
        base = {part: {k: v["scores"]["1.0"] for k, v in items.items()} for part, items in parts.items()}
        print(f"{model:8s} rule chosen on validation (area {best[0]}, tolerance {best[1]}), domain-balanced, "
              "as is -> rule: " + "  ".join(
                  f"{part} {balanced(base[part], domains):.4f} -> {balanced(rule_scores(part, *best), domains):.4f}"
                  for part in parts))


def resized(image: np.ndarray, factor: float) -> np.ndarray:
    import cv2

    height, width = image.shape[:2]
    size = (max(16, round(width * factor)), max(16, round(height * factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)


def labels_back(labels: np.ndarray, scores, shape):
    """Label image of a resized prediction brought to ``shape``; scores of ids that vanish dropped."""
    import cv2

    from preprocessing.labels import compact

    back = cv2.resize(labels.astype(np.int32), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST_EXACT)
    return compact(back, scores)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "dsb2018" / "stage1_train"))
    parser.add_argument("--sample", default=str(ROOT / "data" / "sample" / "stage1_train"))
    parser.add_argument("--domains", default=str(ROOT / "bench" / "results" / "domains.json"))
    parser.add_argument("--models", default="unet,mrcnn")
    parser.add_argument("--scales", default=",".join(str(s) for s in SCALES))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "scale_study.json"))
    parser.add_argument("--analyse", action="store_true", help="only print the analysis of --out")
    args = parser.parse_args()
    from preprocessing.settings import read_json

    if args.analyse:
        analyse(read_json(args.out))
        return 0

    from preprocessing.dataset import load_training_samples
    from protocols import shift_sample
    from tools.inference.models import build_pipeline
    from tools.inference.postprocess import postprocess
    from tools.inference.tuning import validation_set
    from tools.kaggle.metric import image_score

    val, domains = validation_set([args.data], exclude_roots=(args.sample,), run_dir=ROOT / "weights",
                                  domains=args.domains)
    sample = load_training_samples([args.sample], progress=False)
    rng = np.random.default_rng(0)  # the same shifts as bench/protocols.py
    sets = {"val": [(s.image_id, s.image, s.labels) for s in val],
            "shifted": [(s.image_id, *shift_sample(s, rng)) for s in val],
            "sample": [(s.image_id, s.image, s.labels) for s in sample]}
    scales = [float(s) for s in args.scales.split(",")]
    out = Path(args.out)
    results = read_json(out) if out.exists() else {}
    results.update({"command": "python bench/scale_study.py " + " ".join(sys.argv[1:]), "scales": scales,
                    "domains": domains})
    for model in args.models.split(","):
        pipeline = build_pipeline(model)
        started = time.time()
        rows = {}
        for part, items in sets.items():
            for image_id, image, true in items:
                row = {"shape": list(image.shape[:2]), "scores": {}}
                for factor in scales:
                    small = image if factor == 1 else resized(image, factor)
                    labels, scores = pipeline.raw(small)
                    if factor != 1:
                        labels, scores = labels_back(labels, scores, image.shape[:2])
                    labels, _ = postprocess(labels, scores, pipeline.params.postprocess, image)
                    row["scores"][str(factor)] = float(image_score(true, labels)["score"])
                    if factor == 1:
                        areas = np.bincount(labels.ravel())[1:]
                        row["count"] = int(areas.size)
                        row["median_area"] = float(np.median(areas)) if areas.size else 0.0
                        row["true_median_area"] = float(np.median(np.bincount(true.ravel())[1:]))
                rows[f"{part}/{image_id}"] = row
            print(f"{model} {part}: " + "  ".join(
                f"{f}: {np.mean([r['scores'][str(f)] for k, r in rows.items() if k.startswith(part + '/')]):.4f}"
                for f in scales) + f"  ({time.time() - started:.0f} s)", flush=True)
        results[model] = rows
        save_json_atomic(out, results)
    print(f"wrote {out}")
    analyse(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
