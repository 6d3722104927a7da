"""The pipeline's memory budget: tiles and batches follow InferenceParams.max_memory_mb, for both models."""

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from tools.inference.params import InferenceParams
from tools.inference.pipeline import MB, DenseModel, InferencePipeline, InstanceModel

WEIGHTS = Path(__file__).resolve().parents[3] / "weights"


class _Config:
    multiple, tile_size, tile_overlap = 16, 1024, 64


class _PointwiseDense:
    """A stand-in U-Net: per-pixel softmax, records batch shapes; claims the shipped U-Net's memory."""

    config = _Config()
    activation_bytes_per_pixel = 1200.0
    resident_mb = 250.0

    def __init__(self):
        self.shapes = []

    def prepare(self, image):
        return image.astype(np.float32) / 255

    def predict_batch(self, batch):
        self.shapes.append(batch.shape)
        logits = np.stack([batch[..., 0] * 3, batch[..., 1], 1 - batch[..., 0]], -1)
        e = np.exp(logits - logits.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    def decode(self, probabilities, thresholds=None):
        labels, n = ndimage.label(probabilities[..., 0] > 0.5)
        return labels.astype(np.int32), np.ones(n, np.float32)


class _ThresholdInstances:
    activation_bytes_per_pixel = 250.0
    resident_mb = 850.0

    def __init__(self):
        self.shapes = []

    def predict(self, image):
        self.shapes.append(image.shape[:2])
        labels, n = ndimage.label(image[..., 0] > 128)
        return labels.astype(np.int32), np.linspace(1, 0.5, n).astype(np.float32)


def _image(height, width, seed=0):
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.uint8)
    for _ in range(height * width // 3000 + 1):
        y, x = rng.integers(0, height - 12), rng.integers(0, width - 12)
        image[y:y + 10, x:x + 10] = 200
    return image


def test_the_budget_is_what_is_left_after_runtime_models_and_image_arrays():
    dense = InferencePipeline(DenseModel(_PointwiseDense()), params=InferenceParams(max_memory_mb=3000))
    small, large = dense.network_budget((256, 256)), dense.network_budget((4000, 4000))
    assert 0 < large < small < (3000 - 250) * MB
    tighter = InferencePipeline(DenseModel(_PointwiseDense()), params=InferenceParams(max_memory_mb=1500))
    assert tighter.network_budget((256, 256)) == pytest.approx(small - 1500 * MB)


def test_shipped_models_take_images_up_to_1024_whole_with_the_default_budget():
    """Results on the images the project was tuned on do not change with the budget."""
    from mrcnn.config import Config
    from mrcnn.predictor import MrcnnPredictor
    from unet.config import UNetConfig
    from unet.predictor import UNetPredictor

    unet = DenseModel(UNetPredictor(None, UNetConfig.load(WEIGHTS / "unet.json")))

    class _Mrcnn(MrcnnPredictor):
        def __init__(self, config):
            self.config = config

    mrcnn = InstanceModel(_Mrcnn(Config.load(WEIGHTS / "mrcnn.json")))
    for pipeline in (InferencePipeline(unet, None), InferencePipeline(None, mrcnn), InferencePipeline(unet, mrcnn)):
        budget = pipeline.network_budget((1024, 1024))
        for model in (m for m in (pipeline.dense, pipeline.instance) if m is not None):
            assert model.plan(1024, 1024, budget).whole
            assert not model.plan(1040, 1388, budget).whole


@pytest.mark.parametrize("max_memory_mb", [1200, 3000])
def test_dense_batches_on_a_large_image_stay_within_the_budget(max_memory_mb):
    predictor = _PointwiseDense()
    pipeline = InferencePipeline(DenseModel(predictor), params=InferenceParams(max_memory_mb=max_memory_mb))
    image = _image(1500, 1700)
    labels, _ = pipeline.predict(image)
    budget = pipeline.network_budget(image.shape)
    plan = pipeline.last_plans["unet"]
    assert not plan["whole"] and labels.shape == image.shape[:2]
    largest = max(s[0] * s[1] * s[2] for s in predictor.shapes)
    assert largest * predictor.activation_bytes_per_pixel <= max(budget, 256 * 256 * 1200)
    assert max(s[1] for s in predictor.shapes) == plan["tile"]
    # a pointwise model gives the same maps tiled or not
    whole = InferencePipeline(DenseModel(_PointwiseDense()), params=InferenceParams(max_memory_mb=10 ** 6))
    whole.dense.tile_size = 2048
    np.testing.assert_allclose(pipeline.probabilities(image), whole.probabilities(image), atol=1e-5)


def test_a_small_budget_tiles_even_a_1024_image_for_both_models():
    dense, instances = _PointwiseDense(), _ThresholdInstances()
    pipeline = InferencePipeline(DenseModel(dense), InstanceModel(instances), InferenceParams(max_memory_mb=1800))
    image = _image(1024, 1024)
    pipeline.predict(image)
    assert not pipeline.last_plans["unet"]["whole"] and not pipeline.last_plans["mrcnn"]["whole"]
    assert max(max(s[1:3]) for s in dense.shapes) < 1024 and max(max(s) for s in instances.shapes) < 1024


@pytest.mark.parametrize("tta", [1, 8])
def test_instance_tta_on_a_tiled_image_runs_one_variant_at_a_time(tta):
    instances = _ThresholdInstances()
    pipeline = InferencePipeline(None, InstanceModel(instances, tile_size=256, tile_overlap=32),
                                 InferenceParams(tta=tta))
    image = _image(300, 520)
    labels, scores = pipeline.predict(image)
    assert max(max(s) for s in instances.shapes) <= 256 and pipeline.last_plans["mrcnn"]["tile"] == 256
    truth, _ = ndimage.label(image[..., 0] > 128)
    from tools.kaggle.metric import image_score

    assert image_score(truth, labels)["score"] == 1.0 and scores.shape == (labels.max(),)


def test_build_pipeline_takes_max_memory_and_refuses_a_bad_one():
    from preprocessing.errors import NucleiError
    from tools.inference.models import build_pipeline

    pipeline = build_pipeline("unet", max_memory=1500)
    assert pipeline.params.max_memory_mb == 1500 and pipeline.params.thresholds  # shipped params kept
    assert build_pipeline("unet").params.max_memory_mb == 3000
    with pytest.raises(NucleiError, match="--max-memory"):
        build_pipeline("unet", max_memory=10)


def test_bfloat16_reaches_both_models_and_finds_the_same_nuclei(sample_dataset):
    from tools.inference.models import build_pipeline
    from tools.kaggle.metric import image_score

    half = build_pipeline("ensemble", precision="bfloat16")
    assert half.dense.predictor.model.get_layer("classes").compute_dtype == "float32"  # the softmax
    assert half.dense.predictor.precision == "bfloat16" and half.instance.predictor.model.precision == "bfloat16"
    single = build_pipeline("mrcnn")
    assert single.instance.predictor.model.precision == "float32"
    half = build_pipeline("mrcnn", precision="bfloat16")
    image = sample_dataset.samples[0].image
    a, b = single.predict(image)[0], half.predict(image)[0]
    assert a.max() > 10 and abs(int(a.max()) - int(b.max())) <= max(2, a.max() // 20)
    assert image_score(a, b)["score"] > 0.85  # the same nuclei, outlines within bfloat16's rounding
