"""Predictor-agnostic inference: TTA, tiling, ensemble and post-processing around any model.

Models are seen through two small adapters:

* :class:`DenseModel` (U-Net, :class:`unet.predictor.UNetPredictor`): ``prepare``
  (normalisation), ``predict_batch`` float32 [B, h, w, C] -> [B, h, w, 3], ``decode``
  probabilities -> (labels, scores) with the watershed thresholds of the parameters.
* :class:`InstanceModel` (Mask R-CNN, :class:`mrcnn.predictor.MrcnnPredictor`):
  ``predict_images`` list of uint8 [h, w, 3] -> list of (labels int [h, w], scores float [N]).

:class:`InferencePipeline` chains, per image: TTA (dense: mean of inverse-transformed
probability maps, then one decode; instances: inverse-transformed instances merged by
tools.inference.merge), tiling of large images, the ensemble when both models are given,
and tools.inference.postprocess, every choice taken from one
:class:`tools.inference.params.InferenceParams`. It counts the seconds spent inside the
networks (``network_seconds``), so the cost of everything else can be measured.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from tools.inference.ensemble import ensemble_instances
from tools.inference.merge import merge_instances
from tools.inference.params import InferenceParams
from tools.inference.postprocess import postprocess
from tools.inference.tiled_instances import predict_instances_tiled
from tools.inference.tta import select_transforms, tta_dense, tta_instances


class _Timer:
    """Wraps a callable and adds the seconds spent inside it to ``seconds``."""

    def __init__(self, function: Callable):
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
        predictor: unet.predictor.UNetPredictor (``prepare``, ``predict_batch``, ``decode``, ``config``).
    """

    def __init__(self, predictor: Any):
        self.predictor = predictor
        self.config = predictor.config
        self.predict_batch = _Timer(predictor.predict_batch)
        self.multiple = self.config.multiple
        self.tile_size = self.config.tile_size
        self.tile_overlap = self.config.tile_overlap

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """uint8 [H, W, 3] -> float32 [H, W, C] network input."""
        return self.predictor.prepare(image)

    def decode(self, probabilities: np.ndarray, thresholds: dict[str, Any] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """float [H, W, 3] -> (labels int32 [H, W], scores float32 [N]: mean P(foreground)).

        ``thresholds`` override the config's watershed fields (InferenceParams.thresholds)."""
        return self.predictor.decode(probabilities, thresholds)


class InstanceModel:
    """A Mask R-CNN (or any instance model) as the pipeline sees it.

    Uses ``predictor.predict_images(list)`` when the predictor has it (one batch),
    else ``predictor.predict(image)`` per image. Images larger than ``tile_size`` are
    tiled (tools.inference.tiled_instances).
    """

    def __init__(self, predictor: Any, tile_size: int = 1024, tile_overlap: int = 128):
        self.predictor = predictor
        self.tile_size = tile_size
        self.tile_overlap = tile_overlap
        batched = getattr(predictor, "predict_images", None)
        self.predict_images = _Timer(batched if batched is not None
                                     else (lambda images: [predictor.predict(image) for image in images]))

    def fits(self, image: np.ndarray) -> bool:
        return max(image.shape[:2]) <= self.tile_size

    def instances(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """list of uint8 [h, w, 3] -> list of (labels, scores), tiling the large ones."""
        if all(self.fits(image) for image in images):
            return [(np.asarray(l), np.asarray(s, np.float32)) for l, s in self.predict_images(images)]
        return [predict_instances_tiled(self.predict_images, image, self.tile_size, self.tile_overlap)
                for image in images]


class InferencePipeline:
    """Image in, (labels int32 [H, W], scores float32 [N]) out, with TTA, ensemble, post-processing.

    Args:
        dense: DenseModel or None.
        instance: InstanceModel or None (both given: ensemble).
        params: InferenceParams (TTA, U-Net thresholds, ensemble, merge, post-processing).
        max_batch_pixels: input pixels per network batch of dense TTA variants.
    """

    def __init__(self, dense: DenseModel | None = None, instance: InstanceModel | None = None,
                 params: InferenceParams | None = None, max_batch_pixels: int = 4 * 1024 * 1024):
        if dense is None and instance is None:
            raise ValueError("need a dense model, an instance model, or both")
        self.dense = dense
        self.instance = instance
        self.params = params or InferenceParams()
        self.transforms = select_transforms(self.params.tta)
        self.max_batch_pixels = max_batch_pixels

    # --- the parts, each usable alone (tools.tune caches them) -----------------------
    def probabilities(self, image: np.ndarray) -> np.ndarray:
        """uint8 [H, W, 3] -> float32 [H, W, 3] U-Net maps, averaged over the TTA transforms."""
        d = self.dense
        return tta_dense(d.predict_batch, image, d.prepare, self.transforms, d.multiple, d.tile_size,
                         d.tile_overlap, self.max_batch_pixels)

    def instance_predictions(self, image: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """uint8 [H, W, 3] -> list (one per transform) of (labels, scores) in the original frame."""
        return tta_instances(self.instance.instances, image, self.transforms)

    def merged_instances(self, predictions: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        """Merge the per-transform instance predictions (a single one is returned as it is)."""
        if len(predictions) == 1:
            return predictions[0]
        m = self.params.merge
        return merge_instances(predictions, m.cluster_iou, m.min_agreement, m.pixel_vote)

    def raw(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(labels, scores) before post-processing."""
        if self.dense is not None and self.instance is not None:
            labels, scores = self.merged_instances(self.instance_predictions(image))
            return ensemble_instances(self.probabilities(image), labels, scores, self.params.ensemble)
        if self.dense is not None:
            return self.dense.decode(self.probabilities(image), self.params.thresholds)
        return self.merged_instances(self.instance_predictions(image))

    def predict(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 [H, W, 3] -> (labels int32 [H, W] ids 1..N, scores float32 [N])."""
        labels, scores = self.raw(image)
        labels, scores = postprocess(labels, scores, self.params.postprocess)
        return labels, np.zeros(int(labels.max()), np.float32) if scores is None else scores

    @property
    def network_seconds(self) -> float:
        """Seconds spent inside the networks so far (both models)."""
        total = 0.0
        if self.dense is not None:
            total += self.dense.predict_batch.seconds
        if self.instance is not None:
            total += self.instance.predict_images.seconds
        return total
