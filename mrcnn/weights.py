"""Weights by layer name: save and load HDF5 files keyed by layer name, skipping heads.

Keras 3's ``.weights.h5`` loads by position, which breaks whenever the model
around a backbone changes. Here a file is read as ``{layer name: [arrays]}`` and
loaded into whichever layers of a (possibly nested) model carry those names.

Formats read:
* the legacy Keras HDF5 layout (Keras 2 / Matterport / ``keras.applications``
  downloads): root (or ``model_weights/``) attribute ``layer_names``, each layer group
  with attribute ``weight_names``; written by :func:`save_weights_by_name`;

Keras 3 ``.weights.h5`` files name their groups after layer classes
(``layers/conv2d_12/vars/0``), not layer names, so they cannot be matched by name: load
one into the architecture that saved it, then :func:`save_weights_by_name`
(``tools/convert_weights.py`` does that for keras.applications backbones).
"""

import re
from pathlib import Path

import h5py
import numpy as np

from preprocessing.errors import NucleiError

# Matterport's exclusion for transfer learning: the heads whose shapes depend on classes
# (and their Cascade R-CNN copies, mrcnn_class_logits_stage2 ...).
HEAD_LAYERS = r"^(mrcnn_class_logits|mrcnn_bbox_fc|mrcnn_bbox|mrcnn_mask)(_stage\d+)?$"


def iter_layers(model):
    """Every leaf layer (one without sub-layers) of a model, nested models flattened."""
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if not list(layer._flatten_layers(include_self=False, recursive=False)):
            yield layer


def named_weights(model):
    """{layer name: layer} over leaf layers that hold weights."""
    out = {}
    for layer in iter_layers(model):
        if layer.weights:
            if layer.name in out:
                raise NucleiError(f"two layers are named {layer.name!r}; loading by name needs unique names")
            out[layer.name] = layer
    return out


def _decode(value):
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def read_weights_by_name(path):
    """{layer name: [numpy arrays in the layer's weight order]} from an HDF5 weights file."""
    path = Path(path)
    if not path.is_file():
        raise NucleiError("weights file not found", path)
    out = {}
    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f
            if "layer_names" in root.attrs:
                for name in (_decode(n) for n in root.attrs["layer_names"]):
                    group = root[name]
                    names = [_decode(n) for n in group.attrs.get("weight_names", [])]
                    if names:
                        out[name] = [np.asarray(group[n]) for n in names]
            elif "layers" in root or "vars" in root:
                raise NucleiError(
                    "is a Keras 3 .weights.h5 file, which stores weights by position under generated "
                    "names, not by layer name; load it with model.load_weights into the same "
                    "architecture, then save_weights_by_name", path)
    except OSError as error:
        raise NucleiError(f"not a readable HDF5 weights file ({error})", path) from None
    if not out:
        raise NucleiError("holds no layer weights in a known layout", path)
    return out


def save_weights_by_name(model, path):
    """Write every weighted leaf layer of ``model`` in the legacy by-name HDF5 layout."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    layers = named_weights(model)
    with h5py.File(tmp, "w") as f:
        f.attrs["layer_names"] = [n.encode("utf8") for n in layers]
        for name, layer in layers.items():
            group = f.create_group(name)
            weight_names = []
            for k, variable in enumerate(layer.weights):
                weight_name = f"{name}/{variable.name}_{k}"
                group.create_dataset(weight_name, data=np.asarray(variable.numpy()))
                weight_names.append(weight_name.encode("utf8"))
            group.attrs["weight_names"] = weight_names
    tmp.replace(path)


def load_weights_by_name(model, path, exclude=HEAD_LAYERS, skip_mismatch=False):
    """Load a weights file into ``model`` matching layers by name.

    Args:
        model: any Keras model (nested models are searched).
        path: HDF5 weights file (see the module doc for layouts).
        exclude: regex of layer names not to load (default: the class-dependent heads),
            or None.
        skip_mismatch: skip layers whose weight shapes differ instead of raising.

    Returns:
        dict with lists 'loaded', 'skipped' (excluded or mismatched), 'missing'
        (model layers with weights the file lacks).
    """
    stored = read_weights_by_name(path)
    layers = named_weights(model)
    pattern = re.compile(exclude) if exclude else None
    report = {"loaded": [], "skipped": [], "missing": []}
    for name, layer in layers.items():
        if pattern is not None and pattern.search(name):
            report["skipped"].append(name)
            continue
        if name not in stored:
            report["missing"].append(name)
            continue
        values = stored[name]
        shapes = [tuple(v.shape) for v in layer.weights]
        if len(values) != len(shapes) or any(tuple(v.shape) != s for v, s in zip(values, shapes)):
            if skip_mismatch:
                report["skipped"].append(name)
                continue
            raise NucleiError(f"layer {name!r}: file has shapes {[v.shape for v in values]}, "
                              f"model has {shapes}", path)
        for variable, value in zip(layer.weights, values):
            variable.assign(value)
        report["loaded"].append(name)
    if not report["loaded"]:
        raise NucleiError("no layer of the model matched a layer name in the file", path)
    return report
