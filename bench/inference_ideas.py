"""Three inference-time changes to the shipped Mask R-CNN that need no training (issues 14 and 9).

1. **Outlines snapped to the image** (issue 14: Otsu + watershed beats both models at IoU 0.95
   because its outlines follow the image). Each nucleus's border band (its mask dilated and
   eroded by ``band`` x its equivalent radius) is re-decided by a threshold between the median
   intensity of its core and of a ring of free pixels outside it (``level`` 0 = the ring, 1 =
   the core), in LAB lightness signed by kind of image (fluorescence: nuclei bright). The same
   snapping applied to the *true* masks shows how well the annotators' outlines follow any such
   level at all.
2. **The two shipped networks merged** (weights/mrcnn.weights.h5 and mrcnn.stain.weights.h5, both
   on every image) by tools.inference.merge, as 8-way TTA merges its passes, then the shipped
   post-processing at several score cuts.
3. **Fluorescence stretched**: the image's percentiles (lo, hi) mapped to 0..255 before the
   network (StarDist's input normalisation), fluorescence images only.

Each is scored on the validation split of weights/split.json (domain-balanced), its shifted
copies (bench/protocols.py: unseen stain and scale) and the bundled sample, with the shipped
params. Shifted images are not routed to the stain model here except where said.

Usage: python bench/inference_ideas.py --data ../shared/dsb2018/stage1_train \
           --exclude data/sample/stage1_train --domains bench/results/domains.json \
           --out bench/results/inference_ideas.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def _disk(radius: int) -> np.ndarray:
    import cv2

    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def snap_outlines(labels: np.ndarray, image: np.ndarray, level: float = 0.5, band: float = 0.3) -> np.ndarray:
    """labels int [H, W] (ids 1..N) with each border band re-thresholded on image uint8 [H, W, 3]."""
    import cv2
    from scipy import ndimage

    from preprocessing.image_types import classify_image
    from preprocessing.normalize import lightness

    count = int(labels.max()) if labels.size else 0
    if count == 0:
        return labels
    sign = 1.0 if classify_image(image) == "fluorescence" else -1.0
    signal = sign * cv2.GaussianBlur(lightness(image), (0, 0), 1.0)
    out = labels.copy()
    occupied = labels > 0
    areas = np.bincount(labels.ravel(), minlength=count + 1)
    height, width = labels.shape
    for index, window in enumerate(ndimage.find_objects(labels), start=1):
        if window is None:
            continue
        radius = max(1, int(round(band * np.sqrt(areas[index] / np.pi))))
        margin = 2 * radius + 1
        y0, y1 = max(window[0].start - margin, 0), min(window[0].stop + margin, height)
        x0, x1 = max(window[1].start - margin, 0), min(window[1].stop + margin, width)
        current = out[y0:y1, x0:x1]  # a view: edits land in out
        inside = current == index
        if not inside.any():
            continue
        others = (current > 0) & ~inside
        mask = inside.astype(np.uint8)
        grown = cv2.dilate(mask, _disk(radius)).astype(bool)
        core = cv2.erode(mask, _disk(radius)).astype(bool)
        ring = cv2.dilate(mask, _disk(2 * radius)).astype(bool) & ~grown & ~occupied[y0:y1, x0:x1]
        if ring.sum() < 3:
            continue
        patch = signal[y0:y1, x0:x1]
        inner = float(np.median(patch[core] if core.any() else patch[inside]))
        outer = float(np.median(patch[ring]))
        if inner <= outer:
            continue
        new = core | (grown & ~others & (patch >= outer + level * (inner - outer)))
        count_parts, parts = cv2.connectedComponents(new.astype(np.uint8), connectivity=4)
        if count_parts > 2:  # keep the part that holds most of the old mask
            overlap = np.bincount(parts[inside], minlength=count_parts)
            overlap[0] = 0
            new = parts == int(overlap.argmax())
        new = ndimage.binary_fill_holes(new) & ~others
        if not inside.sum() / 2 <= new.sum() <= 2 * inside.sum():
            continue
        current[inside & ~new] = 0
        current[new] = index
    return out


def stretch(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """uint8 [H, W, 3] with its (low, high) percentiles mapped to 0..255 (fluorescence only)."""
    from preprocessing.image_types import classify_image

    if classify_image(image) != "fluorescence":
        return image
    a, b = np.percentile(image, [low, high])
    if b - a < 1:
        return image
    return np.clip((image.astype(np.float32) - a) * (255.0 / (b - a)), 0, 255).round().astype(np.uint8)


def summarise(rows, domains):
    """rows: [(image_id, true labels, predicted labels)] -> score, AP at 0.5/0.75/0.9/0.95, found."""
    from preprocessing.labels import relabel_consecutive
    from tools.inference.tuning import objective
    from tools.kaggle.metric import image_score

    scores, per_threshold, found = {}, [], 0
    for image_id, true, predicted in rows:
        result = image_score(true, relabel_consecutive(predicted))
        scores[image_id] = result["score"]
        per_threshold.append(result["per_threshold"])
        found += result["n_pred"]
    ap = np.mean(per_threshold, axis=0)
    return {"score": objective(scores, domains), "ap50": float(ap[0]), "ap75": float(ap[5]),
            "ap90": float(ap[8]), "ap95": float(ap[9]), "found": found}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", action="append", required=True)
    parser.add_argument("--exclude", action="append", default=[])
    parser.add_argument("--domains", required=True)
    parser.add_argument("--sample", default=str(ROOT / "data" / "sample" / "stage1_train"))
    parser.add_argument("--levels", default="0.3,0.5")
    parser.add_argument("--cuts", default="0.6,0.8,0.9")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "inference_ideas.json"))
    args = parser.parse_args()

    from preprocessing.dataset import load_training_samples
    from protocols import shift_sample
    from tools.inference.merge import merge_instances
    from tools.inference.models import build_pipeline
    from tools.inference.postprocess import postprocess
    from tools.inference.tuning import validation_set

    samples, domains = validation_set(args.data, 0.1, 0, None, args.exclude, domains=args.domains)
    rng = np.random.default_rng(0)  # the shifted set of bench/protocols.py
    sets = {"validation": ([(s.image_id, s.image, s.labels) for s in samples], domains),
            "shifted": ([(s.image_id, *shift_sample(s, rng)) for s in samples], domains),
            "sample": ([(s.image_id, s.image, s.labels) for s in load_training_samples([args.sample], progress=False)],
                       None)}
    default = build_pipeline(model="mrcnn", stain_models=False)
    stain = build_pipeline(model="mrcnn", weights=ROOT / "weights" / "mrcnn.stain.weights.h5",
                           params=ROOT / "weights" / "mrcnn.params.json", stain_models=False)
    routed = build_pipeline(model="mrcnn")
    post = default.params.postprocess
    results: dict[str, dict] = {}

    def record(arm: str, name: str, rows) -> None:
        results.setdefault(arm, {})[name] = summary = summarise(rows, sets[name][1])
        print(f"{arm:28s} {name:10s} {summary['score']:.4f}  AP {summary['ap50']:.3f} {summary['ap75']:.3f} "
              f"{summary['ap90']:.3f} {summary['ap95']:.3f}  found {summary['found']}", flush=True)

    for name, (pairs, _) in sets.items():
        started = time.time()
        raw = [(default.raw(image), stain.raw(image)) for _, image, _ in pairs]
        shipped = [postprocess(*first, post, image)[0] for (_, image, _), (first, _) in zip(pairs, raw)]
        record("shipped, unrouted", name, [(i, t, p) for (i, _, t), p in zip(pairs, shipped)])
        if name == "shifted":
            record("shipped, routed", name, [(i, t, routed.predict(image)[0]) for i, image, t in pairs])
        record("stain network alone", name,
               [(i, t, postprocess(*second, post, image)[0]) for (i, image, t), (_, second) in zip(pairs, raw)])
        for level in [float(x) for x in args.levels.split(",")]:
            record(f"snapped, level {level}", name,
                   [(i, t, snap_outlines(p, image, level)) for (i, image, t), p in zip(pairs, shipped)])
            record(f"true masks snapped, {level}", name, [(i, t, snap_outlines(t, image, level)) for i, image, t in pairs])
        merged = [merge_instances([first, second], cluster_iou=0.5, min_agreement=0.5, pixel_vote=0.5)
                  for first, second in raw]
        for cut in [float(x) for x in args.cuts.split(",")]:
            record(f"merged, min score {cut}", name,
                   [(i, t, postprocess(*m, post.replace(min_score=cut), image)[0])
                    for (i, image, t), m in zip(pairs, merged)])
        for low, high in ((0.2, 99.8), (0.1, 99.9)):
            record(f"stretched {low}-{high}", name,
                   [(i, t, postprocess(*default.raw(stretch(image, low, high)), post, image)[0]) for i, image, t in pairs])
        print(f"({name}: {time.time() - started:.0f} s)", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
