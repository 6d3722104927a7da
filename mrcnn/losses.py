"""The five Mask R-CNN losses, as plain functions of tensors (each a scalar, 0 when nothing counts).

Written with ``keras.ops``, so they run on every Keras backend.
"""

from keras import ops

from mrcnn.backend_ops import take_class


def _mean(total, count):
    count = ops.cast(count, "float32")
    return ops.where(count > 0, total / ops.maximum(count, 1.0), 0.0)


def smooth_l1(diff, beta=1.0):
    """Elementwise Huber / smooth-L1 with transition at ``beta``."""
    absolute = ops.abs(diff)
    return ops.where(absolute < beta, 0.5 * diff * diff / beta, absolute - 0.5 * beta)


def _softmax_cross_entropy(labels, logits):
    """labels int [...]; logits [..., classes] -> [...]."""
    return ops.sparse_categorical_crossentropy(labels, logits, from_logits=True)


def rpn_class_loss(rpn_match, rpn_logits):
    """rpn_match int [batch, anchors] (1, -1, 0 neutral); rpn_logits [batch, anchors, 2]."""
    rpn_match = ops.cast(rpn_match, "int32")
    used = ops.not_equal(rpn_match, 0)
    labels = ops.cast(ops.equal(rpn_match, 1), "int32")
    losses = _softmax_cross_entropy(labels, rpn_logits)
    return _mean(ops.sum(ops.where(used, losses, 0.0)), ops.sum(ops.cast(used, "int32")))


def rpn_bbox_loss(rpn_bbox, rpn_match, rpn_deltas):
    """Smooth-L1 over positive anchors: targets and predictions [batch, anchors, 4]."""
    positive = ops.equal(ops.cast(rpn_match, "int32"), 1)
    per_anchor = ops.sum(smooth_l1(ops.cast(rpn_bbox, "float32") - rpn_deltas), axis=-1)
    return _mean(ops.sum(ops.where(positive, per_anchor, 0.0)), ops.sum(ops.cast(positive, "int32")))


def mrcnn_class_loss(target_class_ids, class_logits):
    """target_class_ids int [batch, rois] (-1 padding); class_logits [batch, rois, classes]."""
    used = target_class_ids >= 0
    losses = _softmax_cross_entropy(ops.maximum(target_class_ids, 0), class_logits)
    return _mean(ops.sum(ops.where(used, losses, 0.0)), ops.sum(ops.cast(used, "int32")))


def mrcnn_bbox_loss(target_deltas, target_class_ids, pred_deltas):
    """Smooth-L1 of the true class' deltas over positive RoIs; pred_deltas [batch, rois, classes, 4]."""
    positive = target_class_ids > 0
    chosen = take_class(pred_deltas, ops.maximum(target_class_ids, 0))  # [batch, rois, 4]
    per_roi = ops.sum(smooth_l1(target_deltas - chosen), axis=-1)
    return _mean(ops.sum(ops.where(positive, per_roi, 0.0)), ops.sum(ops.cast(positive, "int32")))


def mrcnn_mask_loss(target_masks, target_class_ids, pred_mask_logits):
    """Mean per-pixel binary cross-entropy of the true class' mask over positive RoIs.

    target_masks [batch, rois, M, M]; pred_mask_logits [batch, rois, M, M, classes].
    """
    positive = target_class_ids > 0
    logits = ops.transpose(pred_mask_logits, (0, 1, 4, 2, 3))  # [batch, rois, classes, M, M]
    chosen = take_class(logits, ops.maximum(target_class_ids, 0))  # [batch, rois, M, M]
    # sigmoid cross-entropy from logits, the numerically stable form
    per_pixel = ops.maximum(chosen, 0.0) - chosen * target_masks + ops.log1p(ops.exp(-ops.abs(chosen)))
    per_roi = ops.mean(per_pixel, axis=(2, 3))
    return _mean(ops.sum(ops.where(positive, per_roi, 0.0)), ops.sum(ops.cast(positive, "int32")))
