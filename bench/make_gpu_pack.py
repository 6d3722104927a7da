"""Write the training set (minus the bundled sample) compactly enough to travel to a GPU machine.

The lent GPU machines receive the working tree plus carried folders, 64 MiB in all (the
tracked files are 60 MB, 28 MB on bench/gpu_travel.py's slim branch). The compact labels layout (one image + one 16-bit label
PNG per id) takes 46 MB; images over 10 KB are then stored as JPEG (quality 95) where
that at least halves them (with a 30 KB threshold the pack was 25 MB). Labels stay lossless.

Usage: python bench/make_gpu_pack.py [--data ../shared/dsb2018/stage1_train] [--out .gpu/stage1_train_labels]
       python bench/make_gpu_pack.py --wheels .whl    (the wheels the GPU machine lacks, for Python 3.12)
(``.gpu/`` is git-ignored; name it in the device tool's ``carry``.)
"""

import argparse
import sys
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from preprocessing.dataset import load_training_samples, save_labels_layout  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample" / "stage1_train"


def jpeg_large_images(root, min_bytes=10_000, quality=95):
    """Re-encode ``root/*/images/*.png`` over ``min_bytes`` as JPEG where that halves them."""
    converted = 0
    for png in sorted(Path(root).glob("*/images/*.png")):
        if png.stat().st_size < min_bytes:
            continue
        image = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
        jpg = png.with_suffix(".jpg")
        cv2.imwrite(str(jpg), image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if 2 * jpg.stat().st_size <= png.stat().st_size:
            png.unlink()
            converted += 1
        else:
            jpg.unlink()
    return converted


# What the GPU machines (PyTorch + JAX, no TensorFlow) lack to run the project, pure wheels or
# manylinux builds for their Python 3.12; installed there without dependencies.
GPU_WHEELS = ("keras", "namex", "optree", "imgaug==0.4.0", "shapely")


def download_wheels(folder):
    """pip download GPU_WHEELS (binary, Python 3.12, no dependencies) into ``folder``."""
    import subprocess

    import keras

    # the Keras this machine trains and tests with, so weights written there load here
    wanted = [f"keras=={keras.__version__}" if name == "keras" else name for name in GPU_WHEELS]
    subprocess.run([sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--no-deps",
                    "--python-version", "3.12", "--platform", "manylinux2014_x86_64", "--platform", "any",
                    "-d", str(folder), *wanted], check=True)
    total = sum(p.stat().st_size for p in Path(folder).glob("*.whl"))
    print(f"wheels -> {folder}: {total / 1e6:.1f} MB")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", metavar="DIR", help="download the GPU machine's wheels into DIR and stop")
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "dsb2018" / "stage1_train"))
    parser.add_argument("--out", default=".gpu/stage1_train_labels")
    args = parser.parse_args()
    if args.wheels:
        download_wheels(args.wheels)
        return
    samples = load_training_samples([args.data], [str(SAMPLE)], None, 0)
    save_labels_layout(samples, args.out)
    converted = jpeg_large_images(args.out)
    total = sum(p.stat().st_size for p in Path(args.out).rglob("*") if p.is_file())
    print(f"{len(samples)} images -> {args.out}: {converted} stored as JPEG, {total / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
