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

Memory: ``InferenceParams.max_memory_mb`` is the peak the pipeline aims at. Per image it
subtracts the runtime and the loaded models (``RUNTIME_MB`` + each adapter's
``resident_mb``) and the image-size arrays (bytes per image pixel below) and gives the
rest to one network batch: :func:`tools.inference.tiling.plan_tiles` picks the tile side
(at most the model's own ``tile_size``) and the tiles per batch from each adapter's
``bytes_per_pixel``. So peak memory grows with the tile, not with the image, beyond a few
bytes per image pixel. The figures are estimates measured with bench/bench_memory.py on
the shipped models (bench/results/memory.json); the budget is a target, not a hard cap.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from tools.inference.ensemble import ensemble_instances
from tools.inference.merge import merge_instances
from tools.inference.params import THRESHOLD_FIELDS, InferenceParams
from tools.inference.postprocess import postprocess
from tools.inference.tiled_instances import predict_instances_tiled
from tools.inference.tiling import MIN_TILE, TilePlan, plan_tiles
from tools.inference.tta import select_transforms, tta_dense, tta_instances

MB = 1024 * 1024
# Python, TensorFlow and NumPy loaded, before any model (resident MB).
RUNTIME_MB = 450
# Image-size arrays of the dense path while the network runs: the image, its normalised
# copy and padded copy, the blended tile sum and the TTA sum (float32 [H, W, 3] each).
DENSE_BYTES_PER_IMAGE_PIXEL = 80
# Image-size arrays of the instance path: the image, a variant, the tiled int32 result,
# plus one int32 label image kept per TTA variant for the merge.
INSTANCE_BYTES_PER_IMAGE_PIXEL = 24
INSTANCE_BYTES_PER_VARIANT_PIXEL = 4
# Estimates for adapters whose predictor does not say (``activation_bytes_per_pixel``,
# ``resident_mb``): a U-Net of 32 base filters run eagerly, a Mask R-CNN graph.
DEFAULT_DENSE_BYTES_PER_PIXEL = 4400
DEFAULT_INSTANCE_BYTES_PER_PIXEL = 300
DEFAULT_RESIDENT_MB = 300


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
        # network working memory per input pixel, and the loaded model's own memory (MB)
        self.bytes_per_pixel = float(getattr(predictor, "activation_bytes_per_pixel", DEFAULT_DENSE_BYTES_PER_PIXEL))
        self.resident_mb = float(getattr(predictor, "resident_mb", DEFAULT_RESIDENT_MB))

    def plan(self, height: int, width: int, budget_bytes: float) -> TilePlan:
        """How an image (or TTA variant) of (height, width) goes through the network within the budget."""
        return plan_tiles(height, width, self.tile_size, self.multiple, self.tile_overlap, budget_bytes,
                          self.bytes_per_pixel, min_tile=MIN_TILE)

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """uint8 [H, W, 3] -> float32 [H, W, C] network input."""
        return self.predictor.prepare(image)

    def decode(self, probabilities: np.ndarray, thresholds: dict[str, Any] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """float [H, W, 3] -> (labels int32 [H, W], scores float32 [N]: mean P(foreground)).

        ``thresholds`` override the config's watershed fields (InferenceParams.thresholds; the
        Mask R-CNN's entries there are not the U-Net's business)."""
        if thresholds:
            thresholds = {name: value for name, value in thresholds.items() if name in THRESHOLD_FIELDS}
        return self.predictor.decode(probabilities, thresholds)


class InstanceModel:
    """A Mask R-CNN (or any instance model) as the pipeline sees it.

    Uses ``predictor.predict_images(list)`` when the predictor has it (one batch),
    else ``predictor.predict(image)`` per image. Images larger than ``tile_size`` (or than
    the memory budget allows whole) are tiled (tools.inference.tiled_instances).
    """

    # tile sides are multiples of this (Mask R-CNN pads its input to 64)
    multiple = 64

    def __init__(self, predictor: Any, tile_size: int = 1024, tile_overlap: int = 128):
        self.predictor = predictor
        self.tile_size = tile_size
        self.tile_overlap = tile_overlap
        batched = getattr(predictor, "predict_images", None)
        self.predict_images = _Timer(batched if batched is not None
                                     else (lambda images: [predictor.predict(image) for image in images]))
        self.bytes_per_pixel = float(getattr(predictor, "activation_bytes_per_pixel",
                                             DEFAULT_INSTANCE_BYTES_PER_PIXEL))
        self.resident_mb = float(getattr(predictor, "resident_mb", DEFAULT_RESIDENT_MB))

    def plan(self, height: int, width: int, budget_bytes: float) -> TilePlan:
        """How an image of (height, width) goes through the network within the budget.

        Tiles are at least four overlaps wide (512 pixels by default): narrower ones would spend
        most of each tile on the overlap that seams need."""
        return plan_tiles(height, width, self.tile_size, self.multiple, self.tile_overlap, budget_bytes,
                          self.bytes_per_pixel, min_tile=min(self.tile_size, max(MIN_TILE, 4 * self.tile_overlap)))

    def fits(self, image: np.ndarray) -> bool:
        return max(image.shape[:2]) <= self.tile_size

    def instances(self, images: list[np.ndarray], budget_bytes: float | None = None
                  ) -> list[tuple[np.ndarray, np.ndarray]]:
        """list of uint8 [h, w, 3] -> list of (labels, scores), tiling the large ones.

        ``budget_bytes``: memory one network call may take (None: whole up to ``tile_size``,
        one tile per call)."""
        if budget_bytes is None:
            plans = [TilePlan(True, self.tile_size, 1) if self.fits(image) else TilePlan(False, self.tile_size, 1)
                     for image in images]
        else:
            plans = [self.plan(*image.shape[:2], budget_bytes) for image in images]
        if all(plan.whole for plan in plans):
            return [(np.asarray(l), np.asarray(s, np.float32)) for l, s in self.predict_images(images)]
        return [predict_instances_tiled(self.predict_images, image, plan.tile if not plan.whole else self.tile_size,
                                        self.tile_overlap, plan.batch_size)
                for image, plan in zip(images, plans)]


class InferencePipeline:
    """Image in, (labels int32 [H, W], scores float32 [N]) out, with TTA, ensemble, post-processing.

    Args:
        dense: DenseModel or None.
        instance: InstanceModel or None (both given: ensemble).
        params: InferenceParams (TTA, U-Net thresholds, ensemble, merge, post-processing,
            ``max_memory_mb``: the memory budget tiles and batches are chosen from).
        max_batch_pixels: optional cap on the input pixels per network batch of whole
            same-shape dense TTA variants (None: the memory budget alone decides).

    ``last_plans`` holds, after each image, how each model ran it ({'unet'|'mrcnn': TilePlan dict}).
    """

    def __init__(self, dense: DenseModel | None = None, instance: InstanceModel | None = None,
                 params: InferenceParams | None = None, max_batch_pixels: int | None = None):
        if dense is None and instance is None:
            raise ValueError("need a dense model, an instance model, or both")
        self.dense = dense
        self.instance = instance
        self.params = params or InferenceParams()
        self.transforms = select_transforms(self.params.tta)
        self.max_batch_pixels = max_batch_pixels
        self.last_plans: dict[str, dict[str, Any]] = {}

    # --- memory --------------------------------------------------------------------
    def network_budget(self, shape: tuple[int, ...]) -> float:
        """Bytes one network batch may take for an image of ``shape`` (H, W, ...): the budget
        (``params.max_memory_mb``) less the runtime, the models and the image-size arrays; may be <= 0."""
        pixels = float(shape[0]) * float(shape[1])
        fixed_mb = RUNTIME_MB
        image_bytes = 0.0
        if self.dense is not None:
            fixed_mb += self.dense.resident_mb
            image_bytes += pixels * DENSE_BYTES_PER_IMAGE_PIXEL
        if self.instance is not None:
            fixed_mb += self.instance.resident_mb
            image_bytes += pixels * (INSTANCE_BYTES_PER_IMAGE_PIXEL
                                     + INSTANCE_BYTES_PER_VARIANT_PIXEL * len(self.transforms))
        return (self.params.max_memory_mb - fixed_mb) * MB - image_bytes

    def _dense_plan(self, budget: float) -> Callable[[int, int], TilePlan]:
        def plan(height: int, width: int) -> TilePlan:
            chosen = self.dense.plan(height, width, budget)
            if chosen.whole and self.max_batch_pixels is not None:
                m = self.dense.multiple
                padded = (height + (-height) % m) * (width + (-width) % m)
                per_call = max(1, min(chosen.batch_size, int(self.max_batch_pixels // padded)))
                chosen = TilePlan(True, chosen.tile, per_call)
            return chosen

        return plan

    # --- the parts, each usable alone (tools.tune caches them) -----------------------
    def probabilities(self, image: np.ndarray) -> np.ndarray:
        """uint8 [H, W, 3] -> float32 [H, W, 3] U-Net maps, averaged over the TTA transforms."""
        d = self.dense
        plan = self._dense_plan(self.network_budget(image.shape))
        self.last_plans["unet"] = plan(*image.shape[:2]).to_dict()
        return tta_dense(d.predict_batch, image, d.prepare, self.transforms, d.multiple, d.tile_size,
                         d.tile_overlap, plan=plan)

    def instance_predictions(self, image: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """uint8 [H, W, 3] -> list (one per transform) of (labels, scores) in the original frame."""
        budget = self.network_budget(image.shape)
        plan = self.instance.plan(*image.shape[:2], budget)
        self.last_plans["mrcnn"] = plan.to_dict()
        # whole images: as many variants per call as the budget holds; tiled ones: one at a time
        per_call = max(budget, 0.0) / self.instance.bytes_per_pixel if plan.whole else 1
        return tta_instances(lambda images: self.instance.instances(images, budget), image, self.transforms,
                             max_batch_pixels=per_call)

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
        labels, scores = postprocess(labels, scores, self.params.postprocess, image)
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
