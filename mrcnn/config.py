"""Mask R-CNN configuration: every field documented, validated on construction.

Field names follow Matterport's ``Config`` so its users recognise them. Use it the
same way: subclass and override class attributes, or pass overrides as keyword
arguments::

    class MyConfig(Config):
        NAME = "mine"
        NUM_CLASSES = 1 + 1

    config = MyConfig(IMAGES_PER_GPU=4)

It is a :class:`preprocessing.settings.Settings` like every config of the project (a
dataclass, validated when built: a bad value raises
:class:`preprocessing.errors.NucleiError` naming the field). Derived values
(``BATCH_SIZE``, ``MASK_UPSAMPLINGS``, ...) are read-only properties computed from the fields.

A config round-trips through the one JSON format (:meth:`to_dict`, :meth:`from_dict`,
:meth:`save`, :meth:`load`); a trained model on disk is its weights plus that JSON.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from preprocessing.errors import NucleiError
from preprocessing.settings import Settings

BACKBONES = ("mobilenetv2", "resnet50", "resnet101", "tiny")
# Values computed from the fields (properties of Config), never stored in its JSON.
DERIVED = ("BATCH_SIZE", "MASK_UPSAMPLINGS", "ANCHORS_PER_LOCATION", "PYRAMID_LEVELS", "IMAGE_CHANNEL_COUNT")


class Config(Settings):
    """Base configuration. Class attributes are the defaults; see each comment."""

    kind = "mrcnn"

    # --- naming and hardware -------------------------------------------------
    NAME: str = "mrcnn"  # run name, used for folders
    GPU_COUNT: int = 1  # replicas; the training engine sets it to the run's replica count (tools.engine.tasks)
    IMAGES_PER_GPU: int = 2  # images per replica per step
    STEPS_PER_EPOCH: int = 1000  # training steps per epoch (data is sampled at random)
    VALIDATION_STEPS: int = 50  # validation steps at the end of each epoch
    SEED: int = 0  # one seed for data order, crops and augmentation

    # --- backbone and pyramid ------------------------------------------------
    BACKBONE: str = "resnet101"  # one of BACKBONES
    BACKBONE_ALPHA: float = 1.0  # width multiplier (mobilenetv2 only: 0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
    BACKBONE_STRIDES: tuple = (4, 8, 16, 32, 64)  # strides of P2..P6 (fixed by the architecture)
    TOP_DOWN_PYRAMID_SIZE: int = 256  # channels of every FPN level
    TRAIN_BN: bool = False  # train batch norm (True when training from scratch)
    # ImageNet weights for the backbone (path to a named-layer file such as
    # weights/mobilenetv2_imagenet.weights.h5, see unet/pretrained.py), loaded when the model
    # is built; None: random init. mobilenetv2 with BACKBONE_ALPHA 1.0 only. Used for training
    # only: a trained model's weights hold the backbone, so prediction clears it.
    BACKBONE_WEIGHTS: str | None = None

    # --- classes -------------------------------------------------------------
    NUM_CLASSES: float = 1 + 1  # background + object classes

    # --- RPN -----------------------------------------------------------------
    RPN_ANCHOR_SCALES: tuple = (32, 64, 128, 256, 512)  # one anchor side (pixels) per level P2..P6
    RPN_ANCHOR_RATIOS: tuple = (0.5, 1.0, 2.0)  # width / height of anchors
    RPN_ANCHOR_STRIDE: int = 1  # anchors every N feature-map cells
    RPN_HEAD_CHANNELS: int = 512  # channels of the shared RPN 3x3 conv
    RPN_NMS_THRESHOLD: float = 0.7  # IoU for NMS over proposals
    RPN_TRAIN_ANCHORS_PER_IMAGE: int = 256  # anchors sampled per image for the RPN loss
    RPN_POSITIVE_IOU: float = 0.7  # anchors at or above this IoU with a nucleus are positive
    RPN_NEGATIVE_IOU: float = 0.3  # anchors below this IoU with every nucleus are negative
    PRE_NMS_LIMIT: int = 6000  # top-scoring anchors kept before NMS
    POST_NMS_ROIS_TRAINING: int = 2000  # proposals kept after NMS, training
    POST_NMS_ROIS_INFERENCE: int = 1000  # proposals kept after NMS, inference
    RPN_BBOX_STD_DEV: tuple = (0.1, 0.1, 0.2, 0.2)  # divides RPN box deltas

    # --- input ---------------------------------------------------------------
    # 'standardize' (per image and channel: zero mean, unit std), 'imagenet' (RGB / 255 with
    # torchvision's ImageNet mean / std, what BACKBONE_WEIGHTS were trained on), or a
    # preprocessing.normalize mode ('plain', 'clahe').
    NORMALIZE: str = "standardize"
    INVERT_LIGHT_BACKGROUND: bool = False  # invert images with a light background (preprocessing.normalize)
    IMAGE_CROP_SIZE: int = 512  # training crops are square, this side (multiple of 64)
    IMAGE_PAD_MULTIPLE: int = 64  # inference pads each side up to a multiple of this
    IMAGE_MAX_PIXELS: int = 4096 * 4096  # refuse larger images at inference
    AUGMENT: str | None = "light"  # preprocessing.augment preset ('none', 'light', 'heavy'), or None
    MAX_GT_INSTANCES: int = 100  # nuclei kept per training crop (largest first)
    # each nucleus' mask resized into its own box (memory); the mask targets are resampled from
    # it, so keep it at least MASK_SHAPE (56 for a 56 x 56 mask head) or they come out coarser
    MINI_MASK_SHAPE: tuple = (56, 56)

    # --- RoI heads -----------------------------------------------------------
    TRAIN_ROIS_PER_IMAGE: int = 200  # RoIs sampled per image for the heads
    ROI_POSITIVE_RATIO: float = 0.33  # at most this share of them positive
    ROI_POSITIVE_IOU: float = 0.5  # RoIs at or above this IoU with a nucleus are positive
    USE_GT_AS_PROPOSALS: bool = True  # add ground-truth boxes to the proposals while training
    POOL_SIZE: int = 7  # RoIAlign output for the box head
    MASK_POOL_SIZE: int = 14  # RoIAlign output for the mask head
    MASK_SHAPE: tuple = (28, 28)  # mask head output: (28, 28), or (56, 56) with MASK_POOL_SIZE 14 or 28
    FPN_CLASSIF_FC_LAYERS_SIZE: int = 1024  # box head hidden width
    MASK_HEAD_CHANNELS: int = 256  # mask head conv channels
    MASK_HEAD_CONVS: int = 4  # mask head 3x3 convs before upsampling
    BBOX_STD_DEV: tuple = (0.1, 0.1, 0.2, 0.2)  # divides head box deltas
    ROI_CANONICAL_SIZE: int = 224  # box side mapped to ROI_CANONICAL_LEVEL
    ROI_CANONICAL_LEVEL: int = 4  # pyramid level for a box of ROI_CANONICAL_SIZE

    # --- Cascade R-CNN (Cai & Vasconcelos, CVPR 2018; see mrcnn/cascade.py) ---
    # Box-head stages: 1 = the single Mask R-CNN box head (ROI_POSITIVE_IOU, BBOX_STD_DEV);
    # 3 = Cascade R-CNN: stage k is trained on stage k-1's refined boxes at IoU CASCADE_IOUS[k],
    # the class score is the mean of the stages' scores, the boxes and masks are the last stage's.
    CASCADE_STAGES: int = 1
    CASCADE_IOUS: tuple = (0.5, 0.6, 0.7)  # positive IoU of each stage's targets (CASCADE_STAGES > 1)
    # divides each stage's box deltas (the paper's: the deltas shrink as the boxes improve)
    CASCADE_BBOX_STD_DEVS: tuple = ((0.1, 0.1, 0.2, 0.2), (0.05, 0.05, 0.1, 0.1), (0.033, 0.033, 0.067, 0.067))
    # weight of each stage's class and box losses (Detectron's / mmdetection's Cascade R-CNN)
    CASCADE_LOSS_WEIGHTS: tuple = (1.0, 0.5, 0.25)

    # --- detection -----------------------------------------------------------
    DETECTION_MAX_INSTANCES: int = 100  # detections kept per image
    DETECTION_MIN_CONFIDENCE: float = 0.7  # detections below this score are dropped
    DETECTION_NMS_THRESHOLD: float = 0.3  # per-class NMS IoU
    MASK_THRESHOLD: float = 0.5  # mask probability at which a pixel belongs to the nucleus
    # How a detection's M x M mask goes into its box (mrcnn/paste.py): 'soft' samples the
    # probabilities bilinearly at each pixel, then thresholds at MASK_THRESHOLD (what the
    # project always did); 'binary' thresholds the M x M mask first, then nearest-neighbour.
    MASK_PASTE: str = "soft"

    # --- optimisation --------------------------------------------------------
    OPTIMIZER: str = "SGD"  # 'SGD' (momentum) or 'ADAM'
    LEARNING_RATE: float = 0.001
    LEARNING_MOMENTUM: float = 0.9
    WEIGHT_DECAY: float = 0.0001  # L2 on kernels (not on biases / BN)
    GRADIENT_CLIP_NORM: float = 5.0  # clip the global gradient norm
    LOSS_WEIGHTS: dict = {
        "rpn_class_loss": 1.0,
        "rpn_bbox_loss": 1.0,
        "mrcnn_class_loss": 1.0,
        "mrcnn_bbox_loss": 1.0,
        "mrcnn_mask_loss": 1.0,
    }

    def __post_init__(self) -> None:
        # JSON has no tuples: the per-stage std devs come back as lists of lists
        value = self.CASCADE_BBOX_STD_DEVS
        if isinstance(value, (list, tuple)) and all(isinstance(v, (list, tuple)) for v in value):
            self.CASCADE_BBOX_STD_DEVS = tuple(tuple(v) for v in value)
        super().__post_init__()

    # ------------------------------------------------------------------ files
    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str | Path | None = None) -> "Config":
        values = dict(values)
        values.pop("CONFIG_CLASS", None)  # written by files before the one settings format
        for name in DERIVED:
            values.pop(name, None)
        return super().from_dict(values, source)

    @classmethod
    def upgrade(cls, document: Any) -> Any:
        # files written before the one settings format held the fields at the top level
        if isinstance(document, dict) and "kind" not in document and "BACKBONE" in document:
            return {"kind": "mrcnn", "config": document}
        return document

    def display(self) -> str:
        return "\n".join(f"{name:30} {getattr(self, name)}" for name in self.field_names() + list(DERIVED))

    # --- derived values (computed here only, never set by hand) -------------
    @property
    def BATCH_SIZE(self) -> int:
        return self.IMAGES_PER_GPU * self.GPU_COUNT

    @property
    def MASK_UPSAMPLINGS(self) -> int:
        return int(round(math.log2(self.MASK_SHAPE[0] / self.MASK_POOL_SIZE)))

    @property
    def ANCHORS_PER_LOCATION(self) -> int:
        return len(self.RPN_ANCHOR_RATIOS)

    @property
    def PYRAMID_LEVELS(self) -> tuple[int, ...]:
        return (2, 3, 4, 5, 6)

    @property
    def IMAGE_CHANNEL_COUNT(self) -> int:
        from preprocessing.normalize import channels_for

        return channels_for(self.NORMALIZE)

    # -------------------------------------------------------------- validation
    def validate(self) -> None:
        def fail(name, why):
            raise NucleiError(f"config {name}={getattr(self, name)!r}: {why}")

        def positive_int(name):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                fail(name, "must be a positive integer")

        def fraction(name, low=0.0, high=1.0):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not low <= value <= high:
                fail(name, f"must be a number in [{low}, {high}]")

        for name in ("GPU_COUNT", "IMAGES_PER_GPU", "STEPS_PER_EPOCH", "VALIDATION_STEPS",
                     "TOP_DOWN_PYRAMID_SIZE", "NUM_CLASSES", "RPN_ANCHOR_STRIDE", "RPN_HEAD_CHANNELS",
                     "RPN_TRAIN_ANCHORS_PER_IMAGE", "PRE_NMS_LIMIT", "POST_NMS_ROIS_TRAINING",
                     "POST_NMS_ROIS_INFERENCE", "IMAGE_CROP_SIZE", "IMAGE_PAD_MULTIPLE", "MAX_GT_INSTANCES",
                     "TRAIN_ROIS_PER_IMAGE", "POOL_SIZE", "MASK_POOL_SIZE", "FPN_CLASSIF_FC_LAYERS_SIZE",
                     "MASK_HEAD_CHANNELS", "DETECTION_MAX_INSTANCES", "ROI_CANONICAL_SIZE",
                     "ROI_CANONICAL_LEVEL", "IMAGE_MAX_PIXELS"):
            positive_int(name)
        if not isinstance(self.MASK_HEAD_CONVS, int) or self.MASK_HEAD_CONVS < 0:
            fail("MASK_HEAD_CONVS", "must be an integer >= 0")
        if not isinstance(self.SEED, int):
            fail("SEED", "must be an integer")
        if self.NUM_CLASSES < 2:
            fail("NUM_CLASSES", "counts the background: at least 2")
        if self.BACKBONE not in BACKBONES:
            fail("BACKBONE", f"must be one of {', '.join(BACKBONES)}")
        if self.BACKBONE == "mobilenetv2" and self.BACKBONE_ALPHA not in (0.35, 0.5, 0.75, 1.0, 1.3, 1.4):
            fail("BACKBONE_ALPHA", "mobilenetv2 takes 0.35, 0.5, 0.75, 1.0, 1.3 or 1.4")
        if tuple(self.BACKBONE_STRIDES) != (4, 8, 16, 32, 64):
            fail("BACKBONE_STRIDES", "the FPN gives P2..P6 at strides (4, 8, 16, 32, 64)")
        scales = tuple(self.RPN_ANCHOR_SCALES)
        if len(scales) != 5 or any(not isinstance(s, (int, float)) or s <= 0 for s in scales):
            fail("RPN_ANCHOR_SCALES", "needs 5 positive sides, one per level P2..P6")
        ratios = tuple(self.RPN_ANCHOR_RATIOS)
        if not ratios or any(not isinstance(r, (int, float)) or r <= 0 for r in ratios):
            fail("RPN_ANCHOR_RATIOS", "needs positive width/height ratios")
        for name in ("RPN_BBOX_STD_DEV", "BBOX_STD_DEV"):
            value = tuple(getattr(self, name))
            if len(value) != 4 or any(v <= 0 for v in value):
                fail(name, "needs 4 positive numbers")
        for name in ("RPN_NMS_THRESHOLD", "RPN_POSITIVE_IOU", "RPN_NEGATIVE_IOU", "ROI_POSITIVE_IOU",
                     "DETECTION_MIN_CONFIDENCE", "DETECTION_NMS_THRESHOLD", "MASK_THRESHOLD"):
            fraction(name)
        fraction("ROI_POSITIVE_RATIO", 0.01, 1.0)
        if self.RPN_NEGATIVE_IOU > self.RPN_POSITIVE_IOU:
            fail("RPN_NEGATIVE_IOU", "must not exceed RPN_POSITIVE_IOU")
        if self.PRE_NMS_LIMIT < self.POST_NMS_ROIS_TRAINING or self.PRE_NMS_LIMIT < self.POST_NMS_ROIS_INFERENCE:
            fail("PRE_NMS_LIMIT", "must be at least POST_NMS_ROIS_TRAINING and POST_NMS_ROIS_INFERENCE")
        if self.IMAGE_CROP_SIZE % 64:
            fail("IMAGE_CROP_SIZE", "must be a multiple of 64 (the stride of P6)")
        if self.IMAGE_PAD_MULTIPLE % 64:
            fail("IMAGE_PAD_MULTIPLE", "must be a multiple of 64 (the stride of P6)")
        mask = tuple(self.MASK_SHAPE)
        if len(mask) != 2 or mask[0] != mask[1]:
            fail("MASK_SHAPE", "must be square, e.g. (28, 28) or (56, 56)")
        ups = mask[0] / self.MASK_POOL_SIZE
        if ups < 2 or ups != 2 ** round(math.log2(ups)):
            fail("MASK_SHAPE", f"must be MASK_POOL_SIZE ({self.MASK_POOL_SIZE}) times 2, 4, 8 ...")
        mini = tuple(self.MINI_MASK_SHAPE)
        if len(mini) != 2 or any(not isinstance(v, int) or v < 4 for v in mini):
            fail("MINI_MASK_SHAPE", "needs two integers >= 4")
        if self.MASK_PASTE not in ("soft", "binary"):
            fail("MASK_PASTE", "must be 'soft' or 'binary'")
        self._validate_cascade(fail)
        if self.OPTIMIZER not in ("SGD", "ADAM"):
            fail("OPTIMIZER", "must be 'SGD' or 'ADAM'")
        for name in ("LEARNING_RATE", "GRADIENT_CLIP_NORM"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value <= 0:
                fail(name, "must be a positive number")
        fraction("LEARNING_MOMENTUM")
        if not isinstance(self.WEIGHT_DECAY, (int, float)) or self.WEIGHT_DECAY < 0:
            fail("WEIGHT_DECAY", "must be a number >= 0")
        expected = {"rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss", "mrcnn_mask_loss"}
        if not isinstance(self.LOSS_WEIGHTS, dict) or set(self.LOSS_WEIGHTS) != expected:
            fail("LOSS_WEIGHTS", f"needs exactly the keys {sorted(expected)}")
        if self.BACKBONE_WEIGHTS is not None:
            if not isinstance(self.BACKBONE_WEIGHTS, str) or not self.BACKBONE_WEIGHTS:
                fail("BACKBONE_WEIGHTS", "must be None or a path (string)")
            if self.BACKBONE != "mobilenetv2" or self.BACKBONE_ALPHA != 1.0:
                fail("BACKBONE_WEIGHTS", f"pretrained weights exist for mobilenetv2 with BACKBONE_ALPHA 1.0 only "
                                         f"(BACKBONE={self.BACKBONE!r}, BACKBONE_ALPHA={self.BACKBONE_ALPHA})")
        from preprocessing.normalize import MODES

        if self.NORMALIZE not in MODES:
            fail("NORMALIZE", f"must be one of {MODES}")
        if self.AUGMENT is not None:
            from preprocessing.augment import PRESETS

            if self.AUGMENT not in PRESETS:
                fail("AUGMENT", f"must be None or one of {PRESETS}")

    def _validate_cascade(self, fail) -> None:
        stages = self.CASCADE_STAGES
        if not isinstance(stages, int) or isinstance(stages, bool) or not 1 <= stages <= 8:
            fail("CASCADE_STAGES", "must be an integer in [1, 8] (1: one box head, 3: Cascade R-CNN)")

        def number(v):
            return isinstance(v, (int, float)) and not isinstance(v, bool)

        def per_stage(name, ok, what):
            value = getattr(self, name)
            if not isinstance(value, (list, tuple)) or not value or not all(ok(v) for v in value):
                fail(name, f"needs one {what} per stage")
            if stages > 1 and len(value) != stages:
                fail(name, f"needs {stages} entries, one per stage (CASCADE_STAGES={stages})")

        per_stage("CASCADE_IOUS", lambda v: number(v) and 0 < v < 1, "IoU in (0, 1)")
        per_stage("CASCADE_BBOX_STD_DEVS",
                  lambda v: isinstance(v, (list, tuple)) and len(v) == 4 and all(number(x) and x > 0 for x in v),
                  "4 positive numbers")
        per_stage("CASCADE_LOSS_WEIGHTS", lambda v: number(v) and v >= 0, "number >= 0")


class NucleusConfig(Config):
    """Nuclei (DSB 2018): small objects, up to a few hundred per image.

    MobileNetV2-FPN so that it trains and predicts on a CPU; from scratch (no
    pretrained weights can be fetched here), hence TRAIN_BN and Adam.
    """

    NAME = "nucleus"
    BACKBONE = "mobilenetv2"
    BACKBONE_ALPHA = 1.0
    TOP_DOWN_PYRAMID_SIZE = 128
    TRAIN_BN = True
    IMAGES_PER_GPU = 4
    STEPS_PER_EPOCH = 200
    VALIDATION_STEPS = 20
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    RPN_HEAD_CHANNELS = 256
    RPN_TRAIN_ANCHORS_PER_IMAGE = 320
    PRE_NMS_LIMIT = 6000
    POST_NMS_ROIS_TRAINING = 1000
    POST_NMS_ROIS_INFERENCE = 1000
    IMAGE_CROP_SIZE = 256
    MAX_GT_INSTANCES = 200
    MINI_MASK_SHAPE = (56, 56)
    TRAIN_ROIS_PER_IMAGE = 128
    FPN_CLASSIF_FC_LAYERS_SIZE = 512
    MASK_HEAD_CHANNELS = 128
    DETECTION_MAX_INSTANCES = 400
    DETECTION_MIN_CONFIDENCE = 0.5
    DETECTION_NMS_THRESHOLD = 0.3
    OPTIMIZER = "ADAM"
    LEARNING_RATE = 0.001
    WEIGHT_DECAY = 0.0001


class NucleusInferenceConfig(NucleusConfig):
    """Prediction settings for the nucleus config: one image at a time, padded to 64."""

    IMAGES_PER_GPU = 1
    IMAGE_PAD_MULTIPLE = 64


class TinyConfig(Config):
    """A very small model for tests: trains in seconds per hundred steps on a CPU."""

    NAME = "tiny"
    BACKBONE = "tiny"
    TOP_DOWN_PYRAMID_SIZE = 32
    TRAIN_BN = True
    IMAGES_PER_GPU = 2
    STEPS_PER_EPOCH = 10
    VALIDATION_STEPS = 2
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    RPN_HEAD_CHANNELS = 32
    RPN_TRAIN_ANCHORS_PER_IMAGE = 128
    PRE_NMS_LIMIT = 1000
    POST_NMS_ROIS_TRAINING = 200
    POST_NMS_ROIS_INFERENCE = 200
    IMAGE_CROP_SIZE = 128
    MAX_GT_INSTANCES = 64
    MINI_MASK_SHAPE = (28, 28)
    TRAIN_ROIS_PER_IMAGE = 64
    POOL_SIZE = 7
    MASK_POOL_SIZE = 7
    MASK_SHAPE = (14, 14)
    FPN_CLASSIF_FC_LAYERS_SIZE = 64
    MASK_HEAD_CHANNELS = 32
    MASK_HEAD_CONVS = 2
    DETECTION_MAX_INSTANCES = 64
    DETECTION_MIN_CONFIDENCE = 0.5
    AUGMENT = None
    OPTIMIZER = "ADAM"
    LEARNING_RATE = 0.003
    WEIGHT_DECAY = 0.0


CONFIGS = {"base": Config, "nucleus": NucleusConfig, "nucleus_inference": NucleusInferenceConfig, "tiny": TinyConfig}


def config_from_name(name: str, **overrides: Any) -> Config:
    """Build a named config ('base', 'nucleus', 'tiny', ...) with overrides."""
    if name not in CONFIGS:
        raise NucleiError(f"unknown config {name!r}; choose from {', '.join(CONFIGS)}")
    return CONFIGS[name](**overrides)
