"""Mask R-CNN on this machine: training images per second, inference seconds per image, DSB score.

    [KERAS_BACKEND=jax] python bench/bench_mrcnn.py [--config nucleus|weights/mrcnn.json --alpha 0.5
                                [--crop-size 256 --images-per-gpu 4]
                                [--weights RUN/best.weights.h5] [--images data/sample/stage1_train]
                                [--steps 20] [--threads 2] [--precision float32|bfloat16] [--out bench/mrcnn.json]
    python bench/bench_mrcnn.py --config weights/mrcnn.json --train-only --parts   # where a step's time goes

Training speed: ``--steps`` timed steps (after two warm-up steps) of ``train_on_batch``, on
any Keras backend, of a freshly built model of the given config (a name or a config JSON) on
random crops of ``--images``. Inference (unless ``--train-only``): every image under
``--images`` through MrcnnPredictor (``--weights``, or the untrained model when absent:
then the detections, and so the mask pasting time, are not representative).
Parts (``--parts``, TensorFlow): forward + backward (gradients of the part's weights and
inputs) of the step's pieces at the training shapes: backbone + FPN, RPN head, box head on
every sampled RoI, mask head on the positive RoI slots, each its own ``tf.function``.
Score: the DSB metric on ``--images`` when it holds labels and ``--weights`` is given.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="nucleus")
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--crop-size", type=int, default=256)
    parser.add_argument("--images-per-gpu", type=int, default=4)
    parser.add_argument("--weights")
    parser.add_argument("--images", default=str(ROOT / "data" / "sample" / "stage1_train"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", default="float32", help="float32 or bfloat16 (mixed, float32 weights)")
    parser.add_argument("--train-only", action="store_true", help="skip the inference timing")
    parser.add_argument("--parts", action="store_true", help="also time the training step's pieces (TensorFlow)")
    parser.add_argument("--out")
    args = parser.parse_args(argv)

    import keras
    import numpy as np

    if args.threads and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    from mrcnn.config import config_from_name
    from mrcnn.data import MrcnnDataset
    from mrcnn.model import MaskRCNN
    from preprocessing.dataset import load_dataset

    dataset = load_dataset(args.images)
    samples = dataset.samples
    labelled = [s for s in samples if s.labels is not None]
    result = {"machine": f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start",
              "tensorflow_threads": args.threads, "images": args.images}

    if labelled and args.steps > 0:
        overrides = {"IMAGE_CROP_SIZE": args.crop_size, "IMAGES_PER_GPU": args.images_per_gpu,
                     "STEPS_PER_EPOCH": args.steps + 2}
        if args.config.endswith(".json"):  # a saved config, e.g. the shipped weights/mrcnn.json
            from mrcnn.config import Config

            config = Config.load(args.config).replace(BACKBONE_WEIGHTS=None, **overrides)
        else:
            if args.config != "tiny":
                overrides["BACKBONE_ALPHA"] = args.alpha
            config = config_from_name(args.config, **overrides)
        keras.utils.set_random_seed(0)
        model = MaskRCNN(config, precision=args.precision)
        model.compile_for_training(config.LEARNING_RATE, "all")
        data = MrcnnDataset(labelled, config, training=True)
        # train_on_batch: the backend's own step (a tf.function, an XLA-compiled JAX step, eager torch)
        batches = [data[i] for i in range(2)]
        started = time.perf_counter()
        model.train_on_batch(batches[0])  # warm-up: tracing / compiling
        compile_s = time.perf_counter() - started
        model.train_on_batch(batches[1])
        started = time.perf_counter()
        for i in range(args.steps):
            model.train_on_batch(batches[i % 2])
        graph_s = (time.perf_counter() - started) / args.steps
        started = time.perf_counter()
        for i in range(min(args.steps, 10)):
            data[i]
        data_s = (time.perf_counter() - started) / min(args.steps, 10)
        result["training"] = {"backend": keras.backend.backend(), "first_step_s": round(compile_s, 1),
                              "config": args.config, "backbone": config.BACKBONE, "alpha": config.BACKBONE_ALPHA,
                              "crop": args.crop_size, "batch": config.BATCH_SIZE, "precision": args.precision, "step_s": round(graph_s, 3),
                              "data_s_per_batch": round(data_s, 3),
                              "images_per_s": round(config.BATCH_SIZE / graph_s, 2)}
        print(json.dumps(result["training"]))
        if args.parts:
            result["training"]["parts_s"] = time_parts(model, data[0], args.steps)
            print(json.dumps(result["training"]["parts_s"]))

    if not args.train_only:
        time_inference(args, samples, result)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


def time_parts(model, batch, repeats):
    """Seconds of forward + backward of each main piece of a training step (TensorFlow)."""
    import numpy as np
    import tensorflow as tf

    images = tf.constant(batch["image"])
    features = [tf.constant(f) for f in model._features(images, True)]
    rng = np.random.default_rng(0)
    height, width = images.shape[1:3]

    def random_rois(count):  # boxes of 8-50 px inside the crop: RoIAlign's cost does not depend on where
        y1 = rng.uniform(0, height - 50, (len(images), count, 1))
        x1 = rng.uniform(0, width - 50, (len(images), count, 1))
        size = rng.uniform(8, 50, (len(images), count, 2))
        return tf.constant(np.concatenate([y1, x1, y1 + size[..., :1], x1 + size[..., 1:]], -1), tf.float32)

    targets = model.stage_targets()[-1]
    box_rois, mask_rois = random_rois(targets.num_rois), random_rois(targets.positive_slots)
    parts = {
        "backbone+fpn": (lambda: model._features(images, True), [images], model.backbone),
        "rpn_head": (lambda: model.rpn_head(features)[0], features, model.rpn_head),
        f"box_head_{targets.num_rois}_rois": (lambda: model.box_head(model.box_align([box_rois] + features[:4]))[0],
                                              features[:4], model.box_head),
        f"mask_head_{targets.positive_slots}_rois": (
            lambda: model.mask_head(model.mask_align([mask_rois] + features[:4])), features[:4], model.mask_head),
    }
    seconds = {}
    for name, (forward, inputs, layer) in parts.items():
        @tf.function
        def step(forward=forward, inputs=inputs, layer=layer):
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                outputs = tf.nest.flatten(forward())
                total = tf.add_n([tf.reduce_sum(tf.cast(o, tf.float32)) for o in outputs])
            return tape.gradient(total, layer.trainable_variables + list(inputs))

        step()
        started = time.perf_counter()
        for _ in range(max(repeats, 1)):
            step()
        seconds[name] = round((time.perf_counter() - started) / max(repeats, 1), 3)
    return seconds


def time_inference(args, samples, result):
    """Seconds per image of MrcnnPredictor over ``samples`` (and the DSB score with --weights)."""
    import numpy as np

    from mrcnn.config import Config, config_from_name
    from mrcnn.model import MaskRCNN
    from mrcnn.predictor import MrcnnPredictor

    if args.weights:
        predictor = MrcnnPredictor.from_path(args.weights)
    elif args.config.endswith(".json"):
        predictor = MrcnnPredictor(MaskRCNN(Config.load(args.config).replace(BACKBONE_WEIGHTS=None)))
    else:
        config = config_from_name(args.config, **({} if args.config == "tiny" else {"BACKBONE_ALPHA": args.alpha}))
        predictor = MrcnnPredictor(MaskRCNN(config))
    predictor.predict(samples[0].image)  # warm-up (tracing)
    times, pairs = [], []
    for sample in samples:
        started = time.perf_counter()
        labels, _ = predictor.predict(sample.image)
        times.append(time.perf_counter() - started)
        if sample.labels is not None:
            pairs.append((sample.image_id, sample.labels, labels))
    result["inference"] = {"weights": args.weights, "images": len(samples),
                           "s_per_image_mean": round(float(np.mean(times)), 3),
                           "s_per_image_max": round(float(np.max(times)), 3)}
    print(json.dumps(result["inference"]))
    if args.weights and pairs:
        from tools.kaggle.metric import dataset_score

        score = dataset_score(pairs, image_types={s.image_id: s.image_type for s in samples})
        result["dsb_score"] = round(float(score["score"]), 4)
        print(f"DSB score on {len(pairs)} images: {result['dsb_score']}")


if __name__ == "__main__":
    sys.exit(main())
