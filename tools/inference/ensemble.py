"""U-Net + Mask R-CNN ensemble: Mask R-CNN instances refined and completed by the U-Net's maps.

Mask R-CNN is good at telling touching nuclei apart (one detection each) and weak at
their exact outlines (28x28 masks pasted into boxes); the U-Net is the reverse. So:

* identity from Mask R-CNN: each of its instances with score >= ``mrcnn_min_score``
  becomes a watershed marker (its pixels where the U-Net also sees foreground);
* outline from both: markers grow by watershed on -P(body) over the foreground
  ``(1 - w) * (P(body) + P(border)) + w * [Mask R-CNN pixel] > foreground_threshold``
  (``w = mrcnn_weight``; 0: the U-Net's outline alone); Mask R-CNN pixels outside
  that foreground are dropped, unless the detection is confident (score >=
  ``keep_score``), when it is kept as it was;
* completion from the U-Net: U-Net seeds (P(body) > ``seed_threshold``) that touch
  no Mask R-CNN instance, and U-Net foreground blobs with no marker at all, become
  nuclei of their own, scored by their mean U-Net foreground times ``unet_score_factor``.

Pure numpy / scikit-image; inputs are plain arrays, so any pair of models fits.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed

from preprocessing.errors import NucleiError
from preprocessing.labels import compact, mean_over_labels
from preprocessing.settings import Settings
from unet.instances import seed_unseeded_blobs

BODY, BORDER, BACKGROUND = 0, 1, 2


class EnsembleConfig(Settings):
    """Thresholds of the ensemble (tuned on the validation split with tools.tune)."""

    kind = "ensemble"

    foreground_threshold: float = 0.5
    seed_threshold: float = 0.7
    min_seed_size: int = 3
    mrcnn_min_score: float = 0.5
    keep_score: float = 0.95
    mrcnn_weight: float = 0.0
    add_unet_nuclei: bool = True
    unet_score_factor: float = 0.8

    def validate(self) -> None:
        for name in ("foreground_threshold", "seed_threshold"):
            if not 0 < getattr(self, name) < 1:
                raise NucleiError(f"ensemble {name} must be in (0, 1), got {getattr(self, name)}")
        if not 0 <= self.mrcnn_weight < 1:
            raise NucleiError(f"ensemble mrcnn_weight must be in [0, 1), got {self.mrcnn_weight}")


def ensemble_instances(probabilities: np.ndarray, mrcnn_labels: np.ndarray, mrcnn_scores: np.ndarray,
                       config: EnsembleConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Combine U-Net probability maps with Mask R-CNN instances.

    Args:
        probabilities: float [H, W, 3] softmax (body, border, background) from the U-Net.
        mrcnn_labels: int [H, W] Mask R-CNN instances (ids 1..M, 0 = background).
        mrcnn_scores: float [M] detection scores aligned with ids.
        config: EnsembleConfig.

    Returns:
        (labels int32 [H, W] ids 1..N, scores float32 [N]).
    """
    config = config or EnsembleConfig()
    if probabilities.shape[:2] != mrcnn_labels.shape:
        raise NucleiError(f"U-Net maps {probabilities.shape[:2]} and Mask R-CNN labels {mrcnn_labels.shape} differ")
    body = probabilities[..., BODY]
    foreground_p = 1.0 - probabilities[..., BACKGROUND]
    mrcnn_labels, mrcnn_scores = compact(np.asarray(mrcnn_labels), np.asarray(mrcnn_scores, np.float32))
    weak = np.concatenate([[False], mrcnn_scores < config.mrcnn_min_score])
    mrcnn_labels = np.where(weak[mrcnn_labels], 0, mrcnn_labels)
    mrcnn_labels, mrcnn_scores = compact(mrcnn_labels, mrcnn_scores)
    w = config.mrcnn_weight
    foreground = (1.0 - w) * foreground_p + w * (mrcnn_labels > 0) > config.foreground_threshold
    n_mrcnn = mrcnn_scores.size

    markers = np.where(foreground, mrcnn_labels, 0).astype(np.int64)
    confident = np.concatenate([[False], mrcnn_scores >= config.keep_score])
    fixed = confident[mrcnn_labels]  # confident detections keep their pixels outside the U-Net foreground
    markers[fixed] = mrcnn_labels[fixed]
    next_id = n_mrcnn + 1
    if config.add_unet_nuclei:
        seeds, n_seeds = ndimage.label((body > config.seed_threshold) & foreground)
        if n_seeds:
            sizes = np.bincount(seeds.ravel(), minlength=n_seeds + 1)
            covered = np.zeros(n_seeds + 1, bool)
            covered[np.unique(seeds[mrcnn_labels > 0])] = True
            new = (sizes >= config.min_seed_size) & ~covered
            new[0] = False
            new_ids = np.zeros(n_seeds + 1, np.int64)
            new_ids[new] = next_id + np.arange(int(new.sum()))
            markers = np.where(new_ids[seeds] > 0, new_ids[seeds], markers)
            next_id += int(new.sum())
    grow_mask = foreground | (markers > 0)
    if config.add_unet_nuclei:
        markers, n_extra = seed_unseeded_blobs(markers, foreground, first_id=next_id)
        next_id += n_extra
    labels = watershed(-body, markers=markers, mask=grow_mask) if markers.max() > 0 else markers
    labels = np.where(fixed, mrcnn_labels, labels)  # confident Mask R-CNN pixels stay theirs
    scores = np.zeros(next_id - 1, np.float32)
    scores[:n_mrcnn] = mrcnn_scores
    unet_means = mean_over_labels(labels, foreground_p)
    extra_ids = np.arange(n_mrcnn, min(next_id - 1, unet_means.size))
    scores[extra_ids] = unet_means[extra_ids] * config.unet_score_factor
    return compact(labels, scores)
