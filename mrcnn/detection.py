"""Detection layer (inference): refine RoIs per class, per-class NMS, keep the best."""

import keras
import tensorflow as tf

from mrcnn import graph_boxes


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
        boxes = graph_boxes.decode(fg_deltas, rois[:, :, None, :], self.bbox_std_dev)
        boxes = graph_boxes.clip(boxes, image_size[0], image_size[1])
        valid = graph_boxes.area(rois) > 0
        scores = tf.where(valid[:, :, None], probs[:, :, 1:], 0.0)
        boxes_out, scores_out, classes_out, count = tf.image.combined_non_max_suppression(
            boxes, scores, max_output_size_per_class=self.max_instances, max_total_size=self.max_instances,
            iou_threshold=self.nms_threshold, score_threshold=self.min_confidence, pad_per_class=False,
            clip_boxes=False)
        return boxes_out, tf.cast(classes_out, tf.int32) + 1, scores_out, count

    def get_config(self):
        return {**super().get_config(), "max_instances": self.max_instances, "min_confidence": self.min_confidence,
                "nms_threshold": self.nms_threshold, "bbox_std_dev": self.bbox_std_dev}
