"""Detection layer (inference): refine RoIs per class, per-class NMS, keep the best."""

import keras
from keras import ops

from mrcnn import backend_ops, graph_boxes


@keras.saving.register_keras_serializable(package="mrcnn")
class DetectionLayer(keras.layers.Layer):
    """Inputs: ``[rois, class_probs, deltas, image_size]``:
        rois [batch, R, 4] pixels (zero rows are padding); class_probs [batch, R, classes];
        deltas [batch, R, classes, 4]; image_size int32 [2] (H, W).

    Outputs: ``(boxes [batch, D, 4] pixels, class_ids int32 [batch, D],
    scores [batch, D], count int32 [batch])``, best first, zero-padded after ``count``.
    """

    def __init__(self, max_instances, min_confidence, nms_threshold, bbox_std_dev, **kwargs):
        super().__init__(**kwargs)
        self.max_instances = int(max_instances)
        self.min_confidence = float(min_confidence)
        self.nms_threshold = float(nms_threshold)
        self.bbox_std_dev = tuple(float(v) for v in bbox_std_dev)

    def call(self, inputs):
        rois, probs, deltas, image_size = inputs
        fg_deltas = deltas[:, :, 1:, :]
        boxes = graph_boxes.decode(fg_deltas, rois[:, :, None, :], self.bbox_std_dev)  # [B, R, C-1, 4]
        boxes = graph_boxes.clip(boxes, image_size[0], image_size[1])
        valid = graph_boxes.area(rois) > 0
        scores = ops.where(valid[:, :, None], probs[:, :, 1:], 0.0)  # [B, R, C-1]
        d = self.max_instances
        foreground_classes = scores.shape[-1]

        def one(image_boxes, image_scores):
            flat_boxes = ops.reshape(image_boxes, (-1, 4))
            flat_scores = ops.reshape(image_scores, (-1,))
            classes = ops.arange(ops.shape(flat_scores)[0], dtype="int32") % foreground_classes
            # per-class NMS in one call: each class' boxes moved apart so classes never overlap
            offset = ops.cast(classes, "float32")[:, None] * (ops.max(flat_boxes) + 1.0)
            keep, count = backend_ops.nms_padded(flat_boxes + offset, flat_scores, d, self.nms_threshold,
                                                 score_threshold=self.min_confidence)
            kept = ops.arange(d, dtype="int32") < count
            return (ops.where(kept[:, None], ops.take(flat_boxes, keep, axis=0), 0.0),
                    ops.where(kept, ops.take(classes, keep) + 1, 0),
                    ops.where(kept, ops.take(flat_scores, keep), 0.0),
                    count)

        return backend_ops.map_images(one, (boxes, scores), [(d, 4), (d,), (d,), ()],
                                      ["float32", "int32", "float32", "int32"])

    def get_config(self):
        return {**super().get_config(), "max_instances": self.max_instances, "min_confidence": self.min_confidence,
                "nms_threshold": self.nms_threshold, "bbox_std_dev": self.bbox_std_dev}
