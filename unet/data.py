"""Keras PyDataset feeding the U-Net: sampled, augmented random crops with their targets.

Each batch is a pure function of (seed, epoch, batch index), so a run is
reproducible whatever the number of workers, and a resumed run continues the
same sequence of epochs.
"""

import keras
import numpy as np

from preprocessing.augment import Augmenter, random_crop
from preprocessing.normalize import normalize
from preprocessing.sampling import BalancedSampler
from unet.targets import training_target

# Augmentation works on a window this much larger than the crop, so zoom-out and
# rotation have real pixels to bring in.
CONTEXT_FACTOR = 1.5


def model_input(image, config):
    """uint8 [H, W, 3] -> float32 [H, W, C] as the network expects it."""
    return normalize(image, config.normalization, invert_light_background=config.invert_light_background)


class UNetTrainData(keras.utils.PyDataset):
    """Batches (x float32 [B, S, S, C], y uint8 [B, S, S] class ids, or with a distance head
    float32 [B, S, S, 2]: unet.targets.training_target) of random crops.

    Args:
        samples: list of preprocessing.dataset.Sample with labels.
        config: UNetConfig (crop_size, batch_size, normalisation, target widths).
        steps: batches per epoch.
        augment: augmentation preset name ('none', 'light', 'heavy').
        balanced: sample images by the balanced image-type rule, else uniformly.
        seed: base seed.
        **kwargs: workers, use_multiprocessing, max_queue_size (PyDataset's).
    """

    def __init__(self, samples, config, steps, augment="heavy", balanced=True, seed=0, **kwargs):
        super().__init__(**kwargs)
        if not samples:
            raise ValueError("no training samples")
        self.samples = samples
        self.config = config
        self.steps = int(steps)
        self.augment = augment
        self.seed = int(seed)
        self.epoch = 0
        types = [s.image_type for s in samples]
        self.weights = BalancedSampler(types, seed).weights if balanced else np.full(len(samples), 1 / len(samples))

    def __len__(self):
        return self.steps

    def on_epoch_end(self):
        self.epoch += 1

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def __getitem__(self, index):
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        augmenter = Augmenter(self.augment, seed=int(rng.integers(2**31)))
        size = self.config.crop_size
        xs, ys = [], []
        for _ in range(self.config.batch_size):
            sample = self.samples[rng.choice(len(self.samples), p=self.weights)]
            window = int(size * CONTEXT_FACTOR) if self.augment != "none" else size
            image, labels = random_crop(sample.image, sample.labels, window, rng)
            image, labels = augmenter(image, labels)
            image, labels = random_crop(image, labels, size, rng)
            xs.append(model_input(image, self.config))
            ys.append(training_target(labels, self.config))
        return np.stack(xs).astype(np.float32), np.stack(ys)


def validation_batches(samples, config, crops_per_image=2, seed=1234):
    """Fixed, un-augmented crops of the validation images: (x [N, S, S, C], y [N, S, S])."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for sample in samples:
        for _ in range(crops_per_image):
            image, labels = random_crop(sample.image, sample.labels, config.crop_size, rng)
            xs.append(model_input(image, config))
            ys.append(training_target(labels, config))
    return np.stack(xs).astype(np.float32), np.stack(ys)
