"""Stained images unlike every training acquisition go to a model trained for new stains.

The shipped models are chosen on the domain-balanced validation, where `--augment stain`
(HED jitter, recolouring, zoom 0.5-2 with aspect; preprocessing.augment) costs a little; on
colour images re-stained and magnified as the held-out H&E scans are (bench/protocols.py's
"shifted" images), the stain-trained models win clearly (Mask R-CNN 0.238 -> 0.296 on the 10
colour validation images; the session-15 file scored 0.286). Both are shipped:
``X.stain.weights.h5`` beside ``X.weights.h5``, and a colour image that ``unfamiliar_image`` flags (farther from every
training domain than any training image: a limit the training set sets, not a tuned number)
is predicted by it. The validation and the bundled sample hold no such image, so their scores
are unchanged; grey unfamiliar images stay with the shipped model (the stain model is no better
on grey, and was not trained for them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

STAIN_SUFFIX = ".stain.weights.h5"


def stain_weights_for(weights: str | Path) -> Path | None:
    """The stain model shipped beside ``weights``: X.stain.weights.h5 for X.weights.h5 (None if absent)."""
    weights = Path(weights)
    if not weights.name.endswith(".weights.h5") or weights.name.endswith(STAIN_SUFFIX):
        return None
    path = weights.with_name(weights.name[: -len(".weights.h5")] + STAIN_SUFFIX)
    return path if path.is_file() else None


def goes_to_stain_model(image: np.ndarray, reference: dict) -> bool:
    """True for a stained (colour) image unlike every training acquisition.

    image: uint8 [H, W, 3]; reference: preprocessing.domains.domain_reference's dict."""
    from preprocessing.image_types import classify_image
    from tools.inference.folder import unfamiliar_image

    return classify_image(image) == "histology" and unfamiliar_image(image, reference) is not None


class StainRouter:
    """``predict(image)`` by the stain pipeline for the images :func:`goes_to_stain_model` picks,
    by ``familiar`` otherwise; every other attribute is the familiar pipeline's (its params, its
    networks: tuning and exports see the shipped model).

    Args:
        build_stained: makes the stain pipeline; called once, at the first image that needs it
            (a folder without unfamiliar stained images never loads the second networks).

    Attributes:
        routed: how many images went to the stain model so far.
    """

    def __init__(self, familiar: Any, build_stained: Callable[[], Any], reference: dict):
        self.familiar = familiar
        self.build_stained = build_stained
        self.reference = reference
        self.routed = 0
        self._stained = None

    @property
    def stained(self) -> Any:
        """The stain pipeline, built on first use."""
        if self._stained is None:
            self._stained = self.build_stained()
        return self._stained

    def predict(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 [H, W, 3] -> (int32 labels [H, W], float32 scores [N]), as InferencePipeline.predict."""
        if goes_to_stain_model(image, self.reference):
            self.routed += 1
            return self.stained.predict(image)
        return self.familiar.predict(image)

    def __getattr__(self, name: str) -> Any:
        if name in ("familiar", "build_stained", "reference", "routed", "_stained"):  # not set yet (copy, unpickling)
            raise AttributeError(name)
        return getattr(self.familiar, name)
