"""Average Keras ``.weights.h5`` files of one architecture into one: a "model soup".

The command is ``python -m tools.average_weights OUT.weights.h5 A.weights.h5 B.weights.h5
[--fractions 0.75,0.25]``.

Runs fine-tuned from the same starting file stay in one basin of the loss, so the average of
their weights is a model of its own that often keeps the best of each (Wortsman et al. 2022,
"Model soups"; here: two Mask R-CNN runs of session 11 averaged half and half were the best model
on the shifted validation images; in session 12 the soup of two seeds scored between them,
bench/RESULTS.md: score it before shipping it). Runs trained from different starts do not
average into a working model: that is for the caller to know, the file cannot tell.

Every floating-point array is averaged (batch-norm statistics included: they are weights of the
same basin), in float64, and stored with the first file's dtype, so float16 files stay float16.
Integer arrays (step counters) must agree and are copied. The files must hold the same arrays with
the same shapes; the optimizer's state is left out, as it describes one run's trajectory. The
first file's config JSON (``X.json`` beside ``X.weights.h5``, or a run's ``config.json``) is written
beside the average, so that it predicts and scores like any other weights file.
"""

from pathlib import Path
from typing import Sequence

import h5py
import numpy as np

from preprocessing.errors import NucleiError
from preprocessing.files import atomic_target, save_json_atomic
from preprocessing.settings import config_path_for, read_json


def _arrays(group, prefix=""):
    """{path: dataset} of every dataset under ``group`` outside the optimizer's state."""
    found = {}
    for name, item in group.items():
        if not prefix and name == "optimizer":
            continue
        path = f"{prefix}/{name}" if prefix else name
        if isinstance(item, h5py.Group):
            found.update(_arrays(item, path))
        else:
            found[path] = item
    return found


def _fractions(fractions, count):
    if fractions is None:
        return np.full(count, 1.0 / count)
    fractions = np.asarray(fractions, dtype=np.float64)
    if fractions.shape != (count,):
        raise NucleiError(f"{fractions.size} fractions given for {count} weights files")
    if np.any(fractions < 0) or not np.isclose(fractions.sum(), 1.0):
        raise NucleiError(f"fractions must be >= 0 and sum to 1, got {fractions.tolist()}")
    return fractions


def _copy_structure(source, target):
    """Groups and attributes of ``source`` (without the optimizer) recreated under ``target``."""
    for key, value in source.attrs.items():
        target.attrs[key] = value
    for name, item in source.items():
        if isinstance(item, h5py.Group) and not (source.name == "/" and name == "optimizer"):
            _copy_structure(item, target.create_group(name))


def average_weights_files(sources: Sequence[str | Path], target: str | Path,
                          fractions: Sequence[float] | None = None) -> Path:
    """Write ``target`` (atomically): the weighted mean of the ``sources``' arrays.

    sources: two or more ``.weights.h5`` files of one architecture.
    fractions: one weight per source, >= 0, summing to 1 (default: equal).
    Raises NucleiError naming the file when one is missing, unreadable, or holds other arrays
    (names or shapes) than the first.
    """
    sources = [Path(source) for source in sources]
    if len(sources) < 2:
        raise NucleiError(f"averaging needs two or more weights files, got {len(sources)}")
    fractions = _fractions(fractions, len(sources))
    for source in sources:
        if not source.is_file():
            raise NucleiError("weights file not found", source)
    config = _first_config(sources)
    target = Path(target)
    files = []
    try:
        for source in sources:
            try:
                files.append(h5py.File(source, "r"))
            except OSError as error:
                raise NucleiError(f"not a readable HDF5 weights file: {error}", source) from None
        reference = _arrays(files[0])
        if not reference:
            raise NucleiError("holds no weight arrays", sources[0])
        for source, file in zip(sources[1:], files[1:]):
            arrays = _arrays(file)
            missing, extra = sorted(set(reference) - set(arrays)), sorted(set(arrays) - set(reference))
            if missing or extra:
                raise NucleiError(f"holds other arrays than {sources[0].name} (missing {missing[:3]}, "
                                  f"extra {extra[:3]}): not the same architecture", source)
            for path, dataset in reference.items():
                if arrays[path].shape != dataset.shape:
                    raise NucleiError(f"array {path} has shape {arrays[path].shape}, {sources[0].name} "
                                      f"has {dataset.shape}: not the same architecture", source)
        with atomic_target(target, suffix=".weights.h5") as tmp:
            with h5py.File(tmp, "w") as out:
                _copy_structure(files[0], out)
                for path, dataset in reference.items():
                    values = [file[path][()] for file in files]
                    first = values[0]
                    if isinstance(first, np.ndarray) and np.issubdtype(first.dtype, np.floating):
                        mean = sum(f * np.asarray(v, np.float64) for f, v in zip(fractions, values))
                        data = mean.astype(first.dtype)
                    else:
                        for source, value in zip(sources[1:], values[1:]):
                            if not np.array_equal(value, first):
                                raise NucleiError(f"non-float array {path} differs from {sources[0].name}'s",
                                                  source)
                        data = first
                    written = out.create_dataset(path, data=data)
                    for key, value in dataset.attrs.items():
                        written.attrs[key] = value
    finally:
        for file in files:
            file.close()
    if config is not None:
        save_json_atomic(config_path_for(target), config)
    return target


def _first_config(sources):
    """The first source's config document (None without one), after checking that every source
    with a config names the same model kind (a U-Net and a Mask R-CNN cannot average)."""
    configs = [config_path_for(source) for source in sources]
    documents = {path: read_json(path) for path in configs if path.is_file()}
    if configs[0] not in documents:
        return None
    kinds = {path: document.get("kind") if isinstance(document, dict) else None
             for path, document in documents.items()}
    for path, kind in kinds.items():
        if kind != kinds[configs[0]]:
            raise NucleiError(f"config says kind {kind!r}, {configs[0].name} says {kinds[configs[0]]!r}", path)
    return documents[configs[0]]
