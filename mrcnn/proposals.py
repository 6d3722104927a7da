"""Proposal layer: RPN scores and deltas -> the top boxes after NMS."""

import keras
import tensorflow as tf

from mrcnn import graph_boxes


@keras.saving.register_keras_serializable(package="mrcnn")
class ProposalLayer(keras.layers.Layer):
    """Decode the best anchors, clip them to the image and suppress overlaps.

    Inputs: ``[rpn_probs, rpn_deltas, anchors, image_size]``:
        rpn_probs: [batch, anchors, 2]; rpn_deltas: [batch, anchors, 4];
        anchors: [anchors, (y1, x1, y2, x2)] pixels; image_size: int32 [2] (H, W).

    Output:
        proposals: [batch, proposal_count, (y1, x1, y2, x2)] pixels, best first,
        zero-padded where fewer boxes survive. No gradient flows through.
    """

    def __init__(self, proposal_count, nms_threshold, pre_nms_limit, rpn_bbox_std_dev, **kwargs):
        super().__init__(**kwargs)
        self.proposal_count = int(proposal_count)
        self.nms_threshold = float(nms_threshold)
        self.pre_nms_limit = int(pre_nms_limit)
        self.rpn_bbox_std_dev = tuple(float(v) for v in rpn_bbox_std_dev)

    def call(self, inputs):
        probs, deltas, anchors, image_size = inputs
        scores = tf.stop_gradient(probs[:, :, 1])
        deltas = tf.stop_gradient(deltas)
        k = tf.minimum(self.pre_nms_limit, tf.shape(scores)[1])
        top_scores, ix = tf.math.top_k(scores, k=k, sorted=True)
        top_deltas = tf.gather(deltas, ix, batch_dims=1)
        top_anchors = tf.gather(anchors, ix)
        boxes = graph_boxes.decode(top_deltas, top_anchors, self.rpn_bbox_std_dev)
        boxes = graph_boxes.clip(boxes, image_size[0], image_size[1])
        nmsed, _, _, _ = tf.image.combined_non_max_suppression(
            boxes[:, :, None, :], top_scores[:, :, None], max_output_size_per_class=self.proposal_count,
            max_total_size=self.proposal_count, iou_threshold=self.nms_threshold, pad_per_class=False,
            clip_boxes=False)
        return tf.stop_gradient(nmsed)

    def get_config(self):
        return {**super().get_config(), "proposal_count": self.proposal_count, "nms_threshold": self.nms_threshold,
                "pre_nms_limit": self.pre_nms_limit, "rpn_bbox_std_dev": self.rpn_bbox_std_dev}
