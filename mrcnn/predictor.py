"""A trained Mask R-CNN ready to predict: weights + config in, nuclei out.

``MrcnnPredictor.from_path("x.weights.h5")`` reads ``x.json`` (or a run folder's
``config.json``) beside the weights; ``predict(image)`` returns the label image the
rest of the project works with. TTA, tiling and post-processing live in ``tools.inference``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mrcnn.config import Config
from mrcnn.data import model_input
from mrcnn.model import MaskRCNN, load_model
from mrcnn.paste import detections_to_labels
from preprocessing.errors import NucleiError
from preprocessing.settings import config_path_for

# Working memory of one inference per input pixel (bytes), by backbone: measured on the
# shipped MobileNetV2 model (bench/bench_memory.py: ~200 B/px at 2048 px), others estimated.
ACTIVATION_BYTES_PER_PIXEL = {"mobilenetv2": 250, "tiny": 100, "resnet50": 700, "resnet101": 900}
# Resident memory of a loaded Mask R-CNN beyond the runtime (weights, traced graph), MB.
RESIDENT_MB = 850


class MrcnnPredictor:
    """Wraps a built :class:`mrcnn.model.MaskRCNN`.

    ``predict(image uint8 [H, W, 3])`` -> ``(labels int32 [H, W], scores float32 [N])``,
    ids 1..N in order of decreasing score; where masks overlap the highest score keeps
    the pixel.
    """

    resident_mb = RESIDENT_MB

    def __init__(self, model: MaskRCNN):
        self.model = model
        self.config = model.config

    @property
    def activation_bytes_per_pixel(self) -> float:
        """Estimated working memory of one inference per input pixel (bytes)."""
        return float(ACTIVATION_BYTES_PER_PIXEL.get(getattr(self.config, "BACKBONE", ""), 700))

    @classmethod
    def from_path(cls, weights_path: str | Path, config_path: str | Path | None = None,
                  precision: str = "float32", **overrides: Any) -> "MrcnnPredictor":
        """Load ``weights_path`` (.weights.h5 with its config JSON, or a .keras file).

        ``precision``: the arithmetic of its layers (preprocessing.precision.PRECISIONS; the
        weights stay float32). ``overrides``: config fields to change for inference (e.g.
        DETECTION_MIN_CONFIDENCE).
        """
        weights_path = Path(weights_path)
        if not weights_path.is_file():
            raise NucleiError("weights file not found", weights_path)
        config = None
        if weights_path.suffix != ".keras":
            config_path = Path(config_path) if config_path else config_path_for(weights_path)
            if not config_path.is_file():
                raise NucleiError(f"config not found beside the weights (expected {config_path.name})", weights_path)
            # BACKBONE_WEIGHTS: the trained weights hold the backbone, and the ImageNet file
            # it started from need not exist where the model predicts.
            config = Config.load(config_path).replace(IMAGES_PER_GPU=1, GPU_COUNT=1, BACKBONE_WEIGHTS=None,
                                                      **overrides)
        return cls(load_model(weights_path, config, precision=precision))

    def detect(self, image: np.ndarray) -> dict[str, Any]:
        """image uint8 [H, W, 3] -> raw detections: boxes [D, (y1, x1, y2, x2)], class_ids [D],
        scores [D], masks [D, M, M] probabilities, image_shape (H, W)."""
        x, (height, width) = model_input(image, self.config)
        out = self.model.infer(x[None])
        n = int(out["count"][0])
        return {"boxes": out["boxes"][0, :n], "class_ids": out["class_ids"][0, :n], "scores": out["scores"][0, :n],
                "masks": out["masks"][0, :n], "image_shape": (height, width)}

    def predict(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        det = self.detect(image)
        labels, scores, _ = detections_to_labels(det["boxes"], det["scores"], det["masks"], det["image_shape"],
                                                 self.config.MASK_THRESHOLD, mode=self.config.MASK_PASTE)
        return labels, scores
