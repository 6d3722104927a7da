"""Detection targets: sample RoIs from the proposals and give each its class, box deltas and mask.

Per image: ground-truth boxes join the proposals (``USE_GT_AS_PROPOSALS``); RoIs with
IoU >= ``ROI_POSITIVE_IOU`` to a nucleus are positive, the rest negative; up to
``TRAIN_ROIS_PER_IMAGE * ROI_POSITIVE_RATIO`` positives are kept at random, negatives
fill the rest. Mask targets are the nucleus' mini mask (its mask resized into its
box, ``MINI_MASK_SHAPE``) resampled over the RoI at ``MASK_SHAPE`` and thresholded.
"""

import keras
import tensorflow as tf

from mrcnn import graph_boxes


def sample_image_targets(proposals, gt_class_ids, gt_boxes, gt_masks, num_rois, positive_ratio,
                         positive_iou, bbox_std_dev, mask_shape, use_gt=True, seed=None):
    """Targets for one image.

    Args:
        proposals: [N, 4] pixels (zero rows are padding).
        gt_class_ids: int32 [G] (0 = padding).
        gt_boxes: [G, 4] pixels.
        gt_masks: [G, mh, mw] mini masks in [0, 1].
        num_rois: RoIs out.

    Returns:
        rois [num_rois, 4] (zero-padded), class_ids int32 [num_rois] (0 negative, -1 padding),
        deltas [num_rois, 4] (zero except positives), masks [num_rois, MH, MW] in {0, 1}.
    """
    proposals = tf.boolean_mask(proposals, graph_boxes.area(proposals) > 0)
    valid = gt_class_ids > 0
    gt_boxes = tf.boolean_mask(gt_boxes, valid)
    gt_class_ids = tf.boolean_mask(gt_class_ids, valid)
    gt_masks = tf.boolean_mask(tf.cast(gt_masks, tf.float32), valid)
    if use_gt:
        proposals = tf.concat([proposals, gt_boxes], axis=0)
    overlaps = graph_boxes.iou(proposals, gt_boxes)  # [N, G]
    # a column of -1 keeps max/argmax defined when the crop holds no nucleus (G = 0)
    overlaps = tf.concat([overlaps, -tf.ones_like(proposals[:, :1])], axis=1)  # [N, G + 1]
    max_iou = tf.reduce_max(overlaps, axis=1)
    positive = tf.where(max_iou >= positive_iou)[:, 0]
    negative = tf.where(max_iou < positive_iou)[:, 0]
    positive = tf.random.shuffle(positive, seed=seed)[:int(num_rois * positive_ratio)]
    n_pos = tf.shape(positive)[0]
    negative = tf.random.shuffle(negative, seed=seed)[:num_rois - n_pos]
    n_neg = tf.shape(negative)[0]
    pos_rois = tf.gather(proposals, positive)
    neg_rois = tf.gather(proposals, negative)
    assign = tf.argmax(tf.gather(overlaps, positive), axis=1, output_type=tf.int32)  # < G for positives
    roi_gt_boxes = tf.gather(gt_boxes, assign)
    roi_class_ids = tf.gather(gt_class_ids, assign)
    deltas = graph_boxes.encode(roi_gt_boxes, pos_rois, bbox_std_dev)
    # RoI in the coordinates of its nucleus' mini mask
    mh = tf.cast(tf.shape(gt_masks)[1], tf.float32)
    mw = tf.cast(tf.shape(gt_masks)[2], tf.float32)
    gh = tf.maximum(roi_gt_boxes[:, 2] - roi_gt_boxes[:, 0], 1e-3)
    gw = tf.maximum(roi_gt_boxes[:, 3] - roi_gt_boxes[:, 1], 1e-3)
    mini = tf.stack([(pos_rois[:, 0] - roi_gt_boxes[:, 0]) / gh * mh, (pos_rois[:, 1] - roi_gt_boxes[:, 1]) / gw * mw,
                     (pos_rois[:, 2] - roi_gt_boxes[:, 0]) / gh * mh, (pos_rois[:, 3] - roi_gt_boxes[:, 1]) / gw * mw],
                    axis=1)
    boxes_norm = graph_boxes.crop_boxes_norm(mini, mh, mw, mask_shape[0])
    source = tf.concat([tf.cast(gt_masks, tf.float32), tf.zeros_like(gt_masks[:1])], axis=0)
    masks = tf.image.crop_and_resize(source[..., None], boxes_norm, assign,
                                     tuple(mask_shape), method="bilinear")[..., 0]
    masks = tf.cast(masks >= 0.5, tf.float32)
    pad = num_rois - n_pos - n_neg
    rois = tf.concat([pos_rois, neg_rois, tf.zeros([pad, 4])], axis=0)
    class_ids = tf.concat([roi_class_ids, tf.zeros([n_neg], tf.int32), -tf.ones([pad], tf.int32)], axis=0)
    deltas = tf.concat([deltas, tf.zeros([n_neg + pad, 4])], axis=0)
    masks = tf.concat([masks, tf.zeros([n_neg + pad, mask_shape[0], mask_shape[1]])], axis=0)
    return rois, class_ids, deltas, masks


@keras.saving.register_keras_serializable(package="mrcnn")
class DetectionTargetLayer(keras.layers.Layer):
    """Batched :func:`sample_image_targets` (training only; no weights).

    Inputs: ``[proposals, gt_class_ids, gt_boxes, gt_masks]``:
        proposals [batch, N, 4]; gt_class_ids int32 [batch, G]; gt_boxes [batch, G, 4];
        gt_masks [batch, G, mh, mw].

    Outputs: rois [batch, R, 4], class_ids int32 [batch, R], deltas [batch, R, 4],
    masks [batch, R, MH, MW] with R = ``num_rois``.
    """

    def __init__(self, num_rois, positive_ratio, positive_iou, bbox_std_dev, mask_shape, use_gt=True, **kwargs):
        super().__init__(**kwargs)
        self.num_rois = int(num_rois)
        self.positive_ratio = float(positive_ratio)
        self.positive_iou = float(positive_iou)
        self.bbox_std_dev = tuple(float(v) for v in bbox_std_dev)
        self.mask_shape = tuple(int(v) for v in mask_shape)
        self.use_gt = bool(use_gt)

    def call(self, inputs):
        proposals, gt_class_ids, gt_boxes, gt_masks = inputs

        def one(args):
            return sample_image_targets(*args, num_rois=self.num_rois, positive_ratio=self.positive_ratio,
                                        positive_iou=self.positive_iou, bbox_std_dev=self.bbox_std_dev,
                                        mask_shape=self.mask_shape, use_gt=self.use_gt)

        r, m = self.num_rois, self.mask_shape
        rois, class_ids, deltas, masks = tf.map_fn(
            one, (proposals, tf.cast(gt_class_ids, tf.int32), gt_boxes, gt_masks),
            fn_output_signature=(tf.TensorSpec([r, 4], tf.float32), tf.TensorSpec([r], tf.int32),
                                 tf.TensorSpec([r, 4], tf.float32), tf.TensorSpec([r, m[0], m[1]], tf.float32)))
        return (tf.stop_gradient(rois), tf.stop_gradient(class_ids), tf.stop_gradient(deltas),
                tf.stop_gradient(masks))

    def get_config(self):
        return {**super().get_config(), "num_rois": self.num_rois, "positive_ratio": self.positive_ratio,
                "positive_iou": self.positive_iou, "bbox_std_dev": self.bbox_std_dev,
                "mask_shape": self.mask_shape, "use_gt": self.use_gt}
