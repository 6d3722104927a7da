import keras
import numpy as np
import pytest
from keras import ops

from mrcnn.backbone import build_backbone, layer_stage
from mrcnn.config import Config, TinyConfig


def test_tiny_backbone_shapes():
    model = build_backbone(TinyConfig())
    outs = model(np.zeros((1, 128, 192, 3), np.float32))
    assert [tuple(o.shape) for o in outs] == [(1, 32, 48, 32), (1, 16, 24, 32), (1, 8, 12, 32),
                                              (1, 4, 6, 32), (1, 2, 3, 32)]


def test_mobilenetv2_backbone_shapes():
    config = Config(BACKBONE="mobilenetv2", BACKBONE_ALPHA=0.35, TOP_DOWN_PYRAMID_SIZE=16)
    model = build_backbone(config)
    outs = model(np.zeros((1, 64, 128, 3), np.float32))
    assert [tuple(o.shape)[1:3] for o in outs] == [(16, 32), (8, 16), (4, 8), (2, 4), (1, 2)]
    assert layer_stage("mobilenetv2", "block_13_expand") == 5
    assert layer_stage("mobilenetv2", "block_4_add") == 3
    assert layer_stage("mobilenetv2", "fpn_p2") is None


def test_resnet_stage_names():
    assert layer_stage("resnet50", "conv4_block2_out") == 4
    assert layer_stage("resnet101", "conv1_conv") == 1


# --- pretrained MobileNetV2 (BACKBONE_WEIGHTS) -------------------------------------------

WEIGHTS = __import__("pathlib").Path(__file__).resolve().parents[2] / "weights" / "mobilenetv2_imagenet.weights.h5"


def _pretrained_config(**overrides):
    return TinyConfig(**{"BACKBONE": "mobilenetv2", "BACKBONE_ALPHA": 1.0, "BACKBONE_WEIGHTS": str(WEIGHTS),
                         "NORMALIZE": "imagenet", **overrides})


@pytest.mark.skipif(not WEIGHTS.is_file(), reason="weights/mobilenetv2_imagenet.weights.h5 absent")
def test_backbone_weights_are_loaded_into_flat_layers():
    from preprocessing.mobilenetv2 import read_layer_weights

    stored, _ = read_layer_weights(WEIGHTS)
    loaded = build_backbone(_pretrained_config())
    fresh = build_backbone(_pretrained_config(BACKBONE_WEIGHTS=None))
    kernel = loaded.get_layer("Conv1").get_weights()[0]
    np.testing.assert_array_equal(kernel, stored["Conv1"]["kernel"])
    assert not np.allclose(fresh.get_layer("Conv1").get_weights()[0], kernel)
    np.testing.assert_array_equal(loaded.get_layer("block_16_project_BN").get_weights()[2],
                                  stored["block_16_project_BN"]["moving_mean"])
    # flat: the stages freeze backbone layers by name, so none may hide in a nested model
    assert not any(isinstance(layer, keras.Model) for layer in loaded.layers)
    outs = loaded(np.zeros((1, 64, 128, 3), np.float32))
    assert [tuple(o.shape)[1:3] for o in outs] == [(16, 32), (8, 16), (4, 8), (2, 4), (1, 2)]


def test_backbone_weights_need_mobilenetv2_alpha_1():
    from preprocessing.errors import NucleiError

    with pytest.raises(NucleiError, match="BACKBONE_WEIGHTS"):
        _pretrained_config(BACKBONE_ALPHA=0.35)
    with pytest.raises(NucleiError, match="BACKBONE_WEIGHTS"):
        TinyConfig(BACKBONE_WEIGHTS=str(WEIGHTS))  # backbone 'tiny'


def test_missing_backbone_weights_file_is_a_clear_error(tmp_path):
    from preprocessing.errors import NucleiError

    with pytest.raises(NucleiError, match="not found"):
        build_backbone(_pretrained_config(BACKBONE_WEIGHTS=str(tmp_path / "absent.weights.h5")))


def test_predictor_ignores_missing_backbone_weights(tmp_path):
    """A trained model holds its backbone: prediction must not need the ImageNet file."""
    from mrcnn.model import MaskRCNN
    from mrcnn.predictor import MrcnnPredictor

    model = MaskRCNN(_pretrained_config(BACKBONE_WEIGHTS=None))
    path = tmp_path / "m.weights.h5"
    model.save_model(path)
    config_path = tmp_path / "m.json"
    data = __import__("json").loads(config_path.read_text())
    data["BACKBONE_WEIGHTS"] = str(tmp_path / "absent.weights.h5")  # as on a user's machine
    config_path.write_text(__import__("json").dumps(data))
    predictor = MrcnnPredictor.from_path(path)
    assert predictor.config.BACKBONE_WEIGHTS is None
    np.testing.assert_array_equal(predictor.model.backbone.get_layer("Conv1").get_weights()[0],
                                  model.backbone.get_layer("Conv1").get_weights()[0])
    labels, scores = predictor.predict(np.zeros((40, 50, 3), np.uint8))
    assert labels.shape == (40, 50) and labels.dtype == np.int32


def test_reloaded_pretrained_model_computes_exactly_what_was_trained(tmp_path):
    """Rebuilt without the ImageNet file (as predictors do), the backbone keeps its layout:
    the same input gives the same features (Keras's own MobileNetV2 pads differently and
    would shift every feature map by a few pixels)."""
    from mrcnn.model import MaskRCNN, load_model

    model = MaskRCNN(_pretrained_config())
    path = tmp_path / "m.weights.h5"
    model.save_model(path)
    reloaded = load_model(path)
    assert reloaded.config.BACKBONE_WEIGHTS is None
    image = np.random.default_rng(0).normal(size=(1, 128, 128, 3)).astype(np.float32)
    for before, after in zip(model.backbone(image), reloaded.backbone(image)):
        np.testing.assert_allclose(ops.convert_to_numpy(after), ops.convert_to_numpy(before), atol=1e-5)
