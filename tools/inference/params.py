"""One object for every inference choice: TTA, U-Net thresholds, ensemble, merging, post-processing.

:class:`InferenceParams` is what ``python -m tools.tune`` writes, what ``python -m tools.predict``
reads (``--params``, or ``X.params.json`` shipped beside ``X.weights.h5``), and what training's
final validation uses (the defaults). On disk::

    {"kind": "inference_params",
     "config": {"tta": 1, "thresholds": {...}, "ensemble": {...}, "merge": {...}, "postprocess": {...},
                "max_memory_mb": 3000,
                "unfamiliar": null},  # or {"tta": 8, ...}: the choices for images unlike training
     "tuning": {...}}            # optional: how and on what the values were chosen

Empty ``thresholds`` mean the U-Net config's own watershed thresholds. ``max_memory_mb``
changes no result on images the budget lets through whole (up to the model's tile size,
1024 pixels for the shipped models, with the default); larger images are tiled.

``unfamiliar`` holds a second, complete set of these choices for the images that
``tools.inference.folder.unfamiliar_image`` flags as farther from every training acquisition
than any training image (tools.inference.routing applies it): a network is less sure of nuclei
in an acquisition it never saw, and there 8-way TTA without a tight score cut wins where a
single pass tuned on familiar images loses (bench/RESULTS.md, "Images unlike the training set
get 8-way TTA").
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from preprocessing.errors import NucleiError
from preprocessing.settings import Settings, read_json
from tools.inference.ensemble import EnsembleConfig
from tools.inference.postprocess import PostprocessConfig

# U-Net watershed fields (unet.config.UNetConfig) that inference parameters may override.
THRESHOLD_FIELDS = ("foreground_threshold", "seed_threshold", "min_seed_size", "min_nucleus_size",
                    "watershed_surface", "seed_source")
# Mask R-CNN overrides in the same ``thresholds`` object: the probability at which a pasted mask
# pixel belongs to its nucleus (Config.MASK_THRESHOLD; used when the Mask R-CNN runs alone).
MRCNN_THRESHOLD_FIELDS = ("mask_threshold",)
# the overrides that are names, not numbers
TEXT_THRESHOLDS = ("watershed_surface", "seed_source")
MAX_TTA = 15  # transforms in tools.inference.tta
# --max-memory: below this no model fits at all; above it nothing a machine holds.
MIN_MEMORY_MB, MAX_MEMORY_MB = 256, 16 * 1024 * 1024


class MergeConfig(Settings):
    """How instance predictions of TTA variants are merged (tools.inference.merge)."""

    kind = "merge"

    # Instances of different variants whose IoU reaches this form one cluster.
    cluster_iou: float = 0.5
    # A cluster becomes a nucleus when at least this share of the variants found it.
    min_agreement: float = 0.5
    # A pixel belongs to the merged nucleus when this share of the cluster's members cover it.
    pixel_vote: float = 0.5

    def validate(self) -> None:
        for name in ("cluster_iou", "min_agreement", "pixel_vote"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
                raise NucleiError(f"merge {name} must be a number in (0, 1], got {value!r}")


class InferenceParams(Settings):
    """Every choice made at inference time, validated when built."""

    kind = "inference_params"

    # Test-time transforms, 1 (single pass) .. 15 (all of tools.inference.tta).
    tta: int = 1
    # U-Net watershed overrides (names in THRESHOLD_FIELDS) and Mask R-CNN ones (MRCNN_THRESHOLD_FIELDS);
    # empty: the model config's values.
    thresholds: dict = dataclasses.field(default_factory=dict)
    # U-Net + Mask R-CNN ensemble (used when both models run).
    ensemble: EnsembleConfig = dataclasses.field(default_factory=EnsembleConfig)
    # Merging of instance predictions over TTA variants (Mask R-CNN).
    merge: MergeConfig = dataclasses.field(default_factory=MergeConfig)
    # Post-processing of the final label image.
    postprocess: PostprocessConfig = dataclasses.field(default_factory=PostprocessConfig)
    # Peak memory (MB) prediction aims at: tile side and tiles per batch are chosen so the
    # runtime, the models, the image-size arrays and one network batch fit (tools.inference.pipeline).
    max_memory_mb: int = 3000
    # The same choices (an object of these fields but this one) for images unlike every training
    # acquisition; null: the choices above for every image.
    unfamiliar: "InferenceParams | None" = None

    def validate(self) -> None:
        if isinstance(self.tta, bool) or not isinstance(self.tta, int) or not 1 <= self.tta <= MAX_TTA:
            raise NucleiError(f"tta (--tta) must be a whole number 1..{MAX_TTA}, got {self.tta!r}")
        memory = self.max_memory_mb
        if isinstance(memory, bool) or not isinstance(memory, int) or not MIN_MEMORY_MB <= memory <= MAX_MEMORY_MB:
            raise NucleiError(f"max_memory_mb (--max-memory) must be a whole number of MB, "
                              f"{MIN_MEMORY_MB}..{MAX_MEMORY_MB}, got {memory!r}")
        if not isinstance(self.thresholds, dict):
            raise NucleiError(f"inference thresholds must be an object, got {self.thresholds!r}")
        known = THRESHOLD_FIELDS + MRCNN_THRESHOLD_FIELDS
        unknown = set(self.thresholds) - set(known)
        if unknown:
            raise NucleiError(f"unknown inference thresholds: {', '.join(sorted(unknown))} "
                              f"(known: {', '.join(known)})")
        for name, value in self.thresholds.items():
            if name in TEXT_THRESHOLDS:
                if not isinstance(value, str):
                    raise NucleiError(f"inference threshold {name} must be a name, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, (int, float)):
                raise NucleiError(f"inference threshold {name} must be a number, got {value!r}")
            elif name == "mask_threshold" and not 0 < value < 1:
                raise NucleiError(f"inference threshold mask_threshold must be in (0, 1), got {value!r}")
        for name, cls in (("ensemble", EnsembleConfig), ("merge", MergeConfig), ("postprocess", PostprocessConfig)):
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, cls.from_dict(value))
            elif not isinstance(value, cls):
                raise NucleiError(f"inference {name} must be an object, got {value!r}")
        if isinstance(self.unfamiliar, dict):
            try:
                self.unfamiliar = InferenceParams.from_dict(self.unfamiliar)
            except NucleiError as error:
                raise NucleiError(f"in the unfamiliar params: {error}") from None
        if self.unfamiliar is not None:
            if not isinstance(self.unfamiliar, InferenceParams):
                raise NucleiError(f"inference unfamiliar must be an object of inference params or null, "
                                  f"got {self.unfamiliar!r}")
            if self.unfamiliar.unfamiliar is not None:
                raise NucleiError("inference unfamiliar params cannot hold unfamiliar params of their own")

    @classmethod
    def upgrade(cls, document: Any) -> Any:
        # files written before the one settings format held the fields at the top level
        if isinstance(document, dict) and "kind" not in document:
            config = {name: document[name] for name in cls.field_names() if name in document}
            if config.get("thresholds") is None:
                config.pop("thresholds", None)
            tuning = {k: v for k, v in document.items() if k not in config}
            return {"kind": cls.kind, "config": config, "tuning": tuning}
        return document

    def with_overrides(self, tta: int | None = None, postprocess: dict[str, Any] | None = None,
                       max_memory: int | None = None) -> "InferenceParams":
        """A copy with command-line choices applied: ``tta``, post-processing fields and
        ``max_memory`` (MB, --max-memory); None: keep. They apply to the ``unfamiliar`` params
        too: a choice made on the command line holds for every image."""
        changes: dict[str, Any] = {}
        if self.unfamiliar is not None:
            unfamiliar = self.unfamiliar.with_overrides(tta, postprocess, max_memory)
            if unfamiliar is not self.unfamiliar:
                changes["unfamiliar"] = unfamiliar.to_dict()
        if tta is not None:
            changes["tta"] = tta
        if max_memory is not None:
            changes["max_memory_mb"] = max_memory
        post = {k: v for k, v in (postprocess or {}).items() if v is not None}
        if post:
            changes["postprocess"] = {**self.postprocess.to_dict(), **post}
        return self.replace(**changes) if changes else self

    def for_unfamiliar_images(self) -> "InferenceParams":
        """The params for images unlike every training acquisition: ``unfamiliar``, or these
        (without their ``unfamiliar``) when there are none."""
        return self.unfamiliar if self.unfamiliar is not None else self


def load_params(path: str | Path) -> InferenceParams:
    """Read an inference-parameters file; every problem names the file."""
    return InferenceParams.from_document(read_json(path), path)


def save_params(params: InferenceParams, path: str | Path, tuning: dict[str, Any] | None = None) -> None:
    """Write ``params`` (and how they were chosen) atomically."""
    from preprocessing.files import save_json_atomic

    save_json_atomic(path, {"kind": params.kind, "config": params.to_dict(), "tuning": tuning or {}})
