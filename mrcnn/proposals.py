"""Proposal layer: RPN scores and deltas -> the top boxes after NMS."""

import keras
from keras import ops

from mrcnn import backend_ops, graph_boxes


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
        scores = ops.stop_gradient(probs[:, :, 1])
        deltas = ops.stop_gradient(deltas)
        anchors_count = scores.shape[1]
        if anchors_count is None:  # a TensorFlow graph for any image size
            k = ops.minimum(self.pre_nms_limit, ops.shape(scores)[1])
        else:
            k = min(self.pre_nms_limit, anchors_count)
        top_scores, ix = ops.top_k(scores, k=k, sorted=True)
        top_deltas = backend_ops.take_rows(deltas, ix)
        top_anchors = ops.take(anchors, ix, axis=0)
        boxes = graph_boxes.decode(top_deltas, top_anchors, self.rpn_bbox_std_dev)
        boxes = graph_boxes.clip(boxes, image_size[0], image_size[1])
        return ops.stop_gradient(nms_padded(boxes, top_scores, self.proposal_count, self.nms_threshold))

    def get_config(self):
        return {**super().get_config(), "proposal_count": self.proposal_count, "nms_threshold": self.nms_threshold,
                "pre_nms_limit": self.pre_nms_limit, "rpn_bbox_std_dev": self.rpn_bbox_std_dev}


def nms_padded(boxes, scores, count, iou_threshold):
    """Per image greedy NMS: boxes [B, K, 4], scores [B, K] (descending) -> [B, count, 4], best
    first, zero rows after the survivors."""

    def one(image_boxes, image_scores):
        keep, kept = backend_ops.nms_padded(image_boxes, image_scores, count, iou_threshold)
        survivor = ops.arange(count, dtype="int32") < kept
        return (ops.where(survivor[:, None], ops.take(image_boxes, keep, axis=0), 0.0),)

    return backend_ops.map_images(one, (boxes, scores), [(count, 4)], ["float32"])[0]
