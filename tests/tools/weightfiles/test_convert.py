"""tools.convert_weights: torch-free checkpoint reading and the MobileNetV2 conversion.

The checkpoints here are written by this file in torch's own formats (zip and legacy)
from numpy, so every assertion runs without torch. Where torch happens to be
importable, the same tests also check that torch reads these files identically and
that torch's conv/BN semantics equal the numpy reference used below.
"""

import collections
import io
import pickle
import types
import zipfile

import numpy as np
import pytest

from preprocessing.errors import NucleiError
from tools.convert_weights import main
from tools.weightfiles.convert import mobilenetv2_keras_weights, read_torch_checkpoint

try:  # optional extra checks only; never required
    import torch
except ImportError:  # pragma: no cover - CI has no torch
    torch = None


# --- a writer for torch's checkpoint formats, from numpy ----------------------------------------

def _rebuild_tensor_v2():
    """Stand-in pickled under torch's name; never called here."""


class FloatStorage:
    pass


class LongStorage:
    pass


class HalfStorage:
    pass


STORAGE_CLASSES = {np.dtype(np.float32): FloatStorage, np.dtype(np.int64): LongStorage,
                   np.dtype(np.float16): HalfStorage}
TORCH_NAMES = {_rebuild_tensor_v2: ("torch._utils", "_rebuild_tensor_v2"), FloatStorage: ("torch", "FloatStorage"),
               LongStorage: ("torch", "LongStorage"), HalfStorage: ("torch", "HalfStorage")}


class StorageRef:
    def __init__(self, key, data, legacy):
        self.key, self.data, self.legacy = key, data, legacy

    def pid(self):
        base = ("storage", STORAGE_CLASSES[self.data.dtype], self.key, "cpu", int(self.data.size))
        return base + (None,) if self.legacy else base


class TensorRef:
    """A view (offset, size, stride in elements) into a StorageRef; pickles like a torch tensor."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __reduce__(self):
        return _rebuild_tensor_v2, (self.storage, self.offset, tuple(self.size), tuple(self.stride), False,
                                    collections.OrderedDict())


class TorchPickler(pickle._Pickler):
    """Protocol-2 pickler that writes the stand-ins above under torch's global names."""

    def __init__(self, file):
        super().__init__(file, protocol=2)

    dispatch = dict(pickle._Pickler.dispatch)  # functions dispatch straight to the base save_global

    def persistent_id(self, obj):
        return obj.pid() if isinstance(obj, StorageRef) else None

    def save_global(self, obj, name=None):
        if obj in TORCH_NAMES:
            module, qualname = TORCH_NAMES[obj]
            self.write(pickle.GLOBAL + f"{module}\n{qualname}\n".encode())
            self.memoize(obj)
        else:
            super().save_global(obj, name)

    dispatch[types.FunctionType] = save_global


def _to_refs(state, legacy):
    """{name: array or TensorRef} -> ({name: TensorRef}, [StorageRef]); arrays get their own storage."""
    refs, storages = collections.OrderedDict(), []
    for name, value in state.items():
        if isinstance(value, TensorRef):
            ref = value
        else:
            value = np.array(value, order="C")  # (ascontiguousarray would make a 0-d array 1-d)
            storage = StorageRef(str(len(storages) + 100), value.reshape(-1), legacy)
            ref = TensorRef(storage, 0, value.shape, [s // value.itemsize for s in value.strides])
        if all(ref.storage is not s for s in storages):
            storages.append(ref.storage)
        refs[name] = ref
    return refs, storages


def _pickle(obj):
    buffer = io.BytesIO()
    TorchPickler(buffer).dump(obj)
    return buffer.getvalue()


def write_zip_checkpoint(path, state):
    """torch.save's zip format: archive/data.pkl + archive/data/<key> + byteorder + version."""
    refs, storages = _to_refs(state, legacy=False)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", _pickle(refs))
        archive.writestr("archive/byteorder", "little")
        for storage in storages:
            archive.writestr(f"archive/data/{storage.key}", storage.data.astype(storage.data.dtype.newbyteorder("<"))
                             .tobytes())
        archive.writestr("archive/version", "3\n")


def write_legacy_checkpoint(path, state):
    """torch < 1.6 format: magic, protocol, sys_info, object, keys pickles, then count + bytes per storage."""
    refs, storages = _to_refs(state, legacy=True)
    with open(path, "wb") as f:
        for header in (0x1950A86A20F9469CFC6C, 1001,
                       {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}):
            pickle.dump(header, f, protocol=2)
        f.write(_pickle(refs))
        pickle.dump([s.key for s in storages], f, protocol=2)
        for storage in storages:
            f.write(np.array([storage.data.size], "<i8").tobytes())
            f.write(storage.data.astype(storage.data.dtype.newbyteorder("<")).tobytes())


WRITERS = {"zip": write_zip_checkpoint, "legacy": write_legacy_checkpoint}


# --- reader ---------------------------------------------------------------------------------------

def _mixed_state(legacy):
    """Contiguous, transposed, offset and shared-storage views, three dtypes."""
    rng = np.random.default_rng(0)
    shared = StorageRef("shared", np.arange(20, dtype=np.float32), legacy)
    return collections.OrderedDict([
        ("conv.weight", rng.normal(size=(4, 3, 3, 3)).astype(np.float32)),
        ("bn.num_batches_tracked", np.array(7, np.int64)),
        ("half", rng.normal(size=(5,)).astype(np.float16)),
        ("transposed", TensorRef(shared, 0, [5, 4], [1, 5])),  # arange(20).reshape(4, 5).T
        ("offset", TensorRef(shared, 3, [2, 3], [3, 1])),
        ("empty", np.zeros((0, 3), np.float32)),
    ])


def _expected(state):
    shared = np.arange(20, dtype=np.float32)
    out = {k: v for k, v in state.items() if isinstance(v, np.ndarray)}
    out["transposed"] = shared.reshape(4, 5).T
    out["offset"] = shared[3:9].reshape(2, 3)
    return out


@pytest.mark.parametrize("kind", ["zip", "legacy"])
def test_reader_returns_every_tensor_exactly(tmp_path, kind):
    state = _mixed_state(kind == "legacy")
    path = tmp_path / f"{kind}.pth"
    WRITERS[kind](path, state)
    read = read_torch_checkpoint(path)
    expected = _expected(state)
    assert list(read) == list(state)
    for name, want in expected.items():
        assert read[name].dtype == want.dtype and read[name].shape == want.shape, name
        np.testing.assert_array_equal(read[name], want, err_msg=name)
    if torch is not None:  # the writer really produces torch's format
        loaded = torch.load(path, weights_only=True)
        for name, want in expected.items():
            np.testing.assert_array_equal(loaded[name].numpy(), want, err_msg=name)


def test_reader_refuses_globals_a_state_dict_does_not_need(tmp_path):
    marker = tmp_path / "ran"
    evil = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()
    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", evil)
    with pytest.raises(NucleiError, match="os.system"):
        read_torch_checkpoint(path)
    assert not marker.exists()


def test_reader_rejects_a_view_past_its_storage(tmp_path):
    storage = StorageRef("0", np.zeros(6, np.float32), False)
    path = tmp_path / "bad.pth"
    write_zip_checkpoint(path, {"w": TensorRef(storage, 2, [2, 3], [3, 1])})
    with pytest.raises(NucleiError, match="runs past its storage"):
        read_torch_checkpoint(path)


def test_reader_errors_name_the_file(tmp_path):
    with pytest.raises(NucleiError, match="not found"):
        read_torch_checkpoint(tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(NucleiError, match="junk.pth"):
        read_torch_checkpoint(junk)


# --- MobileNetV2 conversion ------------------------------------------------------------------------

# torchvision.models.mobilenet_v2's inverted-residual settings (t, c, n, s).
TORCHVISION_SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                        (6, 160, 3, 2), (6, 320, 1, 1)]


def torchvision_mobilenetv2_state(seed=0):
    """A state_dict with torchvision's MobileNetV2 keys and shapes, random weights, float32."""
    rng = np.random.default_rng(seed)
    state = collections.OrderedDict()

    def conv(key, out, per_group_in, k):
        std = np.sqrt(2.0 / (per_group_in * k * k))
        state[key + ".weight"] = rng.normal(0, std, (out, per_group_in, k, k)).astype(np.float32)

    def bn(key, c):
        state[key + ".weight"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
        state[key + ".bias"] = rng.normal(0, 0.1, c).astype(np.float32)
        state[key + ".running_mean"] = rng.normal(0, 0.1, c).astype(np.float32)
        state[key + ".running_var"] = rng.uniform(0.5, 2.0, c).astype(np.float32)
        state[key + ".num_batches_tracked"] = np.array(0, np.int64)

    conv("features.0.0", 32, 3, 3)
    bn("features.0.1", 32)
    channels, index = 32, 1
    for t, c, n, _s in TORCHVISION_SETTINGS:
        for _ in range(n):
            hidden, prefix, k = channels * t, f"features.{index}.conv", 0
            if t != 1:
                conv(f"{prefix}.0.0", hidden, channels, 1)
                bn(f"{prefix}.0.1", hidden)
                k = 1
            conv(f"{prefix}.{k}.0", hidden, 1, 3)
            bn(f"{prefix}.{k}.1", hidden)
            conv(f"{prefix}.{k + 1}", c, hidden, 1)
            bn(f"{prefix}.{k + 2}", c)
            channels, index = c, index + 1
    conv("features.18.0", 1280, channels, 1)
    bn("features.18.1", 1280)
    state["classifier.1.weight"] = rng.normal(0, 0.01, (1000, 1280)).astype(np.float32)
    state["classifier.1.bias"] = np.zeros(1000, np.float32)
    return state


def _np_conv(x, w, stride=1, depthwise=False):
    """torch conv2d semantics in numpy: x [N, C, H, W], w [O, C or 1, k, k], padding k//2 all round."""
    k = w.shape[-1]
    x = np.pad(x, ((0, 0), (0, 0), (k // 2, k // 2), (k // 2, k // 2)))
    height, width = (x.shape[2] - k) // stride + 1, (x.shape[3] - k) // stride + 1
    out = np.zeros((x.shape[0], w.shape[0], height, width))
    for i in range(k):
        for j in range(k):
            patch = x[:, :, i:i + stride * (height - 1) + 1:stride, j:j + stride * (width - 1) + 1:stride]
            if depthwise:
                out += patch * w[:, 0, i, j][None, :, None, None]
            else:
                out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    return out


def _np_bn(x, state, key):
    """torch BatchNorm2d in eval mode, eps 1e-5."""
    g, b, m, v = (state[f"{key}.{n}"][None, :, None, None] for n in ("weight", "bias", "running_mean", "running_var"))
    return (x - m) / np.sqrt(v + 1e-5) * g + b


def numpy_reference(state, images):
    """torchvision MobileNetV2 features in float64 numpy: images [N, H, W, 3] -> {tap: [N, h, w, C]}."""
    relu6 = lambda t: np.clip(t, 0, 6)  # noqa: E731
    x = images.transpose(0, 3, 1, 2).astype(np.float64)
    x = relu6(_np_bn(_np_conv(x, state["features.0.0.weight"], 2), state, "features.0.1"))
    taps, channels, index = {}, 32, 1
    for t, c, n, s in TORCHVISION_SETTINGS:
        for repeat in range(n):
            stride, prefix, inputs, k = (s if repeat == 0 else 1), f"features.{index}.conv", x, 0
            if t != 1:
                x = relu6(_np_bn(_np_conv(x, state[f"{prefix}.0.0.weight"]), state, f"{prefix}.0.1"))
                taps[f"block_{index - 1}_expand_relu"] = x
                k = 1
            x = relu6(_np_bn(_np_conv(x, state[f"{prefix}.{k}.0.weight"], stride, depthwise=True), state,
                             f"{prefix}.{k}.1"))
            x = _np_bn(_np_conv(x, state[f"{prefix}.{k + 1}.weight"]), state, f"{prefix}.{k + 2}")
            if stride == 1 and channels == c:
                x = x + inputs
            channels, index = c, index + 1
    taps["out_relu"] = relu6(_np_bn(_np_conv(x, state["features.18.0.weight"]), state, "features.18.1"))
    return {name: tap.transpose(0, 2, 3, 1) for name, tap in taps.items()}


TAPS = ("block_1_expand_relu", "block_3_expand_relu", "block_6_expand_relu", "block_13_expand_relu", "out_relu")


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """(state_dict, converted weights path) for a random torchvision-shaped checkpoint."""
    folder = tmp_path_factory.mktemp("mobilenetv2")
    state = torchvision_mobilenetv2_state()
    write_legacy_checkpoint(folder / "mobilenet_v2.pth", state)  # the format torchvision's file uses
    out = folder / "mobilenetv2.weights.h5"
    assert main(["mobilenetv2", "--checkpoint", str(folder / "mobilenet_v2.pth"), "--out", str(out)]) == 0
    return state, out


def test_converted_backbone_equals_the_numpy_reference(converted):
    import keras

    from preprocessing.mobilenetv2 import build_mobilenetv2_backbone, load_encoder_weights

    state, path = converted
    backbone = load_encoder_weights(build_mobilenetv2_backbone(), path)
    features = keras.Model(backbone.inputs, [backbone.get_layer(n).output for n in TAPS])
    images = np.random.default_rng(1).normal(size=(2, 64, 64, 3)).astype(np.float32)
    got = dict(zip(TAPS, features.predict(images, verbose=0)))
    want = numpy_reference(state, images)
    for name in TAPS:
        assert got[name].shape == want[name].shape, name
        np.testing.assert_allclose(got[name], want[name], atol=2e-4, rtol=0, err_msg=name)
    assert got["out_relu"].shape == (2, 2, 2, 1280) and np.abs(want["out_relu"]).max() > 0.1
    if torch is not None:  # torch's own conv/BN give the numpy reference's numbers
        import torch.nn.functional as F

        x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
        w = {k: torch.from_numpy(v) for k, v in state.items()}
        first = F.batch_norm(F.conv2d(x, w["features.0.0.weight"], stride=2, padding=1), w["features.0.1.running_mean"],
                             w["features.0.1.running_var"], w["features.0.1.weight"], w["features.0.1.bias"], eps=1e-5)
        reference = _np_bn(_np_conv(images.transpose(0, 3, 1, 2), state["features.0.0.weight"], 2), state,
                           "features.0.1")
        np.testing.assert_allclose(first.numpy(), reference, atol=1e-4)


def test_converted_kernels_are_the_checkpoint_transposed(converted):
    from preprocessing.mobilenetv2 import read_layer_weights

    state, path = converted
    layers, attrs = read_layer_weights(path)
    assert attrs["padding"] == "torch" and attrs["source"] == "mobilenet_v2.pth"
    np.testing.assert_array_equal(layers["Conv1"]["kernel"], state["features.0.0.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(layers["block_5_depthwise"]["kernel"],
                                  state["features.6.conv.1.0.weight"].transpose(2, 3, 0, 1))
    bn = layers["block_16_project_BN"]
    assert list(bn) == ["gamma", "beta", "moving_mean", "moving_variance"]
    np.testing.assert_array_equal(bn["moving_variance"], state["features.17.conv.3.running_var"])
    assert not any(name.startswith("predictions") for name in layers)


def test_converter_rejects_other_networks(tmp_path):
    state = torchvision_mobilenetv2_state()
    del state["features.4.conv.1.0.weight"]
    with pytest.raises(NucleiError, match="features.4.conv.1.0.weight"):
        mobilenetv2_keras_weights(state)
    state = torchvision_mobilenetv2_state()
    state["features.19.0.weight"] = np.zeros((1, 1, 1, 1), np.float32)
    with pytest.raises(NucleiError, match="features.19.0.weight"):
        mobilenetv2_keras_weights(state)
    assert main(["mobilenetv2", "--checkpoint", str(tmp_path / "none.pth"), "--out", str(tmp_path / "o.h5")]) == 2
