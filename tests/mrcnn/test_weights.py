import keras
import numpy as np
import pytest

from mrcnn.backbone import build_backbone
from mrcnn.config import Config
from mrcnn.weights import load_weights_by_name, read_weights_by_name, save_weights_by_name
from preprocessing.errors import NucleiError


def _randomise(model, seed):
    rng = np.random.default_rng(seed)
    for v in model.weights:
        v.assign(rng.normal(size=v.shape).astype(np.float32))


@pytest.fixture(scope="module")
def resnet_pair(tmp_path_factory):
    app = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(None, None, 3))
    _randomise(app, 1)
    folder = tmp_path_factory.mktemp("w")
    save_weights_by_name(app, folder / "resnet50_legacy.h5")
    app.save_weights(str(folder / "resnet50.weights.h5"))
    return app, folder


def test_keras3_weights_file_is_refused_with_a_reason(resnet_pair):
    _, folder = resnet_pair
    with pytest.raises(NucleiError, match="by position"):
        read_weights_by_name(folder / "resnet50.weights.h5")


@pytest.mark.parametrize("filename", ["resnet50_legacy.h5"])
def test_resnet50_weights_load_by_name_into_backbone(resnet_pair, filename):
    app, folder = resnet_pair
    backbone = build_backbone(Config(BACKBONE="resnet50", TOP_DOWN_PYRAMID_SIZE=8))
    report = load_weights_by_name(backbone, folder / filename)
    assert len(report["loaded"]) == len([l for l in app.layers if l.weights])
    assert all(name.startswith("fpn_") for name in report["missing"])
    for layer in app.layers:
        if layer.weights:
            for a, b in zip(layer.weights, backbone.get_layer(layer.name).weights):
                np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_exclude_and_mismatch(tmp_path):
    config = Config(BACKBONE="tiny", TOP_DOWN_PYRAMID_SIZE=8)
    a = build_backbone(config)
    _randomise(a, 2)
    save_weights_by_name(a, tmp_path / "a.h5")
    assert "fpn_p2" in read_weights_by_name(tmp_path / "a.h5")
    b = build_backbone(config)
    report = load_weights_by_name(b, tmp_path / "a.h5", exclude=r"^fpn_")
    assert "fpn_p2" in report["skipped"]
    np.testing.assert_array_equal(a.get_layer("tiny_c3").weights[0].numpy(), b.get_layer("tiny_c3").weights[0].numpy())
    assert not np.array_equal(a.get_layer("fpn_p2").weights[0].numpy(), b.get_layer("fpn_p2").weights[0].numpy())
    c = build_backbone(Config(BACKBONE="tiny", TOP_DOWN_PYRAMID_SIZE=16))
    with pytest.raises(NucleiError, match="fpn_"):
        load_weights_by_name(c, tmp_path / "a.h5")
    assert "fpn_p2" in load_weights_by_name(c, tmp_path / "a.h5", skip_mismatch=True)["skipped"]


def test_missing_file(tmp_path):
    with pytest.raises(NucleiError, match="not found"):
        read_weights_by_name(tmp_path / "none.h5")
