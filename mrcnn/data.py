"""Training inputs: a keras.utils.PyDataset of crops with ground truth and RPN targets.

One batch (dict of numpy arrays, ``B = config.BATCH_SIZE``, ``S = IMAGE_CROP_SIZE``,
``G = MAX_GT_INSTANCES``, ``A`` anchors for an S x S image):

    image          float32 [B, S, S, C]   normalised (see model_input)
    gt_class_ids   int32   [B, G]         1 for a nucleus, 0 for padding
    gt_boxes       float32 [B, G, 4]      (y1, x1, y2, x2) pixels of the crop
    gt_masks       float32 [B, G, mh, mw] each nucleus' mask resized into its box (MINI_MASK_SHAPE)
    rpn_match      int32   [B, A]         1 / -1 / 0 (see mrcnn.rpn_targets)
    rpn_bbox       float32 [B, A, 4]      anchor deltas (positives only)

Training batches draw images at random (seeded by seed, epoch and batch index, so
any worker gives the same batch), apply the shared augmentation
(``preprocessing.augment``, image and labels moved together) and a random crop.
Validation batches are deterministic.
"""

import cv2
import keras
import numpy as np

from mrcnn.anchors import anchors_for_config
from mrcnn.boxes import labels_to_boxes
from mrcnn.rpn_targets import build_rpn_targets
from preprocessing.errors import NucleiError
from preprocessing.normalize import normalize


def normalize_image(image: np.ndarray, config) -> np.ndarray:
    """uint8 [H, W, 3] -> float32 [H, W, IMAGE_CHANNEL_COUNT] as the model expects
    (config.NORMALIZE, a preprocessing.normalize mode)."""
    return normalize(image, config.NORMALIZE, invert_light_background=config.INVERT_LIGHT_BACKGROUND)


def model_input(image, config):
    """uint8 [H, W, 3] -> (float32 [H', W', C] zero-padded at bottom/right to multiples of
    IMAGE_PAD_MULTIPLE, (H, W))."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise NucleiError(f"expected a uint8 [H, W, 3] image, got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    if height * width > config.IMAGE_MAX_PIXELS:
        raise NucleiError(f"image of {height}x{width} exceeds IMAGE_MAX_PIXELS={config.IMAGE_MAX_PIXELS}")
    x = normalize_image(image, config)
    m = config.IMAGE_PAD_MULTIPLE
    padded = np.zeros((-(-height // m) * m, -(-width // m) * m, x.shape[2]), np.float32)
    padded[:height, :width] = x
    return padded, (height, width)


def mini_masks(labels, boxes, ids, shape):
    """Each nucleus' mask cropped to its box and resized to ``shape``: float32 [N, mh, mw] in [0, 1]."""
    out = np.zeros((len(ids), shape[0], shape[1]), np.float32)
    for k, (box, label) in enumerate(zip(boxes.astype(int), ids)):
        y1, x1, y2, x2 = box
        crop = (labels[y1:y2, x1:x2] == label).astype(np.float32)
        out[k] = cv2.resize(crop, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return out


def ground_truth(labels, config, rng=None):
    """(class_ids int32 [G], boxes float32 [G, 4], masks float32 [G, mh, mw]) padded to MAX_GT_INSTANCES.

    When there are more nuclei than MAX_GT_INSTANCES the largest are kept.
    """
    boxes, ids = labels_to_boxes(labels)
    g = config.MAX_GT_INSTANCES
    if len(ids) > g:
        areas = np.bincount(labels.ravel())[ids]
        keep = np.sort(np.argsort(-areas, kind="stable")[:g])
        boxes, ids = boxes[keep], ids[keep]
    n = len(ids)
    class_ids = np.zeros(g, np.int32)
    class_ids[:n] = 1
    out_boxes = np.zeros((g, 4), np.float32)
    out_boxes[:n] = boxes
    masks = np.zeros((g,) + tuple(config.MINI_MASK_SHAPE), np.float32)
    masks[:n] = mini_masks(labels, boxes, ids, config.MINI_MASK_SHAPE)
    return class_ids, out_boxes, masks


def make_example(image, labels, config, rng, anchors=None):
    """One training example (dict of arrays, no batch axis) from an image crop and its labels."""
    if anchors is None:
        anchors = anchors_for_config(config, image.shape[:2])
    class_ids, boxes, masks = ground_truth(labels, config, rng)
    match, deltas = build_rpn_targets(anchors, boxes[class_ids > 0], config, rng)
    return {"image": normalize_image(image, config), "gt_class_ids": class_ids, "gt_boxes": boxes,
            "gt_masks": masks, "rpn_match": match, "rpn_bbox": deltas}


def _random_crop(image, labels, size, rng):
    from preprocessing.augment import random_crop

    return random_crop(image, labels, size, rng)


def _fixed_crop(image, labels, size):
    """Top-left crop, zero-padded to size (validation: deterministic)."""
    out_image = np.zeros((size, size, 3), np.uint8)
    out_labels = np.zeros((size, size), np.int32)
    h, w = min(size, image.shape[0]), min(size, image.shape[1])
    out_image[:h, :w] = image[:h, :w]
    out_labels[:h, :w] = labels[:h, :w]
    from preprocessing.labels import relabel_consecutive

    return out_image, relabel_consecutive(out_labels)


class MrcnnDataset(keras.utils.PyDataset):
    """Batches for :meth:`mrcnn.model.MaskRCNN.train`.

    Args:
        samples: list of preprocessing.dataset.Sample with labels.
        config: mrcnn Config (BATCH_SIZE, IMAGE_CROP_SIZE, AUGMENT, ...).
        training: random images, augmentation and crops; else each image once, in order,
            as fixed crops (validation).
        steps: batches per epoch (default STEPS_PER_EPOCH, or VALIDATION_STEPS / all images).
        seed: seed of every random draw.
        crop_size: override IMAGE_CROP_SIZE (multiple of 64).
        **kwargs: PyDataset's workers / use_multiprocessing / max_queue_size.
    """

    def __init__(self, samples, config, training=True, steps=None, seed=None, crop_size=None, **kwargs):
        super().__init__(**kwargs)
        samples = [s for s in samples if s.labels is not None]
        if not samples:
            raise NucleiError("no labelled images to train or validate on")
        self.samples = samples
        self.config = config
        self.training = training
        self.seed = config.SEED if seed is None else seed
        self.crop_size = int(crop_size or config.IMAGE_CROP_SIZE)
        if self.crop_size % 64:
            raise NucleiError(f"crop size {self.crop_size} is not a multiple of 64")
        self.batch_size = config.BATCH_SIZE
        if steps is None:
            steps = config.STEPS_PER_EPOCH if training else min(
                config.VALIDATION_STEPS, -(-len(samples) // self.batch_size))
        self.steps = int(steps)
        self.epoch = 0
        self.anchors = anchors_for_config(config, (self.crop_size, self.crop_size))

    def __len__(self):
        return self.steps

    def on_epoch_end(self):
        self.epoch += 1

    def _augment(self, image, labels, rng):
        if not self.training or self.config.AUGMENT in (None, "none"):
            return image, labels
        from preprocessing.augment import Augmenter

        # a fresh augmenter seeded from this batch's generator: same batch from any worker
        return Augmenter(self.config.AUGMENT, seed=int(rng.integers(2**31 - 1)))(image, labels)

    def example(self, index, rng):
        sample = self.samples[index]
        if self.training:
            # crop before augmenting (cheaper on big images), with margin for rotations
            margin = min(self.crop_size * 3 // 2, max(sample.labels.shape))
            image, labels = sample.image, sample.labels
            if max(image.shape[:2]) > margin:
                image, labels = _random_crop(image, labels, margin, rng)
            image, labels = self._augment(image, labels, rng)
            image, labels = _random_crop(image, labels, self.crop_size, rng)
        else:
            image, labels = _fixed_crop(sample.image, sample.labels, self.crop_size)
        return make_example(image, labels, self.config, rng, self.anchors)

    def __getitem__(self, idx):
        if idx >= self.steps:
            raise IndexError(idx)
        epoch = self.epoch if self.training else 0
        rng = np.random.default_rng([self.seed, epoch, idx])
        if self.training:
            indices = rng.integers(len(self.samples), size=self.batch_size)
        else:
            indices = [(idx * self.batch_size + k) % len(self.samples) for k in range(self.batch_size)]
        examples = [self.example(int(i), rng) for i in indices]
        return {key: np.stack([e[key] for e in examples]) for key in examples[0]}
