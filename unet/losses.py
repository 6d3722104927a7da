"""U-Net loss: weighted (optionally focal) cross-entropy + soft Dice, in keras.ops only.

Written against ``keras.ops`` so the same loss trains under any Keras backend
(TensorFlow here; JAX or PyTorch on a GPU machine without TensorFlow).
"""

import keras
from keras import ops

from unet.config import CLASSES, DISTANCE
from unet.targets import BACKGROUND, BODY


def soft_dice(true, pred, eps=1.0):
    """1 - Dice over a whole batch; true, pred: [B, H, W] in [0, 1]."""
    intersection = ops.sum(true * pred)
    return 1.0 - (2.0 * intersection + eps) / (ops.sum(true) + ops.sum(pred) + eps)


@keras.saving.register_keras_serializable(package="unet")
class UNetLoss(keras.losses.Loss):
    """y_true: int [B, H, W] class ids; y_pred: float [B, H, W, 3] softmax probabilities.
    With a distance head: y_true float [B, H, W, 2] (class id, distance target in [0, 1]) and
    y_pred [B, H, W, 4] (the softmax, then the sigmoid distance map).

    loss = mean_pixels(class_weight * (1 - p_true)^gamma * -log p_true)
           + dice_weight * (dice(foreground) + dice(body)) / 2
           + distance_weight * mean_pixels(binary cross-entropy(distance target, distance map))
    """

    def __init__(self, class_weights=(1.0, 2.0, 0.5), dice_weight=1.0, focal_gamma=0.0, distance_weight=1.0,
                 name="unet_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.class_weights = tuple(float(w) for w in class_weights)
        self.dice_weight = float(dice_weight)
        self.focal_gamma = float(focal_gamma)
        self.distance_weight = float(distance_weight)

    def call(self, y_true, y_pred):
        distance_loss = None
        if y_pred.shape[-1] == len(CLASSES) + 1:
            distance = ops.clip(y_pred[..., DISTANCE], 1e-7, 1.0 - 1e-7)
            target = ops.cast(y_true[..., 1], distance.dtype)
            distance_loss = -ops.mean(target * ops.log(distance) + (1.0 - target) * ops.log(1.0 - distance))
            y_true, y_pred = y_true[..., 0], y_pred[..., :DISTANCE]
        y_true = ops.cast(y_true, "int32")
        if len(y_true.shape) == 4:
            y_true = ops.squeeze(y_true, -1)
        one_hot = ops.one_hot(y_true, len(CLASSES), dtype=y_pred.dtype)
        probs = ops.clip(y_pred, 1e-7, 1.0 - 1e-7)
        p_true = ops.sum(one_hot * probs, axis=-1)
        weights = ops.sum(one_hot * ops.convert_to_tensor(self.class_weights, dtype=y_pred.dtype), axis=-1)
        cross_entropy = -ops.log(p_true) * weights
        if self.focal_gamma > 0:
            cross_entropy = cross_entropy * ops.power(1.0 - p_true, self.focal_gamma)
        loss = ops.mean(cross_entropy)
        if self.dice_weight > 0:
            foreground = soft_dice(1.0 - one_hot[..., BACKGROUND], 1.0 - probs[..., BACKGROUND])
            body = soft_dice(one_hot[..., BODY], probs[..., BODY])
            loss = loss + self.dice_weight * 0.5 * (foreground + body)
        if distance_loss is not None:
            loss = loss + self.distance_weight * distance_loss
        return loss

    def get_config(self):
        return {**super().get_config(), "class_weights": self.class_weights, "dice_weight": self.dice_weight,
                "focal_gamma": self.focal_gamma, "distance_weight": self.distance_weight}


def loss_for(config):
    return UNetLoss(config.class_weights, config.dice_weight, config.focal_gamma, config.distance_weight)
