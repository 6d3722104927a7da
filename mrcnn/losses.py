"""The five Mask R-CNN losses, as plain functions of tensors (each a scalar, 0 when nothing counts)."""

import tensorflow as tf


def _mean(total, count):
    return tf.math.divide_no_nan(total, tf.cast(count, tf.float32))


def smooth_l1(diff, beta=1.0):
    """Elementwise Huber / smooth-L1 with transition at ``beta``."""
    absolute = tf.abs(diff)
    return tf.where(absolute < beta, 0.5 * diff * diff / beta, absolute - 0.5 * beta)


def rpn_class_loss(rpn_match, rpn_logits):
    """rpn_match int [batch, anchors] (1, -1, 0 neutral); rpn_logits [batch, anchors, 2]."""
    rpn_match = tf.cast(rpn_match, tf.int32)
    used = tf.not_equal(rpn_match, 0)
    labels = tf.cast(tf.equal(rpn_match, 1), tf.int32)
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=rpn_logits)
    return _mean(tf.reduce_sum(tf.where(used, losses, 0.0)), tf.reduce_sum(tf.cast(used, tf.int32)))


def rpn_bbox_loss(rpn_bbox, rpn_match, rpn_deltas):
    """Smooth-L1 over positive anchors: targets and predictions [batch, anchors, 4]."""
    positive = tf.equal(tf.cast(rpn_match, tf.int32), 1)
    per_anchor = tf.reduce_sum(smooth_l1(rpn_bbox - rpn_deltas), axis=-1)
    return _mean(tf.reduce_sum(tf.where(positive, per_anchor, 0.0)), tf.reduce_sum(tf.cast(positive, tf.int32)))


def mrcnn_class_loss(target_class_ids, class_logits):
    """target_class_ids int [batch, rois] (-1 padding); class_logits [batch, rois, classes]."""
    used = target_class_ids >= 0
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.maximum(target_class_ids, 0),
                                                            logits=class_logits)
    return _mean(tf.reduce_sum(tf.where(used, losses, 0.0)), tf.reduce_sum(tf.cast(used, tf.int32)))


def mrcnn_bbox_loss(target_deltas, target_class_ids, pred_deltas):
    """Smooth-L1 of the true class' deltas over positive RoIs; pred_deltas [batch, rois, classes, 4]."""
    positive = target_class_ids > 0
    chosen = tf.gather(pred_deltas, tf.maximum(target_class_ids, 0), batch_dims=2)  # [batch, rois, 4]
    per_roi = tf.reduce_sum(smooth_l1(target_deltas - chosen), axis=-1)
    return _mean(tf.reduce_sum(tf.where(positive, per_roi, 0.0)), tf.reduce_sum(tf.cast(positive, tf.int32)))


def mrcnn_mask_loss(target_masks, target_class_ids, pred_mask_logits):
    """Mean per-pixel binary cross-entropy of the true class' mask over positive RoIs.

    target_masks [batch, rois, M, M]; pred_mask_logits [batch, rois, M, M, classes].
    """
    positive = target_class_ids > 0
    logits = tf.transpose(pred_mask_logits, [0, 1, 4, 2, 3])  # [batch, rois, classes, M, M]
    chosen = tf.gather(logits, tf.maximum(target_class_ids, 0), batch_dims=2)  # [batch, rois, M, M]
    per_pixel = tf.nn.sigmoid_cross_entropy_with_logits(labels=target_masks, logits=chosen)
    per_roi = tf.reduce_mean(per_pixel, axis=[2, 3])
    return _mean(tf.reduce_sum(tf.where(positive, per_roi, 0.0)), tf.reduce_sum(tf.cast(positive, tf.int32)))
