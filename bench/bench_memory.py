"""Memory bench: peak resident memory of prediction against image size, for both models.

    .venv/bin/python bench/bench_memory.py [--models unet mrcnn [ensemble]] [--sizes 512 1024 2048 4000]
        [--max-memory MB] [--tta N] [--out bench/results/memory.json]

Each (model, size) runs in a fresh subprocess, so one size's peak cannot hide another's:
it loads the shipped weights (weights/unet.weights.h5, weights/mrcnn.weights.h5 with their
tuned parameters), predicts one synthetic grey image of ``size`` x ``size`` pixels (dim
background, bright blobs the size of nuclei, noise), and reports its peak resident set
(``ru_maxrss``) before and after prediction, the seconds taken and the tile plan used
(tools.inference.pipeline, chosen from ``--max-memory``). Prints a markdown table and
writes the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

DEFAULT_SIZES = (512, 1024, 2048, 4000)
MODELS = ("unet", "mrcnn", "ensemble")


def synthetic_image(side: int, seed: int = 0) -> np.ndarray:
    """uint8 [side, side, 3] grey image: dim noisy background, one bright blob per ~45x45 pixels."""
    import cv2

    rng = np.random.default_rng(seed)
    grey = np.full((side, side), 18, np.uint8)
    count = max(1, side * side // 2000)
    centres = rng.integers(0, side, size=(count, 2))
    radii = rng.integers(5, 13, size=count)
    brightness = rng.integers(120, 240, size=count)
    for (y, x), r, b in zip(centres, radii, brightness):
        cv2.circle(grey, (int(x), int(y)), int(r), int(b), thickness=-1)
    grey = cv2.GaussianBlur(grey, (5, 5), 1.5)
    noise = rng.normal(0, 4, size=grey.shape)
    grey = np.clip(grey + noise, 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def peak_mb() -> float:
    """Peak resident set of this process so far, MB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(model: str, side: int, max_memory: int | None, tta: int | None) -> dict:
    """Load ``model`` with the shipped weights, predict one synthetic image; figures in a dict."""
    from tools.inference.models import build_pipeline

    image = synthetic_image(side)
    started = time.perf_counter()
    pipeline = build_pipeline(model, tta=tta, max_memory=max_memory)
    loaded = peak_mb()
    load_seconds = time.perf_counter() - started
    started = time.perf_counter()
    labels, scores = pipeline.predict(image)
    seconds = time.perf_counter() - started
    return {"model": model, "size": side, "peak_mb": round(peak_mb(), 1), "after_load_mb": round(loaded, 1),
            "load_seconds": round(load_seconds, 2), "predict_seconds": round(seconds, 2),
            "nuclei": int(labels.max()), "tta": pipeline.params.tta,
            "max_memory_mb": pipeline.params.max_memory_mb, "plans": dict(pipeline.last_plans)}


def run_child(model: str, side: int, max_memory: int | None, tta: int | None) -> dict:
    """``measure`` in a fresh interpreter; its JSON line back (or the error)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", model, str(side)]
    if max_memory is not None:
        command += ["--max-memory", str(max_memory)]
    if tta is not None:
        command += ["--tta", str(tta)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"model": model, "size": side, "error": f"exit {done.returncode}: {tail}"}
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=["unet", "mrcnn"])
    parser.add_argument("--sizes", nargs="+", type=int, default=list(DEFAULT_SIZES))
    parser.add_argument("--max-memory", type=int, default=None, metavar="MB",
                        help="InferenceParams.max_memory_mb (default: the params' own)")
    parser.add_argument("--tta", type=int, default=None)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "memory.json"))
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child[0], int(args.child[1]), args.max_memory, args.tta)), flush=True)
        return 0

    from preprocessing.files import save_json_atomic

    rows = []
    print(f"max_memory_mb: {args.max_memory or 'params default'}, tta: {args.tta or 'params default'}")
    print("| model | side (px) | peak RSS (MB) | after loading (MB) | predict (s) | tile plan |")
    print("| --- | --- | --- | --- | --- | --- |")
    for model in args.models:
        for side in args.sizes:
            row = run_child(model, side, args.max_memory, args.tta)
            rows.append(row)
            if "error" in row:
                print(f"| {model} | {side} | error: {row['error']} | | | |", flush=True)
                continue
            shown = "; ".join(f"{name}: " + ("whole" if plan["whole"] else f"{plan['tile']} px x {plan['batch_size']}/batch")
                              for name, plan in row["plans"].items())
            print(f"| {model} | {side} | {row['peak_mb']:.0f} | {row['after_load_mb']:.0f} | "
                  f"{row['predict_seconds']:.1f} | {shown} |", flush=True)
    save_json_atomic(args.out, {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                            "python": platform.python_version()},
                                "max_memory_mb": args.max_memory, "tta": args.tta,
                                "note": "peak resident set (ru_maxrss) of one fresh process per row: load the "
                                        "shipped weights, predict one synthetic grey image",
                                "rows": rows})
    print(f"wrote {args.out}")
    return 0 if all("error" not in row for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
