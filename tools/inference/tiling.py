"""Dense prediction of images of any size: pad to the network's multiple, tile big images.

Pure numpy around a ``predict_batch`` callable, so any model that maps [B, h, w, C] ->
[B, h, w, K] can use it. Memory is bounded by the tile, not the image: one batch of tiles
goes through the network at a time, and the outputs are blended into one float32
[H, W, K] sum (the blending weights are separable, so they take two 1-D arrays, not a
second image). :func:`plan_tiles` chooses the tile side and the tiles per batch from a
memory budget.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# Tiles are never smaller than this (pixels per side), whatever the budget: below it the
# overlap dominates and the network sees too little context.
MIN_TILE = 256
# At most this many tiles per network call (more brings no speed on a CPU, only memory).
MAX_TILE_BATCH = 4
# At most this many whole same-shape images (test-time variants) per network call.
MAX_WHOLE_BATCH = 16


def pad_to_multiple(image: np.ndarray, multiple: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Reflect-pad [H, W, C] on the bottom/right to multiples; returns (padded [H', W', C], (H, W))."""
    height, width = image.shape[:2]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h or pad_w:
        mode = "reflect" if pad_h < height and pad_w < width else "edge"
        image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode=mode)
    return image, (height, width)


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering [0, length) with at least ``overlap``."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride)) + [length - tile]
    return sorted(set(starts))


def blend_ramp(tile: int, overlap: int) -> np.ndarray:
    """float32 [tile]: 1 in the middle, ramping down linearly over ``overlap`` at both ends."""
    ramp = np.ones(tile, np.float32)
    if overlap > 0:
        edge = (np.arange(overlap, dtype=np.float32) + 1) / (overlap + 1)
        ramp[:overlap] = edge
        ramp[-overlap:] = edge[::-1]
    return ramp


def blend_window(tile: int, overlap: int) -> np.ndarray:
    """float32 [tile, tile] weights: the outer product of two :func:`blend_ramp`."""
    ramp = blend_ramp(tile, overlap)
    return np.outer(ramp, ramp)


def blend_weights(length: int, starts: list[int], ramp: np.ndarray) -> np.ndarray:
    """float32 [length]: the sum of ``ramp`` placed at every start (one axis of the weight sum)."""
    total = np.zeros(length, np.float32)
    for start in starts:
        total[start:start + ramp.size] += ramp
    return total


@dataclasses.dataclass(frozen=True)
class TilePlan:
    """How one image goes through a network.

    Attributes:
        whole: True when the image goes through in one pass (no tiles).
        tile: tile side in pixels (the padded image side when ``whole``).
        batch_size: tiles per network call, or (``whole``) same-shape images per call.
    """

    whole: bool
    tile: int
    batch_size: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _round_down(value: float, multiple: int) -> int:
    return int(value // multiple) * multiple


def plan_tiles(height: int, width: int, max_tile: int, multiple: int, overlap: int,
               budget_bytes: float, bytes_per_pixel: float, min_tile: int = MIN_TILE,
               max_batch: int = MAX_TILE_BATCH) -> TilePlan:
    """Tile side and tiles per batch so that one network batch stays within ``budget_bytes``.

    Args:
        height, width: the image (before padding to ``multiple``).
        max_tile: largest tile side (the model's own, e.g. UNetConfig.tile_size); images
            no larger go through whole when the budget allows it.
        multiple: tile sides are multiples of this.
        overlap: pixels shared by neighbouring tiles; tiles are at least ``2 * overlap + multiple``.
        budget_bytes: memory one network batch may take (activations of the network).
        bytes_per_pixel: the network's working memory per input pixel.
        min_tile: tiles are never smaller than this (a budget too small for it gets it anyway).
        max_batch: at most this many tiles per call.

    Returns:
        TilePlan. Pure: the same inputs always give the same plan.
    """
    padded_h, padded_w = height + (-height) % multiple, width + (-width) % multiple
    budget_pixels = max(float(budget_bytes), 0.0) / max(float(bytes_per_pixel), 1e-9)
    if padded_h <= max_tile and padded_w <= max_tile and padded_h * padded_w <= budget_pixels:
        per_call = int(min(MAX_WHOLE_BATCH, budget_pixels // (padded_h * padded_w)))
        return TilePlan(True, max(padded_h, padded_w), max(1, per_call))
    smallest = max(min_tile, 2 * overlap + multiple)
    smallest = min(smallest + (-smallest) % multiple, max(max_tile, multiple))
    tile = min(max_tile, _round_down(budget_pixels ** 0.5, multiple))
    tile = max(tile, smallest)
    tile_pixels = min(tile, padded_h) * min(tile, padded_w)
    batch = int(min(max_batch, max(1, budget_pixels // tile_pixels)))
    return TilePlan(False, tile, batch)


def predict_dense(predict_batch, image: np.ndarray, multiple: int, tile: int = 1024, overlap: int = 64,
                  batch_size: int = 4) -> np.ndarray:
    """Run ``predict_batch`` over ``image`` float32 [H, W, C]; returns float32 [H, W, K].

    Images up to ``tile`` on each side go through in one pass (padded); larger ones
    are cut into overlapping tiles whose outputs are blended with linear ramps. Besides
    one batch of tiles, the memory taken is the padded image and the [H, W, K] sum.
    """
    padded, (height, width) = pad_to_multiple(image, multiple)
    ph, pw = padded.shape[:2]
    if ph <= tile and pw <= tile:
        return np.asarray(predict_batch(padded[None]))[0, :height, :width]
    tile_h, tile_w = min(tile, ph), min(tile, pw)
    ys, xs = tile_starts(ph, tile_h, overlap), tile_starts(pw, tile_w, overlap)
    ramp = blend_ramp(max(tile_h, tile_w), overlap)
    ramp_y, ramp_x = ramp[:tile_h], ramp[:tile_w]
    window = np.outer(ramp_y, ramp_x)[:, :, None]
    total = None
    boxes = [(y, x) for y in ys for x in xs]
    for first in range(0, len(boxes), max(1, int(batch_size))):
        chunk = boxes[first:first + batch_size]
        batch = np.stack([padded[y:y + tile_h, x:x + tile_w] for y, x in chunk])
        out = np.asarray(predict_batch(batch))
        del batch
        if total is None:
            total = np.zeros((ph, pw, out.shape[-1]), np.float32)
        for (y, x), tile_out in zip(chunk, out):
            total[y:y + tile_h, x:x + tile_w] += tile_out * window
        del out
    del padded
    # The weight sum of outer-product windows on a grid is itself an outer product.
    weight_y = np.maximum(blend_weights(ph, ys, ramp_y), 1e-6)
    weight_x = np.maximum(blend_weights(pw, xs, ramp_x), 1e-6)
    total = total[:height, :width]
    total /= weight_y[:height, None, None]
    total /= weight_x[None, :width, None]
    return total
