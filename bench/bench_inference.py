"""Inference bench: seconds per image, single pass vs 15-way TTA, and validation scores.

    .venv/bin/python bench/bench_inference.py [--unet-weights W] [--mrcnn-weights W]
        [--data DIR --val-fraction F --seed S --max-images N] [--timing-images N]
        [--out bench/results/inference.json]

Timing: for each model and each image size (256x256 and 520x696, real images of
that size from --timing-data), seconds per image with --tta 1 and --tta 15, split into
the networks' own calls (``network_seconds``; for Mask R-CNN this includes its own
mask pasting inside predict) and everything else (transforms, merging, decode,
post-processing). Without weights an untrained model of the shipped architecture is
timed (same cost; its scores are meaningless and are not reported).

Scores (needs trained U-Net weights; validation split of --data as training made it):
single pass, dilation only, TTA only, TTA + dilation, and the ensemble when Mask R-CNN
weights are given. Prints markdown rows and writes the JSON.
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

import numpy as np  # noqa: E402


def untrained_unet():
    """The shipped U-Net architecture (bench/gpu_train_unet.sh) with random weights."""
    from unet.config import UNetConfig
    from unet.model import build_unet
    from unet.predictor import UNetPredictor

    config = UNetConfig(base_filters=32, max_filters=192, depth=4)
    return UNetPredictor(build_unet(config), config)


def untrained_mrcnn():
    from mrcnn.config import NucleusInferenceConfig
    from mrcnn.model import MaskRCNN
    from mrcnn.predictor import MrcnnPredictor

    model = MaskRCNN(NucleusInferenceConfig())
    model.infer(np.zeros((1, 256, 256, 3), np.float32))
    return MrcnnPredictor(model)


def images_of_shape(root, shape, count):
    from preprocessing.dataset import iter_images, read_image

    found = []
    for _, path in iter_images(root):
        image = read_image(path)
        if image.shape[:2] == shape:
            found.append(image)
            if len(found) == count:
                break
    return found


def time_pipeline(make_pipeline, images):
    """Seconds per image (total, network) after one warm-up call."""
    pipeline = make_pipeline()
    pipeline.predict(images[0])
    start_network = pipeline.network_seconds
    started = time.perf_counter()
    for image in images:
        pipeline.predict(image)
    total = (time.perf_counter() - started) / len(images)
    network = (pipeline.network_seconds - start_network) / len(images)
    return {"seconds_per_image": total, "network_seconds_per_image": network,
            "other_seconds_per_image": total - network, "other_fraction": (total - network) / total}


def score_variants(unet, mrcnn, samples):
    """Validation DSB scores of the variants the issue asks for."""
    from tools.inference.ensemble import ensemble_instances
    from tools.inference.params import InferenceParams
    from tools.inference.pipeline import DenseModel, InferencePipeline, InstanceModel
    from tools.inference.postprocess import PostprocessConfig, postprocess
    from tools.inference.tuning import mean_score

    dense = DenseModel(unet)
    single = InferencePipeline(dense, None, InferenceParams(tta=1))
    full = InferencePipeline(dense, None, InferenceParams(tta=15))
    probs1 = {s.image_id: single.probabilities(s.image) for s in samples}
    probs15 = {s.image_id: full.probabilities(s.image) for s in samples}
    dilate = PostprocessConfig(dilate=1)
    scores = {
        "unet single pass": mean_score(samples, lambda s: dense.decode(probs1[s.image_id])[0]),
        "unet dilation only (1 px)": mean_score(
            samples, lambda s: postprocess(*dense.decode(probs1[s.image_id]), dilate)[0]),
        "unet TTA only (15)": mean_score(samples, lambda s: dense.decode(probs15[s.image_id])[0]),
        "unet TTA (15) + dilation (1 px)": mean_score(
            samples, lambda s: postprocess(*dense.decode(probs15[s.image_id]), dilate)[0]),
    }
    if mrcnn is not None:
        instance = InstanceModel(mrcnn)
        m1 = InferencePipeline(None, instance, InferenceParams(tta=1))
        inst1 = {s.image_id: m1.raw(s.image) for s in samples}
        scores["mrcnn single pass"] = mean_score(samples, lambda s: inst1[s.image_id][0])
        scores["mrcnn dilation only (1 px)"] = mean_score(
            samples, lambda s: postprocess(*inst1[s.image_id], dilate)[0])
        scores["ensemble single pass"] = mean_score(
            samples, lambda s: ensemble_instances(probs1[s.image_id], *inst1[s.image_id])[0])
        scores["ensemble single pass + dilation (1 px)"] = mean_score(
            samples, lambda s: postprocess(*ensemble_instances(probs1[s.image_id], *inst1[s.image_id]),
                                           dilate)[0])
    return scores


def main(argv=None):
    import warnings

    warnings.filterwarnings("ignore")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--unet-weights")
    parser.add_argument("--mrcnn-weights")
    parser.add_argument("--no-mrcnn", action="store_true", help="skip Mask R-CNN timing")
    parser.add_argument("--timing-data", default="/work/shared/dsb2018/stage1_test")
    parser.add_argument("--timing-images", type=int, default=3)
    parser.add_argument("--data", help="labelled data root for validation scores (training's --data)")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-images", type=int, default=None)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "inference.json"))
    args = parser.parse_args(argv)

    import keras

    from tools.inference.params import InferenceParams
    from tools.inference.pipeline import DenseModel, InferencePipeline, InstanceModel
    from unet.predictor import UNetPredictor

    unet = UNetPredictor.from_path(args.unet_weights) if args.unet_weights else untrained_unet()
    mrcnn = None
    if args.mrcnn_weights:
        from mrcnn.predictor import MrcnnPredictor

        mrcnn = MrcnnPredictor.from_path(args.mrcnn_weights)
    elif not args.no_mrcnn:
        mrcnn = untrained_mrcnn()
    result = {"machine": f"{platform.node()} {platform.processor() or platform.machine()}, "
                         f"{os.cpu_count()} CPUs visible, keras {keras.__version__} ({keras.backend.backend()})",
              "unet_weights": args.unet_weights or "untrained, shipped architecture (base 32, max 192, depth 4)",
              "mrcnn_weights": args.mrcnn_weights or ("untrained NucleusInferenceConfig" if mrcnn else None),
              "timing": [], "scores": {}}
    rows = ["| model | image size | TTA | s/image | network s/image | other s/image | other share |",
            "|---|---|---|---|---|---|---|"]
    for shape in ((256, 256), (520, 696)):
        images = images_of_shape(args.timing_data, shape, args.timing_images)
        if not images:
            print(f"no {shape} images under {args.timing_data}", file=sys.stderr)
            continue
        models = [("unet", lambda tta: InferencePipeline(DenseModel(unet), None, InferenceParams(tta=tta)))]
        if mrcnn is not None:
            models.append(("mrcnn", lambda tta: InferencePipeline(None, InstanceModel(mrcnn), InferenceParams(tta=tta))))
        for name, make in models:
            for tta in (1, 15):
                timing = time_pipeline(lambda: make(tta), images)
                timing.update(model=name, shape=list(shape), tta=tta, images=len(images))
                result["timing"].append(timing)
                rows.append(f"| {name} | {shape[0]}x{shape[1]} | {tta} | {timing['seconds_per_image']:.3f} | "
                            f"{timing['network_seconds_per_image']:.3f} | {timing['other_seconds_per_image']:.3f} | "
                            f"{timing['other_fraction']:.1%} |")
                print(rows[-1], flush=True)
    if args.data and args.unet_weights:
        from tools.inference.tuning import validation_samples

        samples = validation_samples([args.data], args.val_fraction, args.seed, args.max_images)
        result["validation_images"] = len(samples)
        result["scores"] = score_variants(unet, mrcnn if args.mrcnn_weights else None, samples)
        rows += ["", f"| variant | validation DSB score ({len(samples)} images) |", "|---|---|"]
        rows += [f"| {name} | {score:.4f} |" for name, score in result["scores"].items()]
    from preprocessing.files import save_json_atomic

    save_json_atomic(args.out, result)
    print("\n".join(rows))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
