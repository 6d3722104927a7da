"""StarDist, the peer of bench/side_by_side.py: train for a time budget, predict, in its own venv.

Runs under ``.venv-stardist/bin/python`` (``bash bench/setup_stardist.sh``: StarDist needs
TensorFlow 2.15 with its tf.keras, not this project's Keras 3). It reads and writes only the
.npz files bench/side_by_side.py exchanges with it, so nothing of this project is imported:

    python bench/stardist_peer.py train --data DIR --val DIR --seconds 600 --out MODEL_DIR
    python bench/stardist_peer.py predict --model MODEL_DIR --images DIR --out DIR

Each .npz holds ``image`` uint8 [H, W, 3] and, for training, ``labels`` int32 [H, W].
The recipe is StarDist's own 2D example (32 rays, grid 2, 256 x 256 patches, batch 4,
flips / rotations / intensity augmentation, percentile normalisation), on RGB input; training
stops when the budget is spent and keeps the last weights (not the best on validation: the
validation images are the ones scored). Thresholds: StarDist's defaults. Each command prints
one JSON line last.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def _load(folder):
    items = []
    for path in sorted(Path(folder).glob("*.npz")):
        with np.load(path) as data:
            items.append((path.stem, data["image"], data["labels"] if "labels" in data else None))
    return items


def _normalize(image):
    from csbdeep.utils import normalize

    return normalize(image.astype(np.float32), 1, 99.8, axis=(0, 1))


def _augment(x, y):
    """Random flips and 90-degree rotations, and intensity jitter (StarDist's example)."""
    k = np.random.randint(4)
    x, y = np.rot90(x, k, axes=(0, 1)), np.rot90(y, k, axes=(0, 1))
    if np.random.rand() < 0.5:
        x, y = x[:, ::-1], y[:, ::-1]
    x = x * np.random.uniform(0.6, 2) + np.random.uniform(-0.2, 0.2)
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


def train(args):
    import tensorflow as tf
    from stardist import fill_label_holes
    from stardist.models import Config2D, StarDist2D

    train_items = [(image, labels) for _, image, labels in _load(args.data)]
    val_items = [(image, labels) for _, image, labels in _load(args.val)][: args.val_images]
    x = [_normalize(image) for image, _ in train_items]
    y = [fill_label_holes(labels) for _, labels in train_items]
    xv = [_normalize(image) for image, _ in val_items]
    yv = [fill_label_holes(labels) for _, labels in val_items]
    config = Config2D(n_rays=32, grid=(2, 2), n_channel_in=3, train_patch_size=(256, 256), train_batch_size=4,
                      use_gpu=False, train_checkpoint=None, train_tensorboard=False)
    model = StarDist2D(config, name="stardist", basedir=str(args.out))
    model.prepare_for_training()
    started = time.perf_counter()
    steps = [0]

    class Budget(tf.keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            steps[0] += 1
            if time.perf_counter() - started > args.seconds:
                self.model.stop_training = True

    model.callbacks.append(Budget())
    model.train(x, y, validation_data=(xv, yv), augmenter=_augment, epochs=100000, steps_per_epoch=50)
    seconds = time.perf_counter() - started
    model.keras_model.save_weights(str(Path(args.out) / "stardist" / "weights_last.h5"))
    crops = steps[0] * config.train_batch_size
    print(json.dumps({"crops": crops, "seconds": seconds, "crops_per_s": crops / seconds,
                      "crop": 256, "batch": config.train_batch_size}))
    return 0


def predict(args):
    from stardist.models import StarDist2D

    model = StarDist2D(None, name="stardist", basedir=str(args.model))
    model.load_weights("weights_last.h5")
    items = _load(args.images)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.predict_instances(_normalize(items[0][1]))  # warm-up, as this project's benchmark does
    seconds = []
    for image_id, image, _ in items:
        begun = time.perf_counter()
        labels, _ = model.predict_instances(_normalize(image))
        seconds.append(time.perf_counter() - begun)
        np.savez_compressed(out / f"{image_id}.npz", labels=labels.astype(np.int32))
    print(json.dumps({"images": len(items), "seconds_per_image": float(np.mean(seconds))}))
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    t = commands.add_parser("train")
    t.add_argument("--data", required=True)
    t.add_argument("--val", required=True)
    t.add_argument("--val-images", type=int, default=16, help="validation images for StarDist's own val loss")
    t.add_argument("--seconds", type=float, required=True)
    t.add_argument("--out", required=True)
    p = commands.add_parser("predict")
    p.add_argument("--model", required=True)
    p.add_argument("--images", required=True)
    p.add_argument("--out", required=True)
    args = parser.parse_args()
    return train(args) if args.command == "train" else predict(args)


if __name__ == "__main__":
    sys.exit(main())
