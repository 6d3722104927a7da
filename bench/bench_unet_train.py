"""U-Net training throughput on this machine: crops per second, data pipeline and network apart.

    .venv/bin/python bench/bench_unet_train.py [--config weights/unet.json] [--steps 5]
        [--batch-size 8] [--precision float32|bfloat16] [--out bench/results/unet_train.json]

Times (1) producing augmented batches (UNetTrainData, 'heavy' preset, one worker) and
(2) train_on_batch of the shipped architecture on pre-made batches, after one warm-up step.
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default=str(ROOT / "weights" / "unet.json"))
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--precision", default="float32", help="float32 or bfloat16 (mixed, float32 weights)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "unet_train.json"))
    args = parser.parse_args()

    import dataclasses
    import warnings

    warnings.filterwarnings("ignore")
    import keras

    from preprocessing.dataset import load_dataset
    from preprocessing.precision import compute_policy
    from unet.config import UNetConfig
    from unet.data import UNetTrainData
    from unet.losses import loss_for
    from unet.model import build_unet

    config = dataclasses.replace(UNetConfig.load(args.config), batch_size=args.batch_size)
    samples = load_dataset(ROOT / "data" / "sample" / "stage1_train").samples
    data = UNetTrainData(samples, config, args.steps + 1, "heavy")
    started = time.perf_counter()
    batches = [data[k] for k in range(args.steps + 1)]
    data_seconds = (time.perf_counter() - started) / len(batches)

    with compute_policy(args.precision):
        model = build_unet(config)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss=loss_for(config))
    model.train_on_batch(*batches[0])
    started = time.perf_counter()
    for x, y in batches[1:]:
        model.train_on_batch(x, y)
    step_seconds = (time.perf_counter() - started) / args.steps
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, keras {keras.__version__} "
                   f"({keras.backend.backend()})",
        "crop_size": config.crop_size, "batch_size": config.batch_size, "precision": args.precision,
        "filters": f"{config.base_filters}-{config.max_filters}, depth {config.depth}",
        "data_seconds_per_batch": round(data_seconds, 3),
        "train_seconds_per_step": round(step_seconds, 3),
        "crops_per_second_network": round(config.batch_size / step_seconds, 2),
        "crops_per_second_data_one_worker": round(config.batch_size / data_seconds, 2),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"| U-Net training, {result['filters']}, crop {config.crop_size}, batch {config.batch_size}, "
          f"{args.precision} | "
          f"network {result['crops_per_second_network']} crops/s, data (1 worker) "
          f"{result['crops_per_second_data_one_worker']} crops/s | {result['machine']} |")


if __name__ == "__main__":
    main()
