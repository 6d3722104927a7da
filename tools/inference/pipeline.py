"""Predictor-agnostic inference: TTA, tiling, ensemble and post-processing around any model.

Models are seen through two small adapters:

* :class:`DenseModel` (U-Net): ``prepare`` (normalisation), ``predict_batch``
  float32 [B, h, w, C] -> [B, h, w, 3], ``decode`` probabilities -> (labels, scores).
* :class:`InstanceModel` (Mask R-CNN): ``predict_images`` list of uint8 [h, w, 3] ->
  list of (labels int [h, w], scores float [N]).

:class:`InferencePipeline` chains, per image: TTA (dense: mean of inverse-transformed
probability maps, then one decode; instances: inverse-transformed instances merged by
tools.inference.merge), tiling of large images, the ensemble when both models are given,
and tools.inference.postprocess. It counts the seconds spent inside the networks
(``network_seconds``), so the cost of everything else can be measured.
"""

import dataclasses
import time

import numpy as np

from tools.inference.ensemble import EnsembleConfig, ensemble_instances, mean_over_labels
from tools.inference.merge import merge_instances
from tools.inference.postprocess import PostprocessConfig, postprocess
from tools.inference.tiled_instances import predict_instances_tiled
from tools.inference.tta import select_transforms, tta_dense, tta_instances


class _Timer:
    """Wraps a callable and adds the seconds spent inside it to ``seconds``."""

    def __init__(self, function):
        self.function = function
        self.seconds = 0.0
        self.calls = 0

    def __call__(self, *args):
        started = time.perf_counter()
        try:
            return self.function(*args)
        finally:
            self.seconds += time.perf_counter() - started
            self.calls += 1


class DenseModel:
    """A U-Net (or any per-pixel model) as the pipeline sees it.

    Args:
        predictor: unet.predictor.UNetPredictor (uses .predict_batch, .config).
        thresholds: optional overrides of the watershed fields of its config
            (foreground_threshold, seed_threshold, min_seed_size, min_nucleus_size).
    """

    def __init__(self, predictor, thresholds=None):
        from unet.data import model_input

        self.predictor = predictor
        self.config = dataclasses.replace(predictor.config, **(thresholds or {}))
        self._model_input = model_input
        self.predict_batch = _Timer(predictor.predict_batch)
        self.multiple = self.config.multiple
        self.tile_size = self.config.tile_size
        self.tile_overlap = self.config.tile_overlap

    def prepare(self, image):
        """uint8 [H, W, 3] -> float32 [H, W, C] network input."""
        return self._model_input(image, self.config)

    def decode(self, probabilities, thresholds=None):
        """float [H, W, 3] -> (labels int32 [H, W], scores float32 [N]: mean P(foreground))."""
        from unet.instances import labels_from_config

        config = dataclasses.replace(self.config, **thresholds) if thresholds else self.config
        labels = labels_from_config(probabilities, config)
        return labels, mean_over_labels(labels, 1.0 - probabilities[..., 2])


class InstanceModel:
    """A Mask R-CNN (or any instance model) as the pipeline sees it.

    Uses ``predictor.predict_images(list)`` when the predictor has it (one batch),
    else ``predictor.predict(image)`` per image. Images larger than ``tile_size`` are
    tiled (tools.inference.tiled_instances).
    """

    def __init__(self, predictor, tile_size=1024, tile_overlap=128):
        self.predictor = predictor
        self.tile_size = tile_size
        self.tile_overlap = tile_overlap
        batched = getattr(predictor, "predict_images", None)
        self.predict_images = _Timer(batched if batched is not None
                                     else (lambda images: [predictor.predict(image) for image in images]))

    def fits(self, image):
        return max(image.shape[:2]) <= self.tile_size

    def instances(self, images):
        """list of uint8 [h, w, 3] -> list of (labels, scores), tiling the large ones."""
        if all(self.fits(image) for image in images):
            return [(np.asarray(l), np.asarray(s, np.float32)) for l, s in self.predict_images(images)]
        return [predict_instances_tiled(self.predict_images, image, self.tile_size, self.tile_overlap)
                for image in images]


@dataclasses.dataclass
class MergeConfig:
    """How instance predictions of TTA variants are merged (tools.inference.merge)."""

    cluster_iou: float = 0.5
    min_agreement: float = 0.5
    pixel_vote: float = 0.5


class InferencePipeline:
    """Image in, (labels int32 [H, W], scores float32 [N]) out, with TTA, ensemble, post-processing.

    Args:
        dense: DenseModel or None.
        instance: InstanceModel or None (both given: ensemble).
        tta: number of test-time transforms (1 = single pass, 15 = all).
        postprocess_config: PostprocessConfig.
        ensemble_config: EnsembleConfig (used when both models are given).
        merge_config: MergeConfig for instance TTA.
        max_batch_pixels: input pixels per network batch of dense TTA variants.
    """

    def __init__(self, dense=None, instance=None, tta=1, postprocess_config=None, ensemble_config=None,
                 merge_config=None, max_batch_pixels=4 * 1024 * 1024):
        if dense is None and instance is None:
            raise ValueError("need a dense model, an instance model, or both")
        self.dense = dense
        self.instance = instance
        self.transforms = select_transforms(tta)
        self.postprocess_config = postprocess_config or PostprocessConfig()
        self.ensemble_config = ensemble_config or EnsembleConfig()
        self.merge_config = merge_config or MergeConfig()
        self.max_batch_pixels = max_batch_pixels

    # --- the parts, each usable alone (tools.tune caches them) -----------------------
    def probabilities(self, image):
        """uint8 [H, W, 3] -> float32 [H, W, 3] U-Net maps, averaged over the TTA transforms."""
        d = self.dense
        return tta_dense(d.predict_batch, image, d.prepare, self.transforms, d.multiple, d.tile_size,
                         d.tile_overlap, self.max_batch_pixels)

    def instance_predictions(self, image):
        """uint8 [H, W, 3] -> list (one per transform) of (labels, scores) in the original frame."""
        return tta_instances(self.instance.instances, image, self.transforms)

    def merged_instances(self, predictions):
        """Merge the per-transform instance predictions (a single one is returned as it is)."""
        if len(predictions) == 1:
            return predictions[0]
        m = self.merge_config
        return merge_instances(predictions, m.cluster_iou, m.min_agreement, m.pixel_vote)

    def raw(self, image):
        """(labels, scores) before post-processing."""
        if self.dense is not None and self.instance is not None:
            labels, scores = self.merged_instances(self.instance_predictions(image))
            return ensemble_instances(self.probabilities(image), labels, scores, self.ensemble_config)
        if self.dense is not None:
            return self.dense.decode(self.probabilities(image))
        return self.merged_instances(self.instance_predictions(image))

    def predict(self, image):
        """uint8 [H, W, 3] -> (labels int32 [H, W] ids 1..N, scores float32 [N])."""
        labels, scores = self.raw(image)
        labels, scores = postprocess(labels, scores, self.postprocess_config)
        return labels, np.zeros(int(labels.max()), np.float32) if scores is None else scores

    @property
    def network_seconds(self):
        """Seconds spent inside the networks so far (both models)."""
        total = 0.0
        if self.dense is not None:
            total += self.dense.predict_batch.seconds
        if self.instance is not None:
            total += self.instance.predict_images.seconds
        return total
