"""Time the pure-numpy core on the bundled sample: RLE encode/decode and the DSB metric.

Usage::

    python bench/bench_core.py [--data data/sample/stage1_train] [--repeats 5]
                               [--json bench/results/core.json]

Each figure is the best of ``--repeats`` passes over every image of the sample
(best, not mean: the machine is shared and the best pass is the least disturbed).
Prints the figures, writes them as JSON, and prints one markdown table row for
bench/RESULTS.md.
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from preprocessing.dataset import load_dataset  # noqa: E402
from tools.kaggle.metric import dataset_score, image_score  # noqa: E402
from tools.kaggle.rle import decode, encode, labels_to_rles  # noqa: E402
from preprocessing.files import write_text_atomically  # noqa: E402
from tools.kaggle.submission import rles_to_labels  # noqa: E402


def best_seconds(function, repeats):
    """Fastest wall time of ``repeats`` calls of function()."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def shifted_prediction(labels):
    """A stand-in prediction: labels moved one pixel right and down (IoUs below 1)."""
    return np.roll(labels, (1, 1), axis=(0, 1))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "sample" / "stage1_train")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "core.json")
    args = parser.parse_args(argv)

    samples = [s for s in load_dataset(args.data).samples if s.labels is not None]
    labels = [s.labels for s in samples]
    shapes = [l.shape for l in labels]
    rles = [labels_to_rles(l) for l in labels]
    preds = [shifted_prediction(l) for l in labels]
    n_nuclei = sum(len(r) for r in rles)
    n_pixels = sum(l.size for l in labels)

    timings = {
        # One call per image: every nucleus' RLE in one pass.
        "labels_to_rles": best_seconds(lambda: [labels_to_rles(l) for l in labels], args.repeats),
        # One call per nucleus on its own mask (the slow way other code might use).
        "encode_per_mask": best_seconds(
            lambda: [encode(l == i) for l in labels for i in range(1, int(l.max()) + 1)], args.repeats),
        "decode_per_rle": best_seconds(
            lambda: [decode(r, shape) for rs, shape in zip(rles, shapes) for r in rs], args.repeats),
        # What the evaluator does: all RLEs of an image into one label image.
        "rles_to_labels": best_seconds(
            lambda: [rles_to_labels(rs, shape) for rs, shape in zip(rles, shapes)], args.repeats),
        "image_score": best_seconds(lambda: [image_score(t, p) for t, p in zip(labels, preds)], args.repeats),
        "dataset_score": best_seconds(
            lambda: dataset_score((s.image_id, s.labels, p) for s, p in zip(samples, preds)), args.repeats),
    }
    score = dataset_score((s.image_id, s.labels, p) for s, p in zip(samples, preds))["score"]

    document = {
        "data": str(args.data),
        "images": len(samples),
        "nuclei": n_nuclei,
        "megapixels": round(n_pixels / 1e6, 3),
        "repeats": args.repeats,
        "seconds_per_pass": {name: round(seconds, 6) for name, seconds in timings.items()},
        "shifted_prediction_score": round(score, 6),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}, "
                   f"numpy {np.__version__}",
    }
    print(f"{len(samples)} images, {n_nuclei} nuclei, {n_pixels / 1e6:.2f} Mpx; best of {args.repeats}:")
    for name, seconds in timings.items():
        print(f"  {name:16s} {seconds * 1e3:8.1f} ms per pass  ({n_nuclei / seconds:,.0f} nuclei/s)")
    print(f"  (metric check: one-pixel-shifted labels score {score:.4f})")

    args.json.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(args.json, json.dumps(document, indent=2) + "\n")
    print(f"wrote {args.json}")
    ms = {name: f"{seconds * 1e3:.1f}" for name, seconds in timings.items()}
    print("\nmarkdown row for bench/RESULTS.md:")
    print(f"| core: RLE + metric, {len(samples)} sample images, {n_nuclei} nuclei | "
          f"labels_to_rles {ms['labels_to_rles']} ms, rles_to_labels {ms['rles_to_labels']} ms, "
          f"decode per RLE {ms['decode_per_rle']} ms, image_score {ms['image_score']} ms per pass | "
          f"{document['machine']} | `python bench/bench_core.py` |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
