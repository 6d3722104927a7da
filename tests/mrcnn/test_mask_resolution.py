"""56 x 56 masks: the head, the targets from the mini masks, one training step."""

import keras
import numpy as np
import pytest
from keras import ops

from mrcnn.config import Config, TinyConfig
from mrcnn.data import MrcnnDataset, mini_masks
from mrcnn.model import MaskRCNN
from mrcnn.targets import DetectionTargetLayer
from tests.mrcnn.synthetic import disc_samples


def test_56_masks_from_14_or_28_pooled_features():
    assert Config(MASK_SHAPE=(56, 56), MASK_POOL_SIZE=14).MASK_UPSAMPLINGS == 2
    assert Config(MASK_SHAPE=(56, 56), MASK_POOL_SIZE=28).MASK_UPSAMPLINGS == 1


def test_56_mask_targets_follow_the_mini_masks():
    yy, xx = np.mgrid[:100, :100]
    labels = (((yy - 40) ** 2 + (xx - 50) ** 2) <= 30 ** 2).astype(np.int32)  # disc, box (10, 20, 71, 81)
    box = np.array([10, 20, 71, 81], np.float32)
    mini = mini_masks(labels, box[None], [1], (56, 56))
    # RoI: the right half of the nucleus' box; its 56 x 56 target is that half of the disc
    roi = np.array([10, 50.5, 71, 81], np.float32)
    layer = DetectionTargetLayer(4, 1.0, 0.3, (0.1, 0.1, 0.2, 0.2), (56, 56), use_gt=False)
    rois, ids, _, masks = (ops.convert_to_numpy(t) for t in layer(
        [roi[None, None], np.ones((1, 1), np.int32), box[None, None], mini[None]]))
    assert masks.shape == (1, 4, 56, 56) and ids[0, 0] == 1
    centres_y = 10 + (np.arange(56) + 0.5) * 61 / 56
    centres_x = 50.5 + (np.arange(56) + 0.5) * 30.5 / 56
    truth = (centres_y[:, None] - 40) ** 2 + (centres_x[None, :] - 50) ** 2 <= 30 ** 2
    target = masks[0, 0] > 0.5
    assert (target & truth).sum() / (target | truth).sum() > 0.95


@pytest.mark.parametrize("pool", [14, 28])
def test_56_mask_config_builds_and_trains_one_step(pool):
    keras.utils.set_random_seed(0)
    config = TinyConfig(MASK_SHAPE=(56, 56), MASK_POOL_SIZE=pool, MINI_MASK_SHAPE=(56, 56), STEPS_PER_EPOCH=1,
                        DETECTION_MIN_CONFIDENCE=0.0)
    model = MaskRCNN(config)
    assert model.mask_head.upsamplings == (2 if pool == 14 else 1)
    before = model.mask_head.out.kernel.numpy().copy()
    model.compile_for_training(config.LEARNING_RATE, "all")
    history = model.fit(MrcnnDataset(disc_samples(2, seed=0), config, training=True, seed=0), epochs=1,
                        verbose=0).history
    assert np.isfinite(history["loss"][0]) and history["mrcnn_mask_loss"][0] > 0
    assert not np.allclose(model.mask_head.out.kernel.numpy(), before)  # the step reached the mask head
    out = model.infer(np.zeros((1, 64, 64, 3), np.float32))
    assert out["masks"].shape == (1, config.DETECTION_MAX_INSTANCES, 56, 56)


def test_finer_masks_start_as_the_coarse_model_upsampled(tmp_path):
    from mrcnn.model import warm_start_finer_masks
    from preprocessing.errors import NucleiError
    from tools.engine.tasks import MrcnnTask

    keras.utils.set_random_seed(3)
    coarse = MaskRCNN(TinyConfig())
    coarse.save_model(tmp_path / "c.weights.h5")
    config = TinyConfig(MASK_SHAPE=(56, 56))
    fine = MaskRCNN(config)
    report = warm_start_finer_masks(fine, tmp_path / "c.weights.h5")
    extra = range(coarse.config.MASK_UPSAMPLINGS + 1, config.MASK_UPSAMPLINGS + 1)
    assert sorted(report["nearest_upsampling"]) == [f"mrcnn_mask_deconv{k}" for k in extra] and len(extra) >= 1
    pool, channels = config.MASK_POOL_SIZE, coarse.mask_head.conv_layers[0].kernel.shape[2]
    pooled = np.random.default_rng(0).normal(size=(1, 3, pool, pool, channels))
    pooled = pooled.astype(np.float32)
    logits_28 = ops.convert_to_numpy(coarse.mask_head(pooled))
    logits_56 = ops.convert_to_numpy(fine.mask_head(pooled))
    factor = 56 // logits_28.shape[2]
    assert logits_56.shape == (1, 3, 56, 56, 2)
    np.testing.assert_allclose(logits_56, logits_28.repeat(factor, axis=2).repeat(factor, axis=3), rtol=1e-5, atol=1e-5)
    # a random extra upsampling would not: the identity start is what makes the two agree
    assert not np.allclose(ops.convert_to_numpy(MaskRCNN(config).mask_head(pooled)), logits_56, atol=1e-3)
    with pytest.raises(NucleiError, match="finer masks"):
        warm_start_finer_masks(coarse, tmp_path / "c.weights.h5")
    # the training task takes this path when --warm-start meets a coarser model
    again = MaskRCNN(config)
    assert MrcnnTask(config).warm_start_without_heads(again, tmp_path / "c.weights.h5")
    np.testing.assert_allclose(ops.convert_to_numpy(again.mask_head(pooled)), logits_56, atol=1e-6)
    assert not MrcnnTask(TinyConfig()).warm_start_without_heads(MaskRCNN(TinyConfig()), tmp_path / "c.weights.h5")
