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


def test_distance_head_adds_a_sigmoid_channel_and_its_loss():
    model = build_unet(UNetConfig(distance_head=True, **TINY))
    out = np.asarray(model.predict_on_batch(np.random.rand(2, 32, 48, 3).astype(np.float32)))
    assert out.shape == (2, 32, 48, 4)
    np.testing.assert_allclose(out[..., :3].sum(-1), 1.0, atol=1e-5)
    assert (out[..., 3] > 0).all() and (out[..., 3] < 1).all()

    rng = np.random.default_rng(0)
    classes = rng.integers(0, 3, (2, 8, 8))
    distance = rng.random((2, 8, 8)).astype(np.float32)
    y_true = np.stack([classes.astype(np.float32), distance], -1)
    probs = np.eye(3, dtype=np.float32)[classes] * 0.98 + 0.01
    right = np.concatenate([probs, distance[..., None]], -1)
    wrong = np.concatenate([probs, 1.0 - distance[..., None]], -1)
    loss = UNetLoss(distance_weight=1.0)
    assert float(loss(y_true, right)) < float(loss(y_true, wrong))
    # without the distance weight only the class part counts: the same as the 3-channel loss
    np.testing.assert_allclose(float(UNetLoss(distance_weight=0.0)(y_true, wrong)),
                               float(UNetLoss()(classes, probs)), rtol=1e-5)


def test_distance_head_learns_the_distance_map():
    import keras

    from unet.losses import loss_for
    from unet.targets import training_target

    config = UNetConfig(distance_head=True, base_filters=8, max_filters=16, depth=2, dropout=0.0,
                        bottleneck_dilations=(1,), crop_size=32)
    yy, xx = np.mgrid[:32, :48]
    labels = np.zeros((4, 32, 48), np.int32)
    for k in range(4):
        labels[k][(yy - 16) ** 2 + (xx - 14 - k) ** 2 <= 64 + 8 * k] = 1
        labels[k][((yy - 15 + k) ** 2 + (xx - 30) ** 2 <= 81) & (labels[k] == 0)] = 2
    x = np.repeat((labels > 0)[..., None].astype(np.float32), 3, -1) * 0.5 + 0.25
    y = np.stack([training_target(lab, config) for lab in labels])
    keras.utils.set_random_seed(0)
    model = build_unet(config)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss_for(config))

    def error_and_correlation():
        predicted = np.asarray(model.predict_on_batch(x))[..., 3]
        inside = labels > 0
        return (float(np.mean((predicted - y[..., 1]) ** 2)),
                np.corrcoef(predicted[inside], y[..., 1][inside])[0, 1])

    error_before, _ = error_and_correlation()
    # 160 epochs: at 80 the error had just fallen to 0.42x (seed 0), too close to call
    model.fit(x, y, batch_size=4, epochs=160, verbose=0)
    error, correlation = error_and_correlation()
    # flat discs: the head must infer the distance from the shape alone
    assert error < 0.3 * error_before and correlation > 0.75, (error_before, error, correlation)
