"""A trained U-Net ready to predict: weights + config in, probability maps and their decode out.

The predictor is the model's part of inference only: normalise (``prepare``), run the network
on a batch (``predict_batch``) and turn probability maps into nuclei (``decode``). Padding,
tiling of large images, TTA and post-processing are model-independent and live in
``tools.inference`` (``tools.inference.load_model`` builds the whole pipeline).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from preprocessing.errors import NucleiError
from preprocessing.labels import mean_over_labels
from preprocessing.settings import config_path_for
from unet.config import UNetConfig
from unet.data import model_input
from unet.instances import labels_from_config
from unet.model import build_unet


class UNetPredictor:
    """Wraps a built U-Net and its config."""

    def __init__(self, model: Any, config: UNetConfig):
        self.model = model
        self.config = config

    @classmethod
    def from_path(cls, weights_path: str | Path, config_path: str | Path | None = None) -> "UNetPredictor":
        """Load ``X.weights.h5`` with ``X.json`` beside it (a run's best/last use its config.json)."""
        weights_path = Path(weights_path)
        if not weights_path.is_file():
            raise NucleiError("weights file not found", weights_path)
        config_path = Path(config_path) if config_path else config_path_for(weights_path)
        if not config_path.is_file():
            raise NucleiError(f"config not found beside the weights (expected {config_path.name})", weights_path)
        config = UNetConfig.load(config_path).replace(encoder_weights=None)  # the weights hold the encoder
        model = build_unet(config)
        try:
            model.load_weights(weights_path)
        except Exception as error:  # h5py / Keras raise many kinds
            raise NucleiError(f"these weights do not fit the U-Net of {config_path.name} "
                              f"({str(error).splitlines()[0][:200]})", weights_path) from None
        return cls(model, config)

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """uint8 [H, W, 3] -> float32 [H, W, C] network input (the config's normalisation)."""
        return model_input(image, self.config)

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        """batch: float32 [B, h, w, C] (h, w multiples of 2**depth) -> float32 [B, h, w, 3] softmax.

        Called eagerly: every image size would otherwise trace a new graph (slow), and
        a graph relaxed to unknown sizes breaks bilinear up-sampling in Keras 3.
        """
        import keras

        return keras.ops.convert_to_numpy(self.model(batch, training=False))

    def decode(self, probabilities: np.ndarray, thresholds: dict[str, Any] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """float32 [H, W, 3] (body, border, background) -> (labels int32 [H, W], scores float32 [N]).

        ``thresholds`` override the config's watershed fields; scores are each nucleus'
        mean P(foreground).
        """
        config = self.config.replace(**thresholds) if thresholds else self.config
        labels = labels_from_config(probabilities, config)
        return labels, mean_over_labels(labels, 1.0 - probabilities[..., 2])
