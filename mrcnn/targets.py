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


def max_positive_rois(num_rois: int, positive_ratio: float) -> int:
    """How many of an image's ``num_rois`` RoI slots can hold positives (they come first)."""
    return int(num_rois * positive_ratio)


def sample_image_targets(proposals, gt_class_ids, gt_boxes, gt_masks, noise, num_rois, positive_ratio,
                         positive_iou, bbox_std_dev, mask_shape, use_gt=True):
    """Targets for one image, with static shapes (it compiles whole under XLA).

    Args:
        proposals: [N, 4] pixels (zero rows are padding).
        gt_class_ids: int32 [G] (0 = padding).
        gt_boxes: [G, 4] pixels.
        gt_masks: [G, mh, mw] mini masks in [0, 1].
        noise: [N + G] (or [N] without ``use_gt``) uniform in [0, 1): the random order in which
            positives and negatives are drawn.
        num_rois: RoIs out.

    Returns:
        rois [num_rois, 4] (zero-padded), class_ids int32 [num_rois] (0 negative, -1 padding),
        deltas [num_rois, 4] (zero except positives), masks [num_rois, MH, MW] in {0, 1};
        positives first, then negatives, then padding.
    """
    valid_gt = gt_class_ids > 0
    candidates, usable = proposals, graph_boxes.area(proposals) > 0
    if use_gt:
        candidates = ops.concatenate([proposals, gt_boxes], axis=0)
        usable = ops.concatenate([usable, valid_gt], axis=0)
    if candidates.shape[0] is not None and candidates.shape[0] < num_rois:  # top_k needs num_rois rows
        extra = num_rois - candidates.shape[0]
        candidates = ops.pad(candidates, [[0, extra], [0, 0]])
        usable = ops.pad(usable, [[0, extra]])
        noise = ops.pad(noise, [[0, extra]])
    overlaps = graph_boxes.iou(candidates, gt_boxes)  # [N', G]
    overlaps = ops.where(valid_gt[None, :], overlaps, -1.0)  # padding nuclei match nothing
    max_iou = ops.max(overlaps, axis=1)
    assign_all = ops.cast(ops.argmax(overlaps, axis=1), "int32")
    positive = ops.logical_and(usable, max_iou >= positive_iou)
    negative = ops.logical_and(usable, max_iou < positive_iou)
    # a random subset of each kind: the largest noise among its members (-1 marks the others)
    max_positive = max_positive_rois(num_rois, positive_ratio)
    pos_key, pos_index = ops.top_k(ops.where(positive, noise, -1.0), max(max_positive, 1))
    neg_key, neg_index = ops.top_k(ops.where(negative, noise, -1.0), num_rois)
    n_pos = ops.minimum(ops.sum(ops.cast(pos_key >= 0, "int32")), max_positive)
    n_neg = ops.minimum(ops.sum(ops.cast(neg_key >= 0, "int32")), num_rois - n_pos)
    slot = ops.arange(num_rois, dtype="int32")
    is_pos = slot < n_pos
    is_neg = ops.logical_and(slot >= n_pos, slot < n_pos + n_neg)
    pick = ops.where(is_pos, ops.take(pos_index, ops.minimum(slot, max(max_positive, 1) - 1)),
                     ops.take(neg_index, ops.clip(slot - n_pos, 0, num_rois - 1)))
    used = ops.logical_or(is_pos, is_neg)
    rois = ops.where(used[:, None], ops.take(candidates, pick, axis=0), 0.0)
    assign = ops.take(assign_all, pick)
    roi_gt_boxes = ops.take(gt_boxes, assign, axis=0)
    class_ids = ops.where(is_pos, ops.take(ops.cast(gt_class_ids, "int32"), assign), ops.where(is_neg, 0, -1))
    # non-positive rows encode their nucleus' own box (zero deltas, no log of a zero size)
    pos_rois = ops.where(is_pos[:, None], rois, roi_gt_boxes)
    deltas = ops.where(is_pos[:, None], graph_boxes.encode(roi_gt_boxes, pos_rois, bbox_std_dev), 0.0)
    # RoI in the coordinates of its nucleus' mini mask
    gt_masks = ops.cast(gt_masks, "float32")
    mh = ops.cast(ops.shape(gt_masks)[1], "float32")
    mw = ops.cast(ops.shape(gt_masks)[2], "float32")
    gh = ops.maximum(roi_gt_boxes[:, 2] - roi_gt_boxes[:, 0], 1e-3)
    gw = ops.maximum(roi_gt_boxes[:, 3] - roi_gt_boxes[:, 1], 1e-3)
    mini = ops.stack([(pos_rois[:, 0] - roi_gt_boxes[:, 0]) / gh * mh, (pos_rois[:, 1] - roi_gt_boxes[:, 1]) / gw * mw,
                      (pos_rois[:, 2] - roi_gt_boxes[:, 0]) / gh * mh, (pos_rois[:, 3] - roi_gt_boxes[:, 1]) / gw * mw],
                     axis=1)
    boxes_norm = graph_boxes.crop_boxes_norm(mini, mh, mw, mask_shape[0])
    masks = backend_ops.crop_and_resize(gt_masks[..., None], boxes_norm, assign, tuple(mask_shape))[..., 0]
    masks = ops.where(is_pos[:, None, None], ops.cast(masks >= 0.5, "float32"), 0.0)
    return rois, class_ids, deltas, masks


@keras.saving.register_keras_serializable(package="mrcnn")
class DetectionTargetLayer(keras.layers.Layer):
    """Batched :func:`sample_image_targets` (training only; no weights).

    Inputs: ``[proposals, gt_class_ids, gt_boxes, gt_masks]``:
        proposals [batch, N, 4]; gt_class_ids int32 [batch, G]; gt_boxes [batch, G, 4];
        gt_masks [batch, G, mh, mw].

    Outputs: rois [batch, R, 4], class_ids int32 [batch, R], deltas [batch, R, 4],
    masks [batch, R, MH, MW] with R = ``num_rois``; positives only in the first
    :attr:`positive_slots` rows.
    """

    def __init__(self, num_rois, positive_ratio, positive_iou, bbox_std_dev, mask_shape, use_gt=True, **kwargs):
        super().__init__(**kwargs)
        # the random draw of RoIs; a seeded generator is what compiled JAX steps need (its state
        # is a non-trainable variable of the model, not in the weights files)
        self.seed_generator = keras.random.SeedGenerator()
        self.num_rois = int(num_rois)
        self.positive_ratio = float(positive_ratio)
        self.positive_iou = float(positive_iou)
        self.bbox_std_dev = tuple(float(v) for v in bbox_std_dev)
        self.mask_shape = tuple(int(v) for v in mask_shape)
        self.use_gt = bool(use_gt)

    @property
    def positive_slots(self) -> int:
        """Rows of each image's outputs that can hold a positive RoI (at least 1)."""
        return max(max_positive_rois(self.num_rois, self.positive_ratio), 1)

    def call(self, inputs):
        proposals, gt_class_ids, gt_boxes, gt_masks = inputs
        candidates = ops.shape(proposals)[1] + (ops.shape(gt_boxes)[1] if self.use_gt else 0)
        noise = keras.random.uniform((ops.shape(proposals)[0], candidates), seed=self.seed_generator)

        def one(*args):
            return sample_image_targets(*args, num_rois=self.num_rois, positive_ratio=self.positive_ratio,
                                        positive_iou=self.positive_iou, bbox_std_dev=self.bbox_std_dev,
                                        mask_shape=self.mask_shape, use_gt=self.use_gt)

        r, m = self.num_rois, self.mask_shape
        outputs = backend_ops.map_images(one, (proposals, ops.cast(gt_class_ids, "int32"), gt_boxes, gt_masks, noise),
                                         [(r, 4), (r,), (r, 4), (r, m[0], m[1])],
                                         ["float32", "int32", "float32", "float32"])
        return tuple(ops.stop_gradient(t) for t in outputs)

    def get_config(self):
        return {**super().get_config(), "num_rois": self.num_rois, "positive_ratio": self.positive_ratio,
                "positive_iou": self.positive_iou, "bbox_std_dev": self.bbox_std_dev,
                "mask_shape": self.mask_shape, "use_gt": self.use_gt}
