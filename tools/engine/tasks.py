"""What the training engine needs to know of each model: build, compile, data, export.

A task holds a model config plus the model-specific training choices; the engine
(:mod:`tools.engine.trainer`) does everything else the same way for both models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras

from mrcnn.config import Config
from unet.config import UNetConfig


class UNetTask:
    """U-Net training: AdamW on the body/border/background loss, crops from unet.data.

    Args:
        config: UNetConfig.
        steps_per_epoch: training batches per epoch.
        augment: preprocessing.augment preset.
        balanced: sample images by the balanced image-type rule (else uniformly).
    """

    name = "unet"

    def __init__(self, config: UNetConfig, steps_per_epoch: int = 200, augment: str = "heavy",
                 balanced: bool = True):
        self.config = config
        self.steps_per_epoch = int(steps_per_epoch)
        self.augment = augment
        self.balanced = balanced

    @property
    def learning_rate(self) -> float:
        return self.config.learning_rate

    @property
    def batch_size(self) -> int:
        return self.config.batch_size

    def train_data(self, samples: list, seed: int, **workers: Any) -> keras.utils.PyDataset:
        from unet.data import UNetTrainData

        return UNetTrainData(samples, self.config, self.steps_per_epoch, self.augment, balanced=self.balanced,
                             seed=seed, **workers)

    def val_data(self, samples: list) -> Any:
        from unet.data import validation_batches

        return validation_batches(samples, self.config)

    def build(self) -> keras.Model:
        """The compiled model (call inside the strategy's scope)."""
        from unet.losses import loss_for
        from unet.model import build_unet

        model = build_unet(self.config)
        optimizer = keras.optimizers.AdamW(self.config.learning_rate, weight_decay=self.config.weight_decay,
                                           clipnorm=5.0)
        model.compile(optimizer=optimizer, loss=loss_for(self.config))
        return model

    def export(self, checkpoint: Path, stem: Path) -> Path:
        """Write STEM.weights.h5 (weights only, no optimizer state) + STEM.json from a checkpoint."""
        from preprocessing.files import save_weights_atomic
        from unet.model import build_unet

        config = self.config.replace(encoder_weights=None)  # the checkpoint holds the encoder
        model = build_unet(config)
        model.load_weights(checkpoint)  # a model never compiled skips the optimizer variables
        weights_path = Path(f"{stem}.weights.h5")
        save_weights_atomic(model, weights_path)
        config.save(Path(f"{stem}.json"))
        return weights_path


class MrcnnTask:
    """Mask R-CNN training: Matterport's stages (``layers``), optional init weights by layer name.

    Args:
        config: mrcnn Config (STEPS_PER_EPOCH, AUGMENT, optimiser fields...).
        layers: 'heads', '3+', '4+', '5+', 'all' or a regex over layer names.
        init_weights: HDF5 weights loaded by layer name before training (mismatches skipped).
    """

    name = "mrcnn"

    def __init__(self, config: Config, layers: str = "all", init_weights: str | None = None):
        self.config = config
        self.layers = layers
        self.init_weights = init_weights

    @property
    def learning_rate(self) -> float:
        return self.config.LEARNING_RATE

    @property
    def batch_size(self) -> int:
        return self.config.BATCH_SIZE

    def train_data(self, samples: list, seed: int, **workers: Any) -> keras.utils.PyDataset:
        from mrcnn.data import MrcnnDataset

        return MrcnnDataset(samples, self.config, training=True, seed=seed, **workers)

    def val_data(self, samples: list) -> Any:
        from mrcnn.data import MrcnnDataset

        return MrcnnDataset(samples, self.config, training=False)

    def build(self, fresh: bool = True) -> keras.Model:
        """The compiled model (call inside the strategy's scope); ``fresh``: apply init_weights."""
        from mrcnn.model import MaskRCNN

        model = MaskRCNN(self.config)
        if self.init_weights and fresh:
            from mrcnn.weights import load_weights_by_name

            report = load_weights_by_name(model, self.init_weights, skip_mismatch=True)
            print(f"loaded {len(report['loaded'])} layers by name from {self.init_weights}")
        model.compile_for_training(self.config.LEARNING_RATE, self.layers)
        return model

    def export(self, checkpoint: Path, stem: Path) -> Path:
        """Write STEM.weights.h5 (weights only: checkpoints also hold the optimizer's
        variables, 3x the size) + STEM.json from a checkpoint."""
        from mrcnn.model import MaskRCNN

        # the checkpoint holds the backbone: the ImageNet file it started from is not needed
        model = MaskRCNN(self.config.replace(BACKBONE_WEIGHTS=None))
        model.load_weights(str(checkpoint))
        weights_path = Path(f"{stem}.weights.h5")
        model.save_model(weights_path)
        return weights_path
