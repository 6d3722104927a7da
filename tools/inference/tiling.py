"""Dense prediction of images of any size: pad to the network's multiple, tile big images.

Pure numpy around a ``predict_batch`` callable, so memory stays bounded whatever
the image size and any model that maps [B, h, w, C] -> [B, h, w, K] can use it.
"""

import numpy as np


def pad_to_multiple(image, multiple):
    """Reflect-pad [H, W, C] on the bottom/right to multiples; returns (padded, (H, W))."""
    height, width = image.shape[:2]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h or pad_w:
        mode = "reflect" if pad_h < height and pad_w < width else "edge"
        image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode=mode)
    return image, (height, width)


def tile_starts(length, tile, overlap):
    """Start offsets of tiles of size ``tile`` covering [0, length) with at least ``overlap``."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride)) + [length - tile]
    return sorted(set(starts))


def blend_window(tile, overlap):
    """[tile, tile] weights: 1 in the middle, ramping down linearly over ``overlap`` at edges."""
    ramp = np.ones(tile, np.float32)
    if overlap > 0:
        edge = (np.arange(overlap, dtype=np.float32) + 1) / (overlap + 1)
        ramp[:overlap] = edge
        ramp[-overlap:] = edge[::-1]
    return np.outer(ramp, ramp)


def predict_dense(predict_batch, image, multiple, tile=1024, overlap=64, batch_size=4):
    """Run ``predict_batch`` over ``image`` float32 [H, W, C]; returns float32 [H, W, K].

    Images up to ``tile`` on each side go through in one pass (padded); larger ones
    are cut into overlapping tiles whose outputs are blended with linear ramps.
    """
    padded, (height, width) = pad_to_multiple(image, multiple)
    ph, pw = padded.shape[:2]
    if ph <= tile and pw <= tile:
        return np.asarray(predict_batch(padded[None]))[0, :height, :width]
    tile_h, tile_w = min(tile, ph), min(tile, pw)
    ys, xs = tile_starts(ph, tile_h, overlap), tile_starts(pw, tile_w, overlap)
    window = blend_window(max(tile_h, tile_w), overlap)[:tile_h, :tile_w, None]
    total, weight = None, np.zeros((ph, pw, 1), np.float32)
    boxes = [(y, x) for y in ys for x in xs]
    for first in range(0, len(boxes), batch_size):
        chunk = boxes[first:first + batch_size]
        batch = np.stack([padded[y:y + tile_h, x:x + tile_w] for y, x in chunk])
        out = np.asarray(predict_batch(batch))
        if total is None:
            total = np.zeros((ph, pw, out.shape[-1]), np.float32)
        for (y, x), tile_out in zip(chunk, out):
            total[y:y + tile_h, x:x + tile_w] += tile_out * window
            weight[y:y + tile_h, x:x + tile_w] += window
    return (total / np.maximum(weight, 1e-6))[:height, :width]
