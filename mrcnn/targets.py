"""Detection targets: sample RoIs from the proposals and give each its class, box deltas and mask.

Per image: ground-truth boxes join the proposals (``USE_GT_AS_PROPOSALS``); RoIs with
IoU >= ``ROI_POSITIVE_IOU`` to a nucleus are positive, the rest negative; up to
``TRAIN_ROIS_PER_IMAGE * ROI_POSITIVE_RATIO`` positives are kept at random, negatives
fill the rest. Mask targets are the nucleus' mini mask (its mask resized into its
box, ``MINI_MASK_SHAPE``) resampled over the RoI at ``MASK_SHAPE`` and thresholded.
"""

import keras
from keras import ops

from mrcnn import backend_ops, graph_boxes


def sample_image_targets(proposals, gt_class_ids, gt_boxes, gt_masks, num_rois, positive_ratio,
                         positive_iou, bbox_std_dev, mask_shape, use_gt=True):
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
    proposals = _select(proposals, graph_boxes.area(proposals) > 0)
    valid = gt_class_ids > 0
    gt_boxes = _select(gt_boxes, valid)
    gt_class_ids = _select(gt_class_ids, valid)
    gt_masks = _select(ops.cast(gt_masks, "float32"), valid)
    if use_gt:
        proposals = ops.concatenate([proposals, gt_boxes], axis=0)
    overlaps = graph_boxes.iou(proposals, gt_boxes)  # [N, G]
    # a column of -1 keeps max/argmax defined when the crop holds no nucleus (G = 0)
    overlaps = ops.concatenate([overlaps, -ops.ones_like(proposals[:, :1])], axis=1)  # [N, G + 1]
    max_iou = ops.max(overlaps, axis=1)
    positive = ops.where(max_iou >= positive_iou)[0]
    negative = ops.where(max_iou < positive_iou)[0]
    positive = backend_ops.shuffle(positive)[:int(num_rois * positive_ratio)]
    n_pos = ops.shape(positive)[0]
    negative = backend_ops.shuffle(negative)[:num_rois - n_pos]
    n_neg = ops.shape(negative)[0]
    pos_rois = ops.take(proposals, positive, axis=0)
    neg_rois = ops.take(proposals, negative, axis=0)
    assign = ops.cast(ops.argmax(ops.take(overlaps, positive, axis=0), axis=1), "int32")  # < G for positives
    roi_gt_boxes = ops.take(gt_boxes, assign, axis=0)
    roi_class_ids = ops.cast(ops.take(gt_class_ids, assign), "int32")
    deltas = graph_boxes.encode(roi_gt_boxes, pos_rois, bbox_std_dev)
    # RoI in the coordinates of its nucleus' mini mask
    mh = ops.cast(ops.shape(gt_masks)[1], "float32")
    mw = ops.cast(ops.shape(gt_masks)[2], "float32")
    gh = ops.maximum(roi_gt_boxes[:, 2] - roi_gt_boxes[:, 0], 1e-3)
    gw = ops.maximum(roi_gt_boxes[:, 3] - roi_gt_boxes[:, 1], 1e-3)
    mini = ops.stack([(pos_rois[:, 0] - roi_gt_boxes[:, 0]) / gh * mh, (pos_rois[:, 1] - roi_gt_boxes[:, 1]) / gw * mw,
                      (pos_rois[:, 2] - roi_gt_boxes[:, 0]) / gh * mh, (pos_rois[:, 3] - roi_gt_boxes[:, 1]) / gw * mw],
                     axis=1)
    boxes_norm = graph_boxes.crop_boxes_norm(mini, mh, mw, mask_shape[0])
    source = ops.concatenate([gt_masks, ops.zeros_like(gt_masks[:1])], axis=0)
    masks = backend_ops.crop_and_resize(source[..., None], boxes_norm, assign, tuple(mask_shape))[..., 0]
    masks = ops.cast(masks >= 0.5, "float32")
    pad = num_rois - n_pos - n_neg
    rois = ops.concatenate([pos_rois, neg_rois, ops.zeros((pad, 4))], axis=0)
    class_ids = ops.concatenate([roi_class_ids, ops.zeros((n_neg,), "int32"), -ops.ones((pad,), "int32")], axis=0)
    deltas = ops.concatenate([deltas, ops.zeros((n_neg + pad, 4))], axis=0)
    masks = ops.concatenate([masks, ops.zeros((n_neg + pad, mask_shape[0], mask_shape[1]))], axis=0)
    return rois, class_ids, deltas, masks


def _select(x, mask):
    """Rows of ``x`` where bool ``mask`` [N] holds."""
    return ops.take(x, ops.where(mask)[0], axis=0)


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

        def one(*args):
            return sample_image_targets(*args, num_rois=self.num_rois, positive_ratio=self.positive_ratio,
                                        positive_iou=self.positive_iou, bbox_std_dev=self.bbox_std_dev,
                                        mask_shape=self.mask_shape, use_gt=self.use_gt)

        r, m = self.num_rois, self.mask_shape
        outputs = backend_ops.map_images(one, (proposals, ops.cast(gt_class_ids, "int32"), gt_boxes, gt_masks),
                                         [(r, 4), (r,), (r, 4), (r, m[0], m[1])],
                                         ["float32", "int32", "float32", "float32"])
        return tuple(ops.stop_gradient(t) for t in outputs)

    def get_config(self):
        return {**super().get_config(), "num_rois": self.num_rois, "positive_ratio": self.positive_ratio,
                "positive_iou": self.positive_iou, "bbox_std_dev": self.bbox_std_dev,
                "mask_shape": self.mask_shape, "use_gt": self.use_gt}
