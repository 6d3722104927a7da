"""Convert a PyTorch (torchvision) checkpoint into this project's Keras weights, without torch.

The command is ``python -m tools.convert_weights`` (tools/convert_weights.py).

Reading the checkpoint: a ``.pth`` is either torch's zip format (``<dir>/data.pkl`` plus
one file per storage ``<dir>/data/<key>``) or the legacy format (torch < 1.6: five
pickles in a row, then each storage's raw bytes, as torchvision's
``mobilenet_v2-b0353104.pth``). Both are read with a *restricted* unpickler: the only
globals it resolves are ``collections.OrderedDict``, torch's tensor-rebuild functions
and its storage types, each mapped to a numpy stand-in here; anything else (which a
plain state_dict never needs) is refused, so no code from the file runs. Tensors come
back as numpy arrays in torch's layout.

Mapping (torchvision MobileNetV2 -> ``preprocessing.mobilenetv2.build_mobilenetv2_backbone``):
conv weights [out, in, kh, kw] -> Keras kernels [kh, kw, in, out]; depthwise
[channels, 1, kh, kw] -> [kh, kw, channels, 1]; batch norm (weight, bias,
running_mean, running_var) -> (gamma, beta, moving_mean, moving_variance). The
classifier is dropped (the encoder has no top).
"""

import collections
import hashlib
import pickle
import zipfile
from pathlib import Path

import numpy as np

from preprocessing.errors import NucleiError

# torch storage class name -> numpy dtype of its elements (bfloat16 is widened below).
STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": np.uint16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001


# --- numpy stand-ins for the globals a state_dict pickle names -------------------------------

class StorageType:
    """Stand-in for ``torch.FloatStorage`` & co.: the element dtype of a storage."""

    def __init__(self, name):
        self.name = name
        self.dtype = np.dtype(STORAGE_DTYPES[name])


class Storage:
    """A flat buffer of ``numel`` elements; ``data`` is filled once its bytes are read."""

    def __init__(self, storage_type, numel):
        self.type = storage_type
        self.numel = int(numel)
        self.data = None  # np.ndarray [numel] once read


class PendingTensor:
    """A tensor waiting for its storage bytes: view ``size``/``stride`` (elements) at ``offset``."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, int(offset), tuple(size), tuple(stride)

    def materialize(self):
        """np.ndarray of shape ``size`` (a copy; bounds checked, as as_strided does not)."""
        if not isinstance(self.storage, Storage) or self.storage.data is None:
            raise NucleiError("checkpoint tensor refers to a storage that was never stored")
        data = self.storage.data
        if self.offset < 0 or any(s < 0 for s in self.size) or any(s < 0 for s in self.stride) \
                or len(self.size) != len(self.stride):
            raise NucleiError(f"checkpoint tensor has an invalid view {self.size} / {self.stride}")
        if 0 in self.size:
            array = np.zeros(self.size, data.dtype)
        else:
            last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
            if last >= data.size:
                raise NucleiError(f"checkpoint tensor view {self.size} / {self.stride} at {self.offset} "
                                  f"runs past its storage of {data.size} elements")
            base = data[self.offset:]
            array = np.lib.stride_tricks.as_strided(base, self.size, [s * data.itemsize for s in self.stride],
                                                    writeable=False).copy()
        if self.storage.type.name == "BFloat16Storage":  # upper half of a float32
            array = (array.astype(np.uint32) << 16).view(np.float32)
        return array


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    """``torch._utils._rebuild_tensor(_v2)``: requires_grad, hooks and metadata are dropped."""
    return PendingTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *_ignored):
    """``torch._utils._rebuild_parameter``: a Parameter is its tensor here."""
    return data


SAFE_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only ``SAFE_GLOBALS`` and torch storage types.

    ``load_storage(pid_tuple) -> Storage`` answers torch's persistent ids (None: the
    pickle may not have any).
    """

    def __init__(self, file, load_storage=None):
        super().__init__(file)
        self._load_storage = load_storage

    def find_class(self, module, name):
        if (module, name) in SAFE_GLOBALS:
            return SAFE_GLOBALS[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return StorageType(name)
        raise NucleiError(f"checkpoint pickle asks for {module}.{name}, which a plain state_dict never "
                          "needs; refusing to run it")

    def persistent_load(self, pid):
        if self._load_storage is None or not isinstance(pid, tuple) or not pid or pid[0] not in ("storage", b"storage"):
            raise NucleiError(f"checkpoint pickle has an unexpected persistent id {pid!r:.80}")
        return self._load_storage(pid[1:])


def _restricted_load(file, load_storage=None):
    try:
        return RestrictedUnpickler(file, load_storage).load()
    except NucleiError:
        raise
    except Exception as error:  # truncated or corrupt pickle
        raise NucleiError(f"cannot unpickle checkpoint: {type(error).__name__}: {error}") from None


def _materialize(obj):
    """Replace every PendingTensor inside dicts/lists/tuples by its np.ndarray."""
    if isinstance(obj, PendingTensor):
        return obj.materialize()
    if isinstance(obj, dict):
        return collections.OrderedDict((k, _materialize(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialize(v) for v in obj)
    return obj


def _read_zip(path):
    """Torch >= 1.6 format: ``<dir>/data.pkl`` + ``<dir>/data/<key>`` raw storages."""
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise NucleiError("zip checkpoint without exactly one <dir>/data.pkl", path)
        prefix = pickles[0][:-len("data.pkl")]
        names = set(archive.namelist())
        byteorder = "little"
        if prefix + "byteorder" in names:
            byteorder = archive.read(prefix + "byteorder").decode().strip()
        if byteorder not in ("little", "big"):
            raise NucleiError(f"unknown byteorder {byteorder!r}", path)
        storages = {}

        def load_storage(data):
            storage_type, key, _location, numel = data[:4]
            if not isinstance(storage_type, StorageType):
                raise NucleiError(f"storage of unknown type {storage_type!r:.40}", path)
            key = key.decode() if isinstance(key, bytes) else str(key)
            if key not in storages:
                member = f"{prefix}data/{key}"
                if member not in names:
                    raise NucleiError(f"storage {member} missing from the zip", path)
                raw = archive.read(member)
                dtype = storage_type.dtype.newbyteorder("<" if byteorder == "little" else ">")
                if len(raw) % dtype.itemsize:
                    raise NucleiError(f"storage {member} has {len(raw)} bytes, not a whole number of {dtype}", path)
                storage = Storage(storage_type, len(raw) // dtype.itemsize)
                storage.data = np.frombuffer(raw, dtype).astype(storage_type.dtype)
                storages[key] = storage
            return storages[key]

        with archive.open(pickles[0]) as f:
            return _restricted_load(f, load_storage)


def _read_legacy(path):
    """Torch < 1.6 format: magic, protocol, sys_info, object, storage keys pickles, then raw storages.

    Each storage follows the keys pickle in key order as int64 element count + raw elements.
    """
    with open(path, "rb") as f:
        magic = _restricted_load(f)
        if magic != LEGACY_MAGIC:
            raise NucleiError("not a torch checkpoint (neither zip nor legacy magic number)", path)
        protocol = _restricted_load(f)
        if protocol != LEGACY_PROTOCOL:
            raise NucleiError(f"unsupported legacy checkpoint protocol {protocol!r}", path)
        sys_info = _restricted_load(f)
        if not isinstance(sys_info, dict):
            raise NucleiError("legacy checkpoint without its sys_info header", path)
        order = "<" if sys_info.get("little_endian", True) else ">"
        roots, views = {}, {}

        def load_storage(data):
            storage_type, root_key, _location, numel, view = data
            if not isinstance(storage_type, StorageType):
                raise NucleiError(f"storage of unknown type {storage_type!r:.40}", path)
            if root_key not in roots:
                roots[root_key] = Storage(storage_type, numel)
            if view is None:
                return roots[root_key]
            view_key, offset, view_numel = view  # elements of the root storage
            if view_key not in views:
                views[view_key] = (roots[root_key], int(offset), Storage(storage_type, view_numel))
            return views[view_key][2]

        obj = _restricted_load(f, load_storage)
        keys = _restricted_load(f)
        if not isinstance(keys, list):
            raise NucleiError("legacy checkpoint without its list of storage keys", path)
        for key in keys:
            if key not in roots:
                raise NucleiError(f"legacy checkpoint lists storage {key!r} that no tensor uses", path)
            storage = roots[key]
            dtype = storage.type.dtype.newbyteorder(order)
            header = f.read(8)
            if len(header) != 8:
                raise NucleiError("legacy checkpoint truncated in its storages", path)
            numel = int(np.frombuffer(header, np.dtype("i8").newbyteorder(order))[0])
            raw = f.read(numel * dtype.itemsize)
            if numel != storage.numel or len(raw) != numel * dtype.itemsize:
                raise NucleiError(f"legacy storage {key!r}: {numel} elements stored, "
                                  f"{storage.numel} expected, {len(raw)} bytes read", path)
            storage.data = np.frombuffer(raw, dtype).astype(storage.type.dtype)
        for root, offset, view in views.values():
            if root.data is None or offset < 0 or offset + view.numel > root.numel:
                raise NucleiError("legacy checkpoint has a storage view outside its storage", path)
            view.data = root.data[offset:offset + view.numel]
    return obj


def read_torch_checkpoint(path):
    """Read a torch ``state_dict`` checkpoint without torch: {name: np.ndarray in torch layout}.

    Accepts the zip format and the legacy (torch < 1.6) format; anything but nested
    dicts/lists of tensors and plain values is refused (NucleiError).
    """
    path = Path(path)
    if not path.is_file():
        raise NucleiError("checkpoint not found", path)
    try:
        obj = _materialize(_read_zip(path) if zipfile.is_zipfile(path) else _read_legacy(path))
    except NucleiError as error:
        if error.path is None:
            raise NucleiError(str(error), path) from None
        raise
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise NucleiError(f"checkpoint holds a {type(obj).__name__}, not a state_dict", path)
    return obj


# --- torchvision MobileNetV2 -> Keras layer names --------------------------------------------

def _conv(weight):
    """torch conv weight [out, in, kh, kw] -> Keras kernel [kh, kw, in, out]."""
    return np.ascontiguousarray(weight.transpose(2, 3, 1, 0))


def _depthwise(weight):
    """torch depthwise weight [channels, 1, kh, kw] -> Keras depthwise kernel [kh, kw, channels, 1]."""
    return np.ascontiguousarray(weight.transpose(2, 3, 0, 1))


def mobilenetv2_layer_map():
    """[(Keras layer name, torch module prefix, kind)] with kind 'conv', 'depthwise' or 'bn'."""
    entries = [("Conv1", "features.0.0", "conv"), ("bn_Conv1", "features.0.1", "bn"),
               ("expanded_conv_depthwise", "features.1.conv.0.0", "depthwise"),
               ("expanded_conv_depthwise_BN", "features.1.conv.0.1", "bn"),
               ("expanded_conv_project", "features.1.conv.1", "conv"),
               ("expanded_conv_project_BN", "features.1.conv.2", "bn")]
    for block in range(1, 17):
        torch_prefix, keras_prefix = f"features.{block + 1}.conv", f"block_{block}_"
        entries += [(keras_prefix + "expand", f"{torch_prefix}.0.0", "conv"),
                    (keras_prefix + "expand_BN", f"{torch_prefix}.0.1", "bn"),
                    (keras_prefix + "depthwise", f"{torch_prefix}.1.0", "depthwise"),
                    (keras_prefix + "depthwise_BN", f"{torch_prefix}.1.1", "bn"),
                    (keras_prefix + "project", f"{torch_prefix}.2", "conv"),
                    (keras_prefix + "project_BN", f"{torch_prefix}.3", "bn")]
    entries += [("Conv_1", "features.18.0", "conv"), ("Conv_1_bn", "features.18.1", "bn")]
    return entries


def mobilenetv2_keras_weights(state):
    """torchvision MobileNetV2 state_dict -> {Keras layer name: [arrays in layer.weights order]}.

    Raises NucleiError on a missing tensor or a tensor the mapping does not use
    (other than the classifier and BN's num_batches_tracked).
    """
    used, out = set(), {}

    def take(key):
        if key not in state:
            raise NucleiError(f"checkpoint has no {key!r}: not a torchvision MobileNetV2 state_dict")
        used.add(key)
        return np.asarray(state[key], np.float32)

    for layer, prefix, kind in mobilenetv2_layer_map():
        if kind == "conv":
            out[layer] = [_conv(take(prefix + ".weight"))]
        elif kind == "depthwise":
            out[layer] = [_depthwise(take(prefix + ".weight"))]
        else:
            out[layer] = [take(f"{prefix}.{name}") for name in ("weight", "bias", "running_mean", "running_var")]
    unused = [k for k in state if k not in used and not k.startswith("classifier.")
              and not k.endswith(".num_batches_tracked")]
    if unused:
        raise NucleiError(f"checkpoint has tensors a MobileNetV2 does not: {unused[:5]}")
    return out


def convert_mobilenetv2(checkpoint, out):
    """Read ``checkpoint``, fit it into build_mobilenetv2_backbone() and write ``out`` (named layers)."""
    from preprocessing.mobilenetv2 import IMAGENET_MEAN, IMAGENET_STD, build_mobilenetv2_backbone, save_layer_weights

    checkpoint = Path(checkpoint)
    weights = mobilenetv2_keras_weights(read_torch_checkpoint(checkpoint))
    model = build_mobilenetv2_backbone()
    for name, arrays in weights.items():
        layer = model.get_layer(name)
        shapes = [tuple(v.shape) for v in layer.weights]
        if shapes != [a.shape for a in arrays]:
            raise NucleiError(f"{name}: checkpoint gives {[a.shape for a in arrays]}, the model needs {shapes}",
                              checkpoint)
        layer.set_weights(arrays)
    missing = [layer.name for layer in model.layers if layer.weights and layer.name not in weights]
    assert not missing, missing
    attrs = {
        "architecture": "MobileNetV2 alpha 1.0, no top (preprocessing.mobilenetv2.build_mobilenetv2_backbone)",
        "source": checkpoint.name,
        "source_sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
        "padding": "torch",
        "bn_epsilon": 1e-5,
        "input": f"RGB in [0,1], minus mean {list(IMAGENET_MEAN)}, over std {list(IMAGENET_STD)}",
        "converter": "python -m tools.convert_weights mobilenetv2",
    }
    save_layer_weights(model, out, attrs)
    return model
