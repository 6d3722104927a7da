"""Images unlike every training acquisition get their own networks and params.

``unfamiliar_image`` (tools.inference.folder) flags an image farther from every training
domain than any training image (a limit the training set sets, not a tuned number). Two
things change for such an image, each where the weights folder provides it:

* **stained (colour) images go to a model trained for new stains**, ``X.stain.weights.h5``
  beside ``X.weights.h5``. The shipped models are chosen on the domain-balanced validation,
  where `--augment stain` (HED jitter, recolouring, zoom 0.5-2 with aspect;
  preprocessing.augment) costs a little; on colour images re-stained and magnified as the
  held-out H&E scans are (bench/protocols.py's "shifted" images), the stain-trained models win
  clearly (Mask R-CNN 0.238 -> 0.296 on the 10 colour validation images). Grey unfamiliar
  images stay with the shipped networks (the stain model is no better on grey, and was not
  trained for them).
* **every flagged image is decoded with the params' ``unfamiliar`` choices**
  (tools.inference.params), colour or grey: for the shipped Mask R-CNN 8-way TTA with a
  minimum score of 0.6 instead of a single pass cut at 0.8, since a network is less sure of
  nuclei in an acquisition it never saw (bench/RESULTS.md, "Images unlike the training set
  get 8-way TTA").

The validation and the bundled sample's colour images hold no flagged image; one grey sample
image is flagged.
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
    return route_of(image, reference) == "stained"


def route_of(image: np.ndarray, reference: dict, flagged: bool | None = None) -> str:
    """'familiar', 'stained' (a colour image unlike every training acquisition) or 'unfamiliar'
    (a grey one) for uint8 [H, W, 3] ``image``.

    flagged: whether ``unfamiliar_image(image, reference)`` flags it, where the caller has just
    checked (tools.inference.folder.predict_folder does, for its report); None: checked here."""
    from preprocessing.image_types import classify_image
    from tools.inference.folder import unfamiliar_image

    if flagged is None:
        flagged = unfamiliar_image(image, reference) is not None
    if not flagged:
        return "familiar"
    return "stained" if classify_image(image) == "histology" else "unfamiliar"


class UnfamiliarRouter:
    """``predict(image)`` by the pipeline of the image's :func:`route_of`; every other attribute
    is the familiar pipeline's (its params, its networks: tuning and exports see the shipped model).

    Args:
        familiar: the pipeline for images like the training set's.
        reference: preprocessing.domains.domain_reference's dict.
        build_stained: makes the pipeline for unfamiliar colour images (the stain networks,
            the unfamiliar params); called once, at the first image that needs it (a folder
            without such images never loads the second networks). None: ``unfamiliar`` takes them.
        unfamiliar: the pipeline for the other flagged images (the shipped networks, the
            unfamiliar params); None: ``familiar`` takes them.

    Attributes:
        routed: images that went to the stain pipeline so far.
        unfamiliar_count: flagged images so far, colour or grey.
    """

    def __init__(self, familiar: Any, reference: dict, build_stained: Callable[[], Any] | None = None,
                 unfamiliar: Any = None):
        self.familiar = familiar
        self.reference = reference
        self.build_stained = build_stained
        self.unfamiliar = unfamiliar
        self.routed = 0
        self.unfamiliar_count = 0
        self._stained = None

    @property
    def stained(self) -> Any:
        """The stain pipeline, built on first use."""
        if self._stained is None:
            self._stained = self.build_stained()
        return self._stained

    def pipeline_for(self, image: np.ndarray, flagged: bool | None = None) -> Any:
        """The pipeline that predicts uint8 [H, W, 3] ``image`` (counted as used); ``flagged``: as
        :func:`route_of`'s."""
        route = route_of(image, self.reference, flagged)
        if route == "familiar":
            return self.familiar
        self.unfamiliar_count += 1
        if route == "stained" and self.build_stained is not None:
            self.routed += 1
            return self.stained
        return self.unfamiliar if self.unfamiliar is not None else self.familiar

    def predict(self, image: np.ndarray, flagged: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
        """uint8 [H, W, 3] -> (int32 labels [H, W], float32 scores [N]), as InferencePipeline.predict;
        ``flagged``: as :func:`route_of`'s (None: the router checks the image itself)."""
        return self.pipeline_for(image, flagged).predict(image)

    def __getattr__(self, name: str) -> Any:
        if name in ("familiar", "build_stained", "reference", "unfamiliar", "routed", "unfamiliar_count",
                    "_stained"):  # not set yet (copy, unpickling)
            raise AttributeError(name)
        return getattr(self.familiar, name)
