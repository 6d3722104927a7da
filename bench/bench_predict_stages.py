"""Where prediction time goes on this machine: reading, the network, decoding, writing.

    python bench/bench_predict_stages.py --images ../shared/dsb2018/stage1_test --out bench/results/predict_stages.json
    python bench/bench_predict_stages.py --images data/sample/stage1_train --models unet   # quick look
    python bench/bench_predict_stages.py --images ../shared/dsb2018/stage1_test --models unet,unet-bf16,mrcnn,ensemble

For each model (shipped weights and params, single pass) and each image: seconds reading the
file, inside the network (the pipeline's own timer around the model calls), in everything else
of ``pipeline.predict`` (normalisation, padding, tiling, watershed or mask pasting,
post-processing), encoding the RLE and writing the 16-bit label PNG. The first image is run
once before timing (allocation). ``unet-bf16`` (``mrcnn-bf16``, ``ensemble-bf16``) is the model with ``--precision bfloat16``.
Prints a table, writes JSON.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from preprocessing.files import save_json_atomic  # noqa: E402

STAGES = ("read", "network", "other inference", "rle", "write png")


def time_model(model: str, paths: list[Path], scratch: Path) -> dict:
    """{stage: [seconds per image]} and pixel counts for one model over ``paths``."""
    from preprocessing.dataset import read_image, write_png
    from tools.inference.folder import PNG_COMPRESSION
    from tools.inference.models import build_pipeline
    from tools.kaggle.rle import labels_to_rles

    name, _, precision = model.partition("-")  # "mrcnn-bf16": the Mask R-CNN in bfloat16
    pipeline = build_pipeline(name, precision="bfloat16" if precision == "bf16" else "float32")
    pipeline.predict(read_image(paths[0]))  # warm-up: tracing and first allocations
    times = {stage: [] for stage in STAGES}
    pixels = []
    for path in paths:
        started = time.perf_counter()
        image = read_image(path)
        read_done = time.perf_counter()
        network_before = pipeline.network_seconds
        labels, _ = pipeline.predict(image)
        predict_done = time.perf_counter()
        network = pipeline.network_seconds - network_before
        labels_to_rles(labels)
        rle_done = time.perf_counter()
        write_png(scratch / f"{model}.png", labels.astype(np.uint16), PNG_COMPRESSION)
        write_done = time.perf_counter()
        times["read"].append(read_done - started)
        times["network"].append(network)
        times["other inference"].append(predict_done - read_done - network)
        times["rle"].append(rle_done - predict_done)
        times["write png"].append(write_done - rle_done)
        pixels.append(int(image.shape[0] * image.shape[1]))
    return {"seconds": times, "pixels": pixels}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", required=True)
    parser.add_argument("--models", default="unet,mrcnn")
    parser.add_argument("--max-images", type=int, default=None)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "predict_stages.json"))
    args = parser.parse_args()

    import tempfile

    from tools.inference.folder import list_images

    paths = [path for _, path in list_images(args.images)][: args.max_images]
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for model in args.models.split(","):
            results[model] = time_model(model, paths, Path(scratch))
    print(f"{len(paths)} images, mean {np.mean(results[next(iter(results))]['pixels']) / 1e3:.0f}k pixels; "
          "seconds per image (share of the total):")
    print(f"{'model':9s} " + " ".join(f"{stage:>17s}" for stage in STAGES) + f" {'total':>8s}")
    for model, result in results.items():
        means = {stage: float(np.mean(result["seconds"][stage])) for stage in STAGES}
        total = sum(means.values())
        result["mean"] = means
        result["total"] = total
        print(f"{model:9s} " + " ".join(f"{means[s]:8.3f} ({means[s] / total:5.1%})" for s in STAGES)
              + f" {total:8.3f}")
    save_json_atomic(args.out, {"command": "python bench/bench_predict_stages.py " + " ".join(sys.argv[1:]),
                                "images": len(paths), "results": results})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
