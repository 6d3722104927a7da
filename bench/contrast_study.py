"""Are the predicted nuclei that stand out the wrong way for their kind of image (lighter than
their surroundings in stained images, darker in fluorescence) mostly false positives? (issue 9:
the held-out H&E scans show pale goblet cells and vacuoles outlined as nuclei.)

For each predicted nucleus, tools.inference.postprocess.nucleus_contrast: how it stands out from a
ring around it, signed so that positive means "as a nucleus should" (darker in stained images,
brighter in fluorescence). Prints, per image set (validation, its shifted copies, the bundled
sample), how many nuclei have the wrong sign, how many of them are true positives (IoU > 0.5 with
a true nucleus), and the score with them removed (the ``drop_inverted`` post-processing step).

Usage: python bench/contrast_study.py --model mrcnn --data ../shared/dsb2018/stage1_train \
           --exclude data/sample/stage1_train --domains bench/results/domains.json [--params P] --out JSON
(the pipeline's own drop_inverted is switched off, so "before" is the pipeline without the step)
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


def matched(true_labels: np.ndarray, pred_labels: np.ndarray) -> np.ndarray:
    """bool [N_pred]: predicted nucleus i + 1 has IoU > 0.5 with a true nucleus."""
    from tools.kaggle.metric import iou_matrix

    iou = iou_matrix(true_labels, pred_labels)
    if iou.size == 0:
        return np.zeros(int(pred_labels.max()), bool)
    return iou.max(axis=0) > 0.5


def study(pipeline, pairs, domains=None):
    from preprocessing.labels import relabel_consecutive
    from tools.inference.postprocess import nucleus_contrast, remove_inverted
    from tools.inference.tuning import objective
    from tools.kaggle.metric import image_score

    found = wrong = wrong_true = 0
    before, after, per = {}, {}, []
    for image_id, image, labels in pairs:
        predicted = relabel_consecutive(pipeline.predict(image)[0])  # ids 1..N, as iou_matrix's columns
        contrast = nucleus_contrast(image, predicted)
        is_true = matched(labels, predicted)
        remove = contrast < 0
        found += len(contrast)
        wrong += int(remove.sum())
        wrong_true += int((remove & is_true).sum())
        before[image_id] = float(image_score(labels, predicted)["score"])
        after[image_id] = float(image_score(labels, remove_inverted(predicted, image)[0])["score"])
        per.append({"image": image_id, "found": len(contrast), "wrong_sign": int(remove.sum()),
                    "wrong_sign_true": int((remove & is_true).sum()),
                    "contrast_true": contrast[is_true].round(4).tolist(),
                    "contrast_false": contrast[~is_true].round(4).tolist(),
                    "before": before[image_id], "after": after[image_id]})
    summary = {"found": found, "wrong_sign": wrong, "wrong_sign_true": wrong_true,
               "mean_before": objective(before), "mean_after": objective(after)}
    if domains:
        summary["balanced_before"] = objective(before, domains)
        summary["balanced_after"] = objective(after, domains)
    return summary, per


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mrcnn", choices=["mrcnn", "unet", "ensemble"])
    parser.add_argument("--data", action="append", required=True)
    parser.add_argument("--exclude", action="append", default=[])
    parser.add_argument("--domains", required=True)
    parser.add_argument("--params", default=None, help="inference params file (default: the shipped one)")
    parser.add_argument("--sample", default=str(ROOT / "data" / "sample" / "stage1_train"))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "contrast_study.json"))
    args = parser.parse_args()

    from preprocessing.dataset import load_training_samples
    from protocols import shift_sample
    from tools.inference.models import build_pipeline
    from tools.inference.tuning import validation_set

    samples, domains = validation_set(args.data, 0.1, 0, None, args.exclude, domains=args.domains)
    rng = np.random.default_rng(0)
    sets = {"validation": ([(s.image_id, s.image, s.labels) for s in samples], domains),
            "shifted": ([(s.image_id, *shift_sample(s, rng)) for s in samples], domains),
            "sample": ([(s.image_id, s.image, s.labels) for s in load_training_samples([args.sample], progress=False)],
                       None)}
    pipeline = build_pipeline(model=args.model, params=args.params, postprocess={"drop_inverted": False})
    results = {}
    for name, (pairs, doms) in sets.items():
        started = time.time()
        summary, per = study(pipeline, pairs, doms)
        results[name] = {"summary": summary, "per_image": per}
        text = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items())
        print(f"{args.model} {name}: {text} ({time.time() - started:.0f} s)", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
