"""Test-time augmentation: 15 named transforms of an image, each with its inverse on the outputs.

Pure numpy / OpenCV, nothing about models. A :class:`Transform` has three parts:

* ``colour(image uint8 [H, W, 3]) -> uint8 [H, W, 3]``: a photometric change (gamma,
  channel order, contrast); identity for geometric transforms. Its inverse on the
  *outputs* is the identity (nuclei do not move when colours change).
* ``forward(array [H, W, ...]) -> [h, w, ...]``: the geometric change (flip, rotation,
  zoom) applied to the image or to the network input after normalisation.
* ``inverse(array [h, w, ...], (H, W)) -> [H, W, ...]``: back to the original frame, for
  probability maps (float, any channel count). ``inverse_labels`` does the same for
  instance label images int [h, w] (nearest neighbour, so ids stay ids).

The 8 dihedral transforms (flips and rotations of the square) invert exactly, on any
image shape. Zooms resample, so their round trip is exact only up to interpolation
(a zoom-out cannot be undone exactly: it discards pixels).

``TRANSFORM_NAMES`` fixes the order; ``select_transforms(n)`` takes the first ``n``
(``n = 1`` is the identity alone, ``n = 15`` the full set).
"""

import dataclasses
from typing import Callable

import cv2
import numpy as np

from preprocessing.errors import NucleiError


def _identity(array):
    return array


def _identity_inverse(array, shape):
    return array


def _resize(array, height, width, interpolation):
    """Resize [H, W] or [H, W, K] (any K, float or uint8) to (height, width)."""
    array = np.ascontiguousarray(array)
    if array.ndim == 3 and array.shape[2] > 4:  # OpenCV resizes at most 4 channels at once (safely)
        return np.stack([_resize(array[..., k], height, width, interpolation) for k in range(array.shape[2])], -1)
    out = cv2.resize(array, (width, height), interpolation=interpolation)
    if array.ndim == 3 and out.ndim == 2:
        out = out[..., None]
    return out


def _zoom_forward(factor):
    def forward(array):
        height, width = array.shape[:2]
        new_h, new_w = max(1, int(round(height * factor))), max(1, int(round(width * factor)))
        return _resize(array, new_h, new_w, cv2.INTER_LINEAR if factor > 1 else cv2.INTER_AREA)

    return forward


def _zoom_inverse(factor):
    def inverse(array, shape):
        return _resize(array, shape[0], shape[1], cv2.INTER_AREA if factor > 1 else cv2.INTER_LINEAR)

    return inverse


def _zoom_inverse_labels(array, shape):
    return _resize(array.astype(np.int32), shape[0], shape[1], cv2.INTER_NEAREST_EXACT)


def _gamma(gamma):
    table = np.clip(np.round(255.0 * (np.arange(256) / 255.0) ** gamma), 0, 255).astype(np.uint8)

    def colour(image):
        return table[image]

    return colour


def _contrast(factor):
    def colour(image):
        mean = image.reshape(-1, image.shape[-1]).mean(axis=0)
        out = (image.astype(np.float32) - mean) * factor + mean
        return np.clip(np.round(out), 0, 255).astype(np.uint8)

    return colour


def _channel_order(order):
    order = list(order)

    def colour(image):
        return np.ascontiguousarray(image[..., order])

    return colour


@dataclasses.dataclass(frozen=True)
class Transform:
    """One test-time transform: a colour change, a geometric change and its inverse.

    Attributes:
        name: unique name (see TRANSFORM_NAMES).
        colour: uint8 [H, W, 3] -> uint8 [H, W, 3] (identity for geometric transforms).
        forward: [H, W, ...] -> [h, w, ...] geometric change.
        inverse: ([h, w, ...] maps, (H, W)) -> [H, W, ...] back in the original frame.
        inverse_labels: ([h, w] int labels, (H, W)) -> int [H, W] (nearest neighbour).
        exact: True where inverse(forward(x)) == x for every array x.
    """

    name: str
    colour: Callable = _identity
    forward: Callable = _identity
    inverse: Callable = _identity_inverse
    inverse_labels: Callable = None
    exact: bool = True

    def output_shape(self, shape):
        """(h, w) of forward() for an input of (H, W), without transforming anything."""
        return self.forward(np.empty((shape[0], shape[1]), np.uint8)).shape[:2]

    def apply_to_image(self, image):
        """uint8 [H, W, 3] -> uint8 [h, w, 3]: colour, then geometry."""
        return np.ascontiguousarray(self.forward(self.colour(image)))

    def forward_labels(self, labels):
        """int [H, W] labels -> int32 [h, w] as forward() moves pixels (nearest neighbour for zooms)."""
        if self.exact:
            return np.ascontiguousarray(self.forward(labels)).astype(np.int32)
        height, width = self.output_shape(labels.shape)
        return _resize(labels.astype(np.int32), height, width, cv2.INTER_NEAREST_EXACT)

    def invert_labels(self, labels, shape):
        """int [h, w] instance labels of the transformed image -> int32 [H, W] in the original frame."""
        if self.inverse_labels is not None:
            return self.inverse_labels(labels, shape).astype(np.int32)
        return np.ascontiguousarray(self.inverse(labels, shape)).astype(np.int32)


def _dihedral(name, forward, inverse):
    return Transform(name, forward=forward, inverse=lambda a, shape: inverse(a))


def _rot90(k):
    return lambda a: np.rot90(a, k, axes=(0, 1))


def _transpose(a):
    return np.swapaxes(a, 0, 1)


def _anti_transpose(a):
    return np.rot90(np.swapaxes(a, 0, 1), 2, axes=(0, 1))


def _build_transforms():
    zoom_in, zoom_out = 1.25, 0.8
    transforms = [
        Transform("identity"),
        _dihedral("flip_lr", lambda a: a[:, ::-1], lambda a: a[:, ::-1]),
        _dihedral("flip_ud", lambda a: a[::-1], lambda a: a[::-1]),
        _dihedral("rot180", _rot90(2), _rot90(2)),
        _dihedral("rot90", _rot90(1), _rot90(-1)),
        _dihedral("rot270", _rot90(-1), _rot90(1)),
        _dihedral("transpose", _transpose, _transpose),
        _dihedral("anti_transpose", _anti_transpose, _anti_transpose),
        Transform(f"zoom_{zoom_in}", forward=_zoom_forward(zoom_in), inverse=_zoom_inverse(zoom_in),
                  inverse_labels=_zoom_inverse_labels, exact=False),
        Transform(f"zoom_{zoom_out}", forward=_zoom_forward(zoom_out), inverse=_zoom_inverse(zoom_out),
                  inverse_labels=_zoom_inverse_labels, exact=False),
        Transform("gamma_0.7", colour=_gamma(0.7)),
        Transform("gamma_1.4", colour=_gamma(1.4)),
        Transform("channels_bgr", colour=_channel_order((2, 1, 0))),
        Transform("contrast_1.3", colour=_contrast(1.3)),
        Transform("channels_gbr", colour=_channel_order((1, 2, 0))),
    ]
    return {t.name: t for t in transforms}


TRANSFORMS = _build_transforms()
TRANSFORM_NAMES = tuple(TRANSFORMS)  # the order --tta N takes them in
DIHEDRAL_NAMES = TRANSFORM_NAMES[:8]


def select_transforms(count_or_names):
    """The first ``n`` transforms of TRANSFORM_NAMES (1..15), or the named ones (list of str)."""
    if isinstance(count_or_names, (int, np.integer)):
        count = int(count_or_names)
        if not 1 <= count <= len(TRANSFORM_NAMES):
            raise NucleiError(f"--tta must be 1..{len(TRANSFORM_NAMES)}, got {count}")
        return [TRANSFORMS[name] for name in TRANSFORM_NAMES[:count]]
    unknown = [name for name in count_or_names if name not in TRANSFORMS]
    if unknown:
        raise NucleiError(f"unknown TTA transform(s) {', '.join(unknown)}; known: {', '.join(TRANSFORM_NAMES)}")
    return [TRANSFORMS[name] for name in count_or_names]


# --------------------------------------------------------------------------------------------
# Dense models (U-Net): average the inverse-transformed probability maps.
# --------------------------------------------------------------------------------------------

def _pad_batch(arrays, multiple):
    """Stack same-shape [h, w, C] arrays, reflect-padded bottom/right to multiples: [B, h', w', C]."""
    from tools.inference.tiling import pad_to_multiple

    return np.stack([pad_to_multiple(a, multiple)[0] for a in arrays]).astype(np.float32, copy=False)


def tta_dense(predict_batch, image, prepare, transforms, multiple, tile_size=1024, tile_overlap=64,
              max_batch_pixels=4 * 1024 * 1024, plan=None):
    """Mean of the inverse-transformed dense predictions of every transformed variant.

    Args:
        predict_batch: float32 [B, h, w, C] (h, w multiples of ``multiple``) -> [B, h, w, K].
        image: uint8 [H, W, 3].
        prepare: uint8 [H, W, 3] -> float32 [H, W, C] (the model's normalisation).
        transforms: list of Transform.
        multiple: network input sides must be multiples of this.
        tile_size, tile_overlap: variants larger than ``tile_size`` go through
            tools.inference.tiling.predict_dense (overlapping tiles, blended), so memory stays bounded.
        max_batch_pixels: variants of the same shape go through the network together,
            up to this many input pixels per batch.
        plan: optional ``(height, width) -> TilePlan`` (tools.inference.tiling.plan_tiles with a
            memory budget): decides per variant shape whether it goes whole and, if not, the
            tile side and tiles per batch. None: whole up to ``tile_size``, 4 tiles per batch.

    Returns:
        float32 [H, W, K], the mean over transforms.

    Variants are made one batch at a time (never all at once), and each output is added to
    one float32 [H, W, K] sum as soon as it is back in the original frame, so memory is a
    few image-size arrays plus one network batch, whatever the number of transforms.
    """
    from tools.inference.tiling import TilePlan, predict_dense

    shape = image.shape[:2]
    cache = {}  # the last colour transform's normalised image (geometry is applied after normalising)

    def variant_of(transform):
        if transform.colour not in cache:
            cache.clear()
            cache[transform.colour] = prepare(transform.colour(image)).astype(np.float32, copy=False)
        return transform.forward(cache[transform.colour])

    groups = {}  # variant shape -> [transform], in first-seen order
    for transform in transforms:
        groups.setdefault(tuple(transform.output_shape(shape)), []).append(transform)
    total = None

    def add(transform, output):
        nonlocal total
        back = transform.inverse(output, shape)
        if total is None:
            total = np.array(back, np.float32)
        else:
            total += back

    for (height, width), members in groups.items():
        padded_pixels = (height + (-height) % multiple) * (width + (-width) % multiple)
        if plan is not None:
            chosen = plan(height, width)
        elif height > tile_size or width > tile_size:
            chosen = TilePlan(False, tile_size, 4)
        else:
            chosen = TilePlan(True, max(height, width), max(1, int(max_batch_pixels // padded_pixels)))
        if not chosen.whole:
            for transform in members:
                add(transform, predict_dense(predict_batch, variant_of(transform), multiple, chosen.tile,
                                             tile_overlap, chosen.batch_size))
            continue
        per_batch = max(1, chosen.batch_size)
        for first in range(0, len(members), per_batch):
            chunk = members[first:first + per_batch]
            out = np.asarray(predict_batch(_pad_batch([variant_of(t) for t in chunk], multiple)))
            for transform, output in zip(chunk, out[:, :height, :width]):
                add(transform, output)
            del out
    cache.clear()
    total /= len(transforms)
    return total


# --------------------------------------------------------------------------------------------
# Instance models (Mask R-CNN): instances of every variant, back in the original frame.
# --------------------------------------------------------------------------------------------

def tta_instances(predict_images, image, transforms, max_batch_pixels=None):
    """Instances of every transformed variant, mapped back to the original frame.

    Args:
        predict_images: list of uint8 [h, w, 3] -> list of (labels int [h, w], scores float [N]).
        image: uint8 [H, W, 3].
        transforms: list of Transform.
        max_batch_pixels: variants per call of ``predict_images`` are limited to this many
            pixels (at least one variant per call); None: all variants in one call.

    Returns:
        list (one per transform) of (labels int32 [H, W], scores float32 [N]); merge them
        with tools.inference.merge.merge_instances. Variants are made one call at a time,
        so besides the results only one call's variants are in memory.
    """
    shape = image.shape[:2]
    chunks, current, pixels = [], [], 0
    for transform in transforms:
        size = int(np.prod(transform.output_shape(shape)))
        if current and max_batch_pixels is not None and pixels + size > max_batch_pixels:
            chunks.append(current)
            current, pixels = [], 0
        current.append(transform)
        pixels += size
    chunks.append(current)
    out = []
    for chunk in chunks:
        results = predict_images([transform.apply_to_image(image) for transform in chunk])
        for transform, (labels, scores) in zip(chunk, results):
            out.append((transform.invert_labels(np.asarray(labels), shape), np.asarray(scores, np.float32)))
        del results
    return out
