"""Store a Keras ``.weights.h5`` file with float16 values: half the size, same model.

``python -m tools.half_weights IN.weights.h5 OUT.weights.h5``

Keras assigns each stored array to its variable with the variable's own dtype, so the
halved file loads into the same float32 model unchanged (values rounded to float16's 11
significant bits: the shipped Mask R-CNN scores 0.4484 instead of 0.4491 on the bundled
sample, its detections agreeing at DSB 0.99). Shipped weights use it to stay small enough
for git and for the GPU machines' 64 MiB transfer limit. Other dtypes (integers, the
optimizer's step counter) are copied as they are.
"""

import argparse
import os
import sys
from pathlib import Path

import h5py
import numpy as np

from preprocessing.errors import NucleiError
from tools.io import atomic_path


def _copy(source, target):
    for key, value in source.attrs.items():
        target.attrs[key] = value
    for name, item in source.items():
        if isinstance(item, h5py.Group):
            _copy(item, target.create_group(name))
            continue
        data = item[()]
        if isinstance(data, np.ndarray) and data.dtype == np.float32:
            data = data.astype(np.float16)
        dataset = target.create_dataset(name, data=data)
        for key, value in item.attrs.items():
            dataset.attrs[key] = value


def halve_weights_file(source, target):
    """Write ``target`` (atomically): ``source`` with every float32 array stored as float16."""
    source, target = Path(source), Path(target)
    if not source.is_file():
        raise NucleiError("weights file not found", source)
    tmp = atomic_path(target)
    try:
        with h5py.File(source, "r") as fin, h5py.File(tmp, "w") as fout:
            _copy(fin, fout)
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        raise NucleiError(f"not a readable HDF5 weights file: {error}", source) from None
    os.replace(tmp, target)
    return target


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.half_weights", description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("target")
    args = parser.parse_args(argv)
    try:
        before = Path(args.source).stat().st_size if Path(args.source).is_file() else 0
        halve_weights_file(args.source, args.target)
    except NucleiError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{args.target}: {before / 1e6:.1f} MB -> {Path(args.target).stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
