"""Time each augmentation preset (and optionally each block) per image + labels.

    python bench/bench_augment.py                 # presets at 256x256 and 512x512
    python bench/bench_augment.py --blocks        # also every building block alone

Inputs are real bundled-sample images (data/sample/stage1_train) cut or mirror-padded
to the size with preprocessing.augment.random_crop, so label density is realistic.
Prints a table and markdown rows (for bench/RESULTS.md, which the lead edits) and
writes JSON to bench/results/augment.json. Times are per call of Augmenter
(image uint8 [S, S, 3] + labels int32 [S, S]), single-threaded, wall clock.
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
sys.path.insert(0, str(ROOT))

from preprocessing.augment import (GEOMETRIC_BLOCKS, PHOTOMETRIC_BLOCKS, PRESETS, Augmenter,  # noqa: E402
                                   Pipeline, block, random_crop)
from preprocessing.dataset import load_dataset  # noqa: E402

SAMPLE = ROOT / "data" / "sample" / "stage1_train"


def make_inputs(samples, size, count, seed):
    """`count` (image, labels) pairs of [size, size], cycling over the samples."""
    rng = np.random.default_rng(seed)
    return [random_crop(s.image, s.labels, size, rng) for s in (samples[k % len(samples)] for k in range(count))]


def time_augmenter(augmenter, inputs, repeats):
    """Per-call milliseconds (mean, median, p90) over repeats x inputs, after one warm-up call."""
    augmenter(*inputs[0])
    times = []
    for _ in range(repeats):
        for image, labels in inputs:
            start = time.perf_counter()
            augmenter(image, labels)
            times.append((time.perf_counter() - start) * 1000)
    times = np.array(times)
    return {"mean_ms": float(times.mean()), "median_ms": float(np.median(times)),
            "p90_ms": float(np.percentile(times, 90)), "calls": int(times.size)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--images", type=int, default=12, help="distinct inputs per size")
    parser.add_argument("--repeats", type=int, default=4, help="passes over the inputs per preset")
    parser.add_argument("--blocks", action="store_true", help="also time each building block alone")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "augment.json")
    args = parser.parse_args(argv)

    samples = load_dataset(SAMPLE).samples
    subjects = [(preset, lambda p=preset: Augmenter(p, seed=args.seed)) for preset in PRESETS]
    if args.blocks:
        for name in GEOMETRIC_BLOCKS:
            subjects.append((f"block:{name}", lambda n=name: Augmenter(Pipeline(geometric=[block(n)]), args.seed)))
        for name in PHOTOMETRIC_BLOCKS:
            subjects.append((f"block:{name}", lambda n=name: Augmenter(Pipeline(photometric=[block(n)]), args.seed)))

    results = []
    print(f"{'subject':26s} {'size':>5s} {'mean ms':>9s} {'median':>8s} {'p90':>8s} {'calls':>6s}")
    for size in args.sizes:
        inputs = make_inputs(samples, size, args.images, args.seed)
        for subject, make in subjects:
            # piecewise affine costs ~0.1-0.5 s per call: fewer repeats keep the run short
            repeats = 1 if subject == "block:piecewise_affine" else args.repeats
            timing = time_augmenter(make(), inputs, repeats)
            results.append({"subject": subject, "size": size, **timing})
            print(f"{subject:26s} {size:5d} {timing['mean_ms']:9.2f} {timing['median_ms']:8.2f} "
                  f"{timing['p90_ms']:8.2f} {timing['calls']:6d}")

    print("\nmarkdown rows (subject | size | mean ms | median ms | p90 ms):")
    for row in results:
        print(f"| augment {row['subject']} | {row['size']}x{row['size']} | {row['mean_ms']:.1f} | "
              f"{row['median_ms']:.1f} | {row['p90_ms']:.1f} |")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "command": "python bench/bench_augment.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpu_count": os.cpu_count()},
        "seed": args.seed,
        "results": results,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
