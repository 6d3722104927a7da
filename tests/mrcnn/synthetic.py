"""Synthetic nuclei for the learning tests: bright discs on a dark, noisy background."""

from pathlib import Path

import numpy as np

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
