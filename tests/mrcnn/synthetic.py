"""Synthetic nuclei for the tests: bright discs on a dark, noisy background; bright squares in a
Mask R-CNN training batch."""

from pathlib import Path

import numpy as np

from mrcnn.data import make_example
from preprocessing.dataset import Sample


def disc_samples(count: int, seed: int, size: int = 128, discs: int = 5) -> list[Sample]:
    """``count`` grey images [size, size, 3] of ``discs`` bright, well separated discs
    (radius 7-14 px) on noise, with their labels [size, size]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    samples = []
    for index in range(count):
        labels = np.zeros((size, size), np.int32)
        placed = 0
        while placed < discs:
            radius = rng.uniform(7, 14)
            cy, cx = rng.uniform(radius + 2, size - radius - 2, 2)
            distance = (yy - cy) ** 2 + (xx - cx) ** 2
            if (labels[distance <= (radius + 3) ** 2] > 0).any():
                continue
            placed += 1
            labels[distance <= radius ** 2] = placed
        image = np.clip(rng.normal(30, 8, (size, size)) + 150 * (labels > 0), 0, 255).astype(np.uint8)
        samples.append(Sample(f"disc{index}", np.repeat(image[..., None], 3, axis=2), labels, "fluorescence",
                              Path(f"disc{index}.png")))
    return samples


def square_nuclei_batch(config, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One Mask R-CNN training batch (``config.BATCH_SIZE`` crops of 128 x 128, as
    :func:`mrcnn.data.make_example` makes them) with three 20 x 20 square nuclei each, at
    jittered places."""
    examples = []
    for _ in range(config.BATCH_SIZE):
        labels = np.zeros((128, 128), np.int32)
        for k, (y, x) in enumerate([(10, 10), (10, 70), (70, 40)]):
            dy, dx = rng.integers(0, 20, 2)
            labels[y + dy:y + dy + 20, x + dx:x + dx + 20] = k + 1
        image = np.where(labels[..., None] > 0, 200, 20).astype(np.uint8).repeat(3, axis=2)
        examples.append(make_example(image, labels, config, rng))
    return {key: np.stack([e[key] for e in examples]) for key in examples[0]}
