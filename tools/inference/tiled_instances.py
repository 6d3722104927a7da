"""Instance prediction on images of any size: overlapping tiles, instances merged across seams.

For instance models (Mask R-CNN) whose memory grows with the image. The image is cut into
tiles of ``tile`` pixels overlapping by ``overlap``; each tile is predicted on its own.
Every tile owns a core region (its share of each overlap, split in the middle): an
instance is kept from the tile whose core holds its centre of mass, so a nucleus seen
whole by two tiles is kept once, from the tile that sees most context around it.
Where instances of two tiles still overlap, the higher score keeps the pixel. A
nucleus wider than the overlap can be cut by a tile edge: keep ``overlap`` above the
largest nucleus (DSB 2018 nuclei are under ~100 pixels). Only one batch of tiles is
in memory at a time, plus the int32 [H, W] result: memory is bounded by the tile, not the image.
"""

import numpy as np

from preprocessing.labels import compact
from tools.inference.tiling import tile_starts


def _cores(starts, tile, length):
    """[start, stop) of each tile's core along one axis: overlaps split at their middle."""
    bounds = []
    for k, start in enumerate(starts):
        low = 0 if k == 0 else (start + starts[k - 1] + tile) // 2
        high = length if k == len(starts) - 1 else (starts[k + 1] + start + tile) // 2
        bounds.append((low, high))
    return bounds


def predict_instances_tiled(predict_images, image, tile=1024, overlap=128, batch_size=1):
    """Instances of a large image from overlapping tiles.

    Args:
        predict_images: list of uint8 [h, w, 3] -> list of (labels int [h, w], scores float [N]).
        image: uint8 [H, W, 3].
        tile: tile side in pixels; images no larger go through whole.
        overlap: pixels shared by neighbouring tiles (more than a nucleus is wide).
        batch_size: tiles per call of ``predict_images``.

    Returns:
        (labels int32 [H, W] ids 1..N, scores float32 [N]).
    """
    height, width = image.shape[:2]
    if height <= tile and width <= tile:
        labels, scores = predict_images([image])[0]
        return compact(np.asarray(labels), np.asarray(scores, np.float32))
    tile_h, tile_w = min(tile, height), min(tile, width)
    ys, xs = tile_starts(height, tile_h, overlap), tile_starts(width, tile_w, overlap)
    y_cores, x_cores = _cores(ys, tile_h, height), _cores(xs, tile_w, width)
    boxes = [(iy, ix) for iy in range(len(ys)) for ix in range(len(xs))]
    out = np.zeros((height, width), np.int32)
    out_scores = []
    batch_size = max(1, int(batch_size))
    for first in range(0, len(boxes), batch_size):
        chunk = boxes[first:first + batch_size]
        crops = [image[ys[iy]:ys[iy] + tile_h, xs[ix]:xs[ix] + tile_w] for iy, ix in chunk]
        for (iy, ix), (labels, scores) in zip(chunk, predict_images(crops)):
            labels = np.asarray(labels)
            scores = np.asarray(scores, np.float32)
            y0, x0 = ys[iy], xs[ix]
            n = int(labels.max()) if labels.size else 0
            if n == 0:
                continue
            yy, xx = np.nonzero(labels)
            ids = labels[yy, xx]
            counts = np.bincount(ids, minlength=n + 1)
            present = counts > 0
            centre_y = np.bincount(ids, yy, minlength=n + 1) / np.maximum(counts, 1) + y0
            centre_x = np.bincount(ids, xx, minlength=n + 1) / np.maximum(counts, 1) + x0
            (cy0, cy1), (cx0, cx1) = y_cores[iy], x_cores[ix]
            owned = present & (centre_y >= cy0) & (centre_y < cy1) & (centre_x >= cx0) & (centre_x < cx1)
            owned[0] = False
            new_id = np.zeros(n + 1, np.int64)
            owned_ids = np.flatnonzero(owned)
            new_id[owned_ids] = len(out_scores) + 1 + np.arange(owned_ids.size)
            out_scores += [float(scores[k - 1]) if k - 1 < scores.size else 0.0 for k in owned_ids]
            window = out[y0:y0 + tile_h, x0:x0 + tile_w]
            incoming = new_id[labels]
            # Where an earlier tile already painted, the higher score keeps the pixel.
            score_table = np.concatenate([[-1.0], out_scores])
            wins = (incoming > 0) & (score_table[incoming] > score_table[window])
            window[wins] = incoming[wins]
    return compact(out, np.asarray(out_scores, np.float32))
