"""U-Net configuration: every field documented, validated when built, saved beside weights.

A trained U-Net on disk is a pair ``NAME.weights.h5`` + ``NAME.json`` (this config, in the
one JSON format of :class:`preprocessing.settings.Settings`), so prediction needs only the
weights path.
"""

from __future__ import annotations

from typing import Any

from preprocessing.errors import NucleiError
from preprocessing.settings import Settings

# What the watershed grows seeds over, lowest first (unet.instances.growth_surface): 'body':
# -P(body), the default; 'body_minus_border': P(border) - P(body), so the predicted border is a
# ridge between touching nuclei; 'distance': minus the distance to the background, so basins
# split at the necks of the foreground (its shape, not the network's maps); 'predicted_distance':
# minus the network's distance map (distance_head), basins at the nuclei's predicted centres.
WATERSHED_SURFACES = ("body", "body_minus_border", "distance", "predicted_distance")
# Where watershed seeds come from: 'body': P(body) > seed_threshold; 'distance': the predicted
# distance map > seed_threshold (distance_head), the cores of touching nuclei apart.
SEED_SOURCES = ("body", "distance")

# Output channels of the network, in order (softmax over the three).
CLASSES = ("body", "border", "background")
# With distance_head, one more output channel after the classes: each nucleus pixel's distance to
# the nucleus' edge over the nucleus' largest such distance (0 on the background, 1 at its centre).
DISTANCE = len(CLASSES)


class UNetConfig(Settings):
    """Everything that builds, trains and decodes one U-Net."""

    kind = "unet"

    # --- network -------------------------------------------------------------
    # Encoder: 'plain' (conv-BN-ReLU blocks trained from scratch) or 'mobilenetv2'
    # (preprocessing.mobilenetv2's torch-compatible MobileNetV2; ImageNet weights from encoder_weights,
    # e.g. weights/mobilenetv2_imagenet.weights.h5 made by tools.convert_weights).
    encoder: str = "plain"
    # Levels of down-sampling; the input side must be a multiple of 2**depth.
    depth: int = 4
    # Filters of the first level; level k has base_filters * 2**k, capped by max_filters.
    base_filters: int = 32
    max_filters: int = 256
    # Batch normalisation after each convolution.
    batch_norm: bool = True
    # Dropout rate in the bottleneck (0 = off).
    dropout: float = 0.1
    # Dilation rates of parallel 3x3 convolutions summed in the bottleneck: more
    # context for crowded and micro nuclei (the seed talk). () = plain bottleneck.
    bottleneck_dilations: tuple[int, ...] = (1, 2, 4)
    # Path of the ImageNet encoder weights (.weights.h5), for encoder='mobilenetv2'.
    encoder_weights: str | None = None
    # An auxiliary output (channel DISTANCE, sigmoid): the normalised distance map of each nucleus
    # (unet.targets.distance_target). It teaches the network where touching nuclei's centres lie;
    # seed_source / watershed_surface can decode with it.
    distance_head: bool = False

    # --- input ---------------------------------------------------------------
    # 'plain' (RGB / 255) or 'clahe' (CLAHE on L of LAB plus H of HSV: 2 channels).
    normalization: str = "plain"
    # Invert images whose background is light so nuclei are always bright.
    invert_light_background: bool = False

    # --- targets and loss ----------------------------------------------------
    # Border band of each nucleus: width grows with nucleus size,
    # clip(round(sqrt(area) * border_width_factor), 1, border_width_max) pixels.
    border_width_factor: float = 0.08
    border_width_max: int = 3
    # Loss weights per class in the cross-entropy (body, border, background).
    class_weights: tuple[float, ...] = (1.0, 2.0, 0.5)
    # Weight of the soft Dice term on the foreground (body + border).
    dice_weight: float = 1.0
    # Focal-loss gamma (0 = plain cross-entropy): more attention to hard pixels.
    focal_gamma: float = 0.0
    # Weight of the distance head's loss (binary cross-entropy against the soft distance target).
    distance_weight: float = 1.0

    # --- instances (post-processing; tuned on the validation split) ----------
    # A pixel is foreground where P(body) + P(border) exceeds this.
    foreground_threshold: float = 0.5
    # Seeds: connected components of the seed map (seed_source) above this.
    seed_threshold: float = 0.7
    # Seeds smaller than this many pixels are dropped.
    min_seed_size: int = 3
    # Final nuclei smaller than this many pixels are dropped.
    min_nucleus_size: int = 8
    # What seeds grow over: 'body' (-P(body)), 'body_minus_border' or 'distance'
    # (WATERSHED_SURFACES above; measured per IoU threshold in bench/RESULTS.md).
    watershed_surface: str = "body"
    # The seed map: 'body' or 'distance' (SEED_SOURCES above; 'distance' needs distance_head).
    seed_source: str = "body"

    # --- training ------------------------------------------------------------
    crop_size: int = 256
    batch_size: int = 8
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4

    # --- inference -----------------------------------------------------------
    # Images larger than this on a side are processed in overlapping tiles.
    tile_size: int = 1024
    tile_overlap: int = 64

    def validate(self) -> None:
        def fail(message):
            raise NucleiError(f"UNetConfig: {message}")

        if self.encoder not in ("plain", "mobilenetv2"):
            fail(f"encoder must be 'plain' or 'mobilenetv2', got {self.encoder!r}")
        if self.encoder == "mobilenetv2" and self.depth != 5:
            fail("encoder='mobilenetv2' down-samples 5 times: set depth=5")
        if not 1 <= self.depth <= 7:
            fail(f"depth must be 1..7, got {self.depth}")
        if self.base_filters < 1 or self.max_filters < self.base_filters:
            fail("need 1 <= base_filters <= max_filters")
        if not 0 <= self.dropout < 1:
            fail(f"dropout must be in [0, 1), got {self.dropout}")
        if any(int(d) < 1 for d in self.bottleneck_dilations):
            fail("bottleneck_dilations must be positive integers")
        if self.normalization not in ("plain", "clahe"):
            fail(f"normalization must be 'plain' or 'clahe', got {self.normalization!r}")
        if len(self.class_weights) != len(CLASSES):
            fail(f"class_weights needs {len(CLASSES)} values")
        if self.watershed_surface not in WATERSHED_SURFACES:
            fail(f"watershed_surface must be one of {', '.join(WATERSHED_SURFACES)}, got {self.watershed_surface!r}")
        if self.seed_source not in SEED_SOURCES:
            fail(f"seed_source must be one of {', '.join(SEED_SOURCES)}, got {self.seed_source!r}")
        if not self.distance_head and (self.seed_source == "distance" or self.watershed_surface == "predicted_distance"):
            fail("seed_source='distance' and watershed_surface='predicted_distance' need distance_head=True")
        if self.distance_weight < 0:
            fail(f"distance_weight must be >= 0, got {self.distance_weight}")
        for name in ("foreground_threshold", "seed_threshold"):
            if not 0 < getattr(self, name) < 1:
                fail(f"{name} must be in (0, 1)")
        if self.crop_size % self.multiple != 0:
            fail(f"crop_size {self.crop_size} must be a multiple of 2**depth = {self.multiple}")
        if self.tile_size % self.multiple != 0 or self.tile_overlap >= self.tile_size // 2:
            fail("tile_size must be a multiple of 2**depth and tile_overlap < tile_size / 2")
        if self.batch_size < 1 or self.learning_rate <= 0:
            fail("batch_size must be >= 1 and learning_rate > 0")

    # --- derived values (computed here only) --------------------------------
    @property
    def multiple(self) -> int:
        """Input sides must be multiples of this."""
        return 2 ** self.depth

    @property
    def input_channels(self) -> int:
        return 2 if self.normalization == "clahe" else 3

    @property
    def output_channels(self) -> int:
        """Channels of the network's output: the classes, then the distance map if any."""
        return len(CLASSES) + int(self.distance_head)

    def level_filters(self) -> list[int]:
        """Filters per encoder level, [depth + 1] including the bottleneck."""
        return [min(self.base_filters * 2 ** k, self.max_filters) for k in range(self.depth + 1)]

    # --- persistence ---------------------------------------------------------
    @classmethod
    def upgrade(cls, document: Any) -> Any:
        # files written before the one settings format: {"model": "unet", "config": {...}}
        if isinstance(document, dict) and "kind" not in document and document.get("model") == "unet":
            return {"kind": "unet", "config": document.get("config")}
        return document
