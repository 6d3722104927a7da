"""Balanced sampling over image types (the DSB 2018 seed's rule).

DSB 2018 is dominated by fluorescence images; sampling uniformly would teach the
model little about brightfield and histology. The rule:

* each image-type class c with n_c training images gets weight sqrt(n_c), spread
  evenly over its images (each image: sqrt(n_c) / n_c = 1 / sqrt(n_c));
* external data (images flagged ``is_external``, e.g. extra data sets) as a group
  gets the weight of the smallest training class, min_c sqrt(n_c), spread evenly
  over the external images, so it helps without swamping the competition data;
* weights are normalised to sum to 1.

Example: 4 fluorescence + 1 histology: class weights 2 and 1, image weights
(1/2, 1/2, 1/2, 1/2, 1) / 3.
"""

import numpy as np

from preprocessing.errors import NucleiError


def sampling_weights(image_types, is_external=None):
    """Sampling probability of each image.

    Args:
        image_types: sequence of str [n], one class name per image.
        is_external: optional sequence of bool [n]; True for external images (their
            image type is ignored).

    Returns:
        float64 [n], summing to 1.
    """
    image_types = np.asarray(image_types, dtype=object)
    n = len(image_types)
    if n == 0:
        raise NucleiError("cannot sample from no images")
    external = np.zeros(n, bool) if is_external is None else np.asarray(is_external, dtype=bool)
    if external.shape != (n,):
        raise NucleiError(f"is_external has {external.size} entries for {n} images")
    weights = np.zeros(n, np.float64)
    internal = ~external
    if not internal.any():  # only external data: nothing to balance against
        return np.full(n, 1.0 / n)
    classes, counts = np.unique(image_types[internal].astype(str), return_counts=True)
    for name, count in zip(classes, counts):
        weights[internal & (image_types == name)] = np.sqrt(count) / count
    if external.any():
        weights[external] = np.sqrt(counts.min()) / external.sum()
    return weights / weights.sum()


class BalancedSampler:
    """Seeded draws of image indices with :func:`sampling_weights`.

    Args:
        image_types: sequence of str [n].
        seed: int seed; the same seed gives the same sequence of draws.
        is_external: optional sequence of bool [n].
    """

    def __init__(self, image_types, seed=0, is_external=None):
        self.weights = sampling_weights(image_types, is_external)
        self.rng = np.random.default_rng(seed)

    def sample(self, n):
        """int64 [n] image indices, drawn with replacement by weight."""
        return self.rng.choice(len(self.weights), size=int(n), replace=True, p=self.weights)
