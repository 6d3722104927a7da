"""Cascade R-CNN (Cai & Vasconcelos, CVPR 2018): box heads in stages, each refining the last one's boxes.

Stage 1 samples its detection targets from the RPN proposals, stage k from the boxes stage
k-1 refined, each at its own positive IoU (``CASCADE_IOUS``: 0.5, 0.6, 0.7) and with its own
delta std devs (``CASCADE_BBOX_STD_DEVS``: the deltas shrink as the boxes improve). Between
stages the boxes are refined with the deltas of one class and the gradient stops there (as
the paper). At inference every stage runs on the previous stage's refined boxes; the class
score is the mean of the stages' scores, the boxes are the last stage's; the mask head runs
on those boxes (in training on the last stage's RoIs).

``CASCADE_STAGES = 1`` is the single Mask R-CNN box head (``ROI_POSITIVE_IOU``, ``BBOX_STD_DEV``).
Everything here is ``keras.ops`` (any backend); the model (:mod:`mrcnn.model`) composes it.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

from keras import ops

from mrcnn import graph_boxes
from mrcnn.backend_ops import take_class


class Stage(NamedTuple):
    """One box-head stage's training settings."""

    positive_iou: float  # RoIs at or above this IoU with a nucleus are its positives
    bbox_std_dev: tuple[float, float, float, float]  # divides its box deltas
    loss_weight: float  # weight of its class and box losses


def stages(config) -> tuple[Stage, ...]:
    """The box-head stages of a :class:`mrcnn.config.Config`, first to last."""
    if config.CASCADE_STAGES == 1:
        return (Stage(float(config.ROI_POSITIVE_IOU), tuple(float(v) for v in config.BBOX_STD_DEV), 1.0),)
    return tuple(Stage(float(iou), tuple(float(v) for v in std), float(weight))
                 for iou, std, weight in zip(config.CASCADE_IOUS, config.CASCADE_BBOX_STD_DEVS,
                                             config.CASCADE_LOSS_WEIGHTS))


def stage_suffix(index: int) -> str:
    """Layer-name suffix of stage ``index`` (0-based): '' for the first (the single head's names)."""
    return "" if index == 0 else f"_stage{index + 1}"


def refine_class_ids(class_probs, target_class_ids=None):
    """The class whose deltas refine each RoI: int32 [batch, R].

    Args:
        class_probs: [batch, R, classes] (class 0 the background).
        target_class_ids: int [batch, R] in training (> 0 positives): a positive RoI is refined
            with its nucleus' class, the others with their best foreground class.
    """
    best = ops.cast(ops.argmax(class_probs[..., 1:], axis=-1), "int32") + 1
    if target_class_ids is None:
        return best
    target_class_ids = ops.cast(target_class_ids, "int32")
    return ops.where(target_class_ids > 0, target_class_ids, best)


def refine_boxes(rois, deltas, class_ids, bbox_std_dev: Sequence[float], image_size):
    """Each RoI moved by its class' deltas: the next stage's boxes, no gradient through them.

    Args:
        rois: [batch, R, (y1, x1, y2, x2)] pixels; zero rows are padding and stay zero.
        deltas: [batch, R, classes, (dy, dx, dh, dw)] the stage's box head output.
        class_ids: int [batch, R] (see :func:`refine_class_ids`).
        bbox_std_dev: the stage's std devs (4,).
        image_size: int32 [2] (H, W); the boxes are clipped to the image.

    Returns:
        [batch, R, (y1, x1, y2, x2)] pixels.
    """
    chosen = take_class(deltas, ops.cast(class_ids, "int32"))  # [batch, R, 4]
    boxes = graph_boxes.decode(chosen, rois, bbox_std_dev)
    boxes = graph_boxes.clip(boxes, image_size[0], image_size[1])
    valid = graph_boxes.area(rois) > 0
    boxes = ops.where(valid[..., None], boxes, ops.zeros_like(boxes))
    return ops.stop_gradient(boxes)


def mean_scores(class_probs: Sequence):
    """The stages' class probabilities [batch, R, classes] each -> their mean (one stage: itself)."""
    if len(class_probs) == 1:
        return class_probs[0]
    return ops.mean(ops.stack(list(class_probs), axis=0), axis=0)
