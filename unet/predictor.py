"""A trained U-Net ready to predict: weights + config in, probabilities and nuclei out."""

from pathlib import Path

import numpy as np

from preprocessing.errors import NucleiError
from tools.inference.tiling import predict_dense
from unet.config import UNetConfig, config_path_for
from unet.data import model_input
from unet.instances import labels_from_config
from unet.model import build_unet


class UNetPredictor:
    """Wraps a built U-Net. ``predict(image)`` -> (labels int32 [H, W], scores float32 [N])."""

    def __init__(self, model, config):
        self.model = model
        self.config = config

    @classmethod
    def from_path(cls, weights_path, config_path=None):
        weights_path = Path(weights_path)
        if not weights_path.is_file():
            raise NucleiError("weights file not found", weights_path)
        config_path = Path(config_path) if config_path else config_path_for(weights_path)
        if not config_path.is_file():
            raise NucleiError(f"config not found beside the weights (expected {config_path.name})", weights_path)
        config = UNetConfig.load(config_path)
        config.encoder_weights = None  # the trained weights already hold the encoder
        model = build_unet(config)
        try:
            model.load_weights(weights_path)
        except Exception as error:  # h5py / Keras raise many kinds
            raise NucleiError(f"weights do not fit the model in {config_path.name}: {error}", weights_path) from None
        return cls(model, config)

    def predict_batch(self, batch):
        """batch: float32 [B, h, w, C] (h, w multiples of 2**depth) -> float32 [B, h, w, 3].

        Called eagerly: every image size would otherwise trace a new graph (slow), and
        a graph relaxed to unknown sizes breaks bilinear up-sampling in Keras 3.
        """
        import keras

        return keras.ops.convert_to_numpy(self.model(batch, training=False))

    def probabilities(self, image):
        """image: uint8 [H, W, 3] -> float32 [H, W, 3] softmax (body, border, background)."""
        x = model_input(image, self.config)
        return predict_dense(self.predict_batch, x, self.config.multiple, self.config.tile_size,
                             self.config.tile_overlap)

    def labels_from_probabilities(self, probabilities):
        """float32 [H, W, 3] -> (labels int32 [H, W], scores float32 [N]: mean P(foreground))."""
        labels = labels_from_config(probabilities, self.config)
        foreground = 1.0 - probabilities[..., 2]
        n = int(labels.max())
        if n == 0:
            return labels, np.zeros(0, np.float32)
        sums = np.bincount(labels.ravel(), weights=foreground.ravel(), minlength=n + 1)
        counts = np.bincount(labels.ravel(), minlength=n + 1)
        return labels, (sums[1:] / np.maximum(counts[1:], 1)).astype(np.float32)

    def predict(self, image):
        return self.labels_from_probabilities(self.probabilities(image))
