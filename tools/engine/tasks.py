"""What the training engine needs to know of each model: build, compile, data, export.

A task holds a model config plus the model-specific training choices; the engine
(:mod:`tools.engine.trainer`) does everything else the same way for both models.

The config's batch is one replica's and its learning rate the one for that batch; the engine
calls :meth:`distribute` with the run's :class:`tools.engine.distribute.BatchScaling`, after
which ``batch_size`` (the global batch), ``learning_rate``, the data and the compiled optimizer
follow it. ``config`` itself stays as given: it is what config.json and the exported model.json
hold, whatever the number of machines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras

from mrcnn.config import Config
from preprocessing.precision import check_precision, compute_policy
from tools.engine.distribute import BatchScaling
from unet.config import UNetConfig


class _Scaled:
    """The batch and learning rate of a task, one replica's until :meth:`distribute` is called."""

    config: Any
    scaling: BatchScaling | None = None

    @property
    def per_replica_batch(self) -> int:
        raise NotImplementedError

    @property
    def base_learning_rate(self) -> float:
        raise NotImplementedError

    def distribute(self, scaling: BatchScaling) -> None:
        """Train with ``scaling``'s global batch and learning rate (before train_data and build)."""
        self.scaling = scaling

    @property
    def learning_rate(self) -> float:
        """The learning rate training uses (scaled with the global batch)."""
        return self.scaling.learning_rate if self.scaling else self.base_learning_rate

    @property
    def batch_size(self) -> int:
        """The global batch: what one training step consumes over all replicas."""
        return self.scaling.global_batch if self.scaling else self.per_replica_batch


class UNetTask(_Scaled):
    """U-Net training: AdamW on the body/border/background loss, crops from unet.data.

    Args:
        config: UNetConfig.
        steps_per_epoch: training batches per epoch.
        augment: preprocessing.augment preset.
        balanced: sample images by the balanced image-type rule (else uniformly).
        precision: 'float32', or 'bfloat16' compute with float32 weights (preprocessing.precision;
            the softmax and the loss stay float32).
    """

    name = "unet"

    def __init__(self, config: UNetConfig, steps_per_epoch: int = 200, augment: str = "heavy",
                 balanced: bool = True, precision: str = "float32"):
        self.config = config
        self.precision = check_precision(precision)
        self.steps_per_epoch = int(steps_per_epoch)
        self.augment = augment
        self.balanced = balanced

    @property
    def per_replica_batch(self) -> int:
        return self.config.batch_size

    @property
    def base_learning_rate(self) -> float:
        return self.config.learning_rate

    def train_data(self, samples: list, seed: int, **workers: Any) -> keras.utils.PyDataset:
        """Global batches: the strategy splits each over the replicas."""
        from unet.data import UNetTrainData

        config = self.config.replace(batch_size=self.batch_size)
        return UNetTrainData(samples, config, self.steps_per_epoch, self.augment, balanced=self.balanced,
                             seed=seed, **workers)

    def val_data(self, samples: list) -> Any:
        from unet.data import validation_batches

        return validation_batches(samples, self.config)

    def build(self) -> keras.Model:
        """The compiled model (call inside the strategy's scope)."""
        from unet.losses import loss_for
        from unet.model import build_unet

        with compute_policy(self.precision):
            model = build_unet(self.config)
        optimizer = keras.optimizers.AdamW(self.learning_rate, weight_decay=self.config.weight_decay,
                                           clipnorm=5.0)
        model.compile(optimizer=optimizer, loss=loss_for(self.config))
        return model

    def warm_start_without_heads(self, model: keras.Model, path: Path) -> bool:
        """With a distance head, load ``path``, weights of the same U-Net without one, into every
        other layer of ``model`` (the head keeps its initial weights). False when that does not
        apply or the file does not fit that U-Net either."""
        from unet.model import build_unet

        if not self.config.distance_head:
            return False
        with compute_policy(self.precision):
            plain = build_unet(self.config.replace(distance_head=False, encoder_weights=None))
        try:
            plain.load_weights(str(path))
        except Exception:  # h5py / Keras raise many kinds; the caller reports the first failure
            return False
        for layer in plain.layers:
            model.get_layer(layer.name).set_weights(layer.get_weights())
        print(f"warm start: {path.name} has no distance head; the head starts fresh")
        return True

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


class MrcnnTask(_Scaled):
    """Mask R-CNN training: Matterport's stages (``layers``), optional init weights by layer name.

    Args:
        config: mrcnn Config (STEPS_PER_EPOCH, AUGMENT, optimiser fields...).
        layers: 'heads', '3+', '4+', '5+', 'all' or a regex over layer names.
        init_weights: HDF5 weights loaded by layer name before training (mismatches skipped).
        cascade_from: a single-stage model's weights file to start a cascade model from
            (mrcnn.model.warm_start_cascade).
        precision: 'float32', or 'bfloat16' for the backbone, FPN and heads (float32 weights;
            anchors, proposals, targets, RoIAlign and the losses stay float32: mrcnn.model).
    """

    name = "mrcnn"

    def __init__(self, config: Config, layers: str = "all", init_weights: str | None = None,
                 cascade_from: str | None = None, precision: str = "float32"):
        self.config = config
        self.precision = check_precision(precision)
        self.layers = layers
        self.init_weights = init_weights
        self.cascade_from = cascade_from

    @property
    def per_replica_batch(self) -> int:
        return self.config.IMAGES_PER_GPU

    @property
    def base_learning_rate(self) -> float:
        return self.config.LEARNING_RATE

    @property
    def data_config(self) -> Config:
        """The config the data is made with: GPU_COUNT = replicas, so BATCH_SIZE is the global batch."""
        replicas = self.scaling.replicas if self.scaling else 1
        return self.config.replace(GPU_COUNT=replicas) if self.config.GPU_COUNT != replicas else self.config

    def train_data(self, samples: list, seed: int, **workers: Any) -> keras.utils.PyDataset:
        from mrcnn.data import MrcnnDataset

        return MrcnnDataset(samples, self.data_config, training=True, seed=seed, **workers)

    def val_data(self, samples: list) -> Any:
        from mrcnn.data import MrcnnDataset

        return MrcnnDataset(samples, self.data_config, training=False)

    def build(self, fresh: bool = True) -> keras.Model:
        """The compiled model (call inside the strategy's scope); ``fresh``: apply init_weights."""
        from mrcnn.model import MaskRCNN

        model = MaskRCNN(self.config, precision=self.precision)
        if self.init_weights and fresh:
            from mrcnn.weights import load_weights_by_name

            report = load_weights_by_name(model, self.init_weights, skip_mismatch=True)
            print(f"loaded {len(report['loaded'])} layers by name from {self.init_weights}")
        if self.cascade_from and fresh:
            from mrcnn.model import warm_start_cascade

            report = warm_start_cascade(model, self.cascade_from)
            print(f"cascade from {self.cascade_from}: {len(report['from_first_stage'])} stage layers from its box head")
        model.compile_for_training(self.learning_rate, self.layers)
        return model

    def warm_start_without_heads(self, model: keras.Model, path: Path) -> bool:
        """With a finer mask head (MASK_SHAPE 56) than ``path``'s model (28), start from it: its
        layers copied, the extra upsampling as nearest-neighbour (mrcnn.model.warm_start_finer_masks).
        False when that does not apply."""
        from mrcnn.model import warm_start_finer_masks
        from preprocessing.settings import config_path_for

        config_path = config_path_for(path)
        if not config_path.is_file():
            return False
        stored = Config.load(config_path)
        if stored.MASK_UPSAMPLINGS >= self.config.MASK_UPSAMPLINGS:
            return False
        report = warm_start_finer_masks(model, path, stored)
        print(f"warm start: {path.name} has {tuple(stored.MASK_SHAPE)} masks; "
              f"{', '.join(report['nearest_upsampling'])} start as nearest-neighbour upsampling")
        return True

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
