import numpy as np

from unet.config import UNetConfig
from unet.losses import UNetLoss
from unet.model import build_unet

TINY = dict(base_filters=4, max_filters=16, depth=2, crop_size=32, tile_size=64, tile_overlap=8,
            bottleneck_dilations=(1, 2))


def test_output_is_a_softmax_of_the_input_size():
    model = build_unet(UNetConfig(**TINY))
    out = np.asarray(model.predict_on_batch(np.random.rand(2, 32, 48, 3).astype(np.float32)))
    assert out.shape == (2, 32, 48, 3)
    np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-5)


def test_clahe_input_has_two_channels():
    model = build_unet(UNetConfig(normalization="clahe", **TINY))
    assert model.input_shape[-1] == 2


def test_loss_is_lower_for_the_right_answer():
    classes = np.random.default_rng(0).integers(0, 3, (2, 8, 8))
    right = np.eye(3, dtype=np.float32)[classes] * 0.98 + 0.01
    wrong = np.eye(3, dtype=np.float32)[(classes + 1) % 3] * 0.98 + 0.01
    for gamma in (0.0, 2.0):
        loss = UNetLoss(focal_gamma=gamma)
        assert float(loss(classes, right)) < 0.1 < float(loss(classes, wrong))


def test_mobilenetv2_encoder_loads_imagenet_weights_and_predicts(tmp_path):
    from tests.conftest import ROOT

    weights = ROOT / "weights" / "mobilenetv2_imagenet.weights.h5"
    config = UNetConfig(encoder="mobilenetv2", depth=5, base_filters=8, max_filters=32, crop_size=64,
                        tile_size=256, encoder_weights=str(weights))
    model = build_unet(config)
    out = np.asarray(model.predict_on_batch(np.random.rand(1, 64, 96, 3).astype(np.float32)))
    assert out.shape == (1, 64, 96, 3)
    def first_kernel(m):
        return m.get_layer("mobilenetv2").get_layer("Conv1").get_weights()[0]

    again = build_unet(config)
    fresh = build_unet(UNetConfig(**{**config.to_dict(), "encoder_weights": None}))
    np.testing.assert_array_equal(first_kernel(model), first_kernel(again))  # the file's values, both times
    assert not np.allclose(first_kernel(model), first_kernel(fresh))
