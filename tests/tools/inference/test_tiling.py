"""Tiling: plans fit the memory budget, blended tiles match one pass, memory grows with the tile only."""

import tracemalloc

import numpy as np
import pytest

from tools.inference.tiling import (MIN_TILE, TilePlan, blend_window, pad_to_multiple, plan_tiles, predict_dense,
                                    tile_starts)

MB = 1024 * 1024


def _pointwise(batch):
    """A per-pixel 'network': [B, h, w, 3] -> [B, h, w, 3], no context, so tiling changes nothing."""
    return np.tanh(batch * np.float32(1.5) - np.float32(0.2))


def _reference_dense(predict_batch, image, multiple, tile, overlap, batch_size):
    """The blend of the former implementation: a full [H, W, 1] weight image."""
    padded, (height, width) = pad_to_multiple(image, multiple)
    ph, pw = padded.shape[:2]
    tile_h, tile_w = min(tile, ph), min(tile, pw)
    ys, xs = tile_starts(ph, tile_h, overlap), tile_starts(pw, tile_w, overlap)
    window = blend_window(max(tile_h, tile_w), overlap)[:tile_h, :tile_w, None]
    total, weight = None, np.zeros((ph, pw, 1), np.float32)
    for y in ys:
        for x in xs:
            out = np.asarray(predict_batch(padded[None, y:y + tile_h, x:x + tile_w]))[0]
            if total is None:
                total = np.zeros((ph, pw, out.shape[-1]), np.float32)
            total[y:y + tile_h, x:x + tile_w] += out * window
            weight[y:y + tile_h, x:x + tile_w] += window
    return (total / np.maximum(weight, 1e-6))[:height, :width]


def test_small_images_go_whole_when_the_budget_allows():
    assert plan_tiles(1024, 1024, 1024, 16, 64, 2000 * MB, 1200) == TilePlan(True, 1024, 1)
    assert plan_tiles(256, 320, 1024, 16, 64, 2000 * MB, 1200).whole
    # larger than the model's tile: tiles of that side, as many per batch as fit (at most 4)
    plan = plan_tiles(1040, 1388, 1024, 16, 64, 2000 * MB, 1200)
    assert plan == TilePlan(False, 1024, 1)


@pytest.mark.parametrize("budget_mb", [100, 300, 700, 1500, 5000])
def test_a_tiled_batch_fits_the_budget(budget_mb):
    bpp = 1200
    plan = plan_tiles(4000, 4000, 1024, 16, 64, budget_mb * MB, bpp)
    assert not plan.whole and plan.tile % 16 == 0 and MIN_TILE <= plan.tile <= 1024
    if plan.tile > MIN_TILE:  # above the floor the batch never exceeds the budget
        assert plan.tile ** 2 * bpp * plan.batch_size <= budget_mb * MB
    assert 1 <= plan.batch_size <= 4


def test_a_budget_too_small_for_any_tile_gets_the_smallest_tile_one_at_a_time():
    assert plan_tiles(4000, 3000, 1024, 16, 64, -5 * MB, 1200) == TilePlan(False, MIN_TILE, 1)
    # an image no larger than the tile but over the budget is tiled rather than run whole
    plan = plan_tiles(1024, 1024, 1024, 16, 64, 400 * MB, 1200)
    assert not plan.whole and plan.tile < 1024


def test_tiles_grow_with_the_budget_and_never_pass_the_model_tile():
    tiles = [plan_tiles(4000, 4000, 1024, 32, 64, mb * MB, 1200).tile for mb in (300, 600, 1200, 2400, 9999)]
    assert tiles == sorted(tiles) and tiles[-1] == 1024 and all(t % 32 == 0 for t in tiles)


def test_blended_tiles_equal_the_former_full_weight_blend():
    image = np.random.default_rng(0).random((150, 230, 3)).astype(np.float32)

    def context_model(batch):  # depends on the tile (its mean), so the blend weights matter
        return batch - batch.mean(axis=(1, 2), keepdims=True)

    out = predict_dense(context_model, image, 16, tile=64, overlap=16, batch_size=3)
    reference = _reference_dense(context_model, image, 16, 64, 16, 3)
    assert out.shape == (150, 230, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, reference, rtol=1e-5, atol=1e-6)


def test_tiles_of_a_pointwise_model_equal_one_pass_and_batches_are_bounded():
    image = np.random.default_rng(1).random((200, 300, 3)).astype(np.float32)
    shapes = []

    def model(batch):
        shapes.append(batch.shape)
        return _pointwise(batch)

    out = predict_dense(model, image, 16, tile=96, overlap=16, batch_size=2)
    np.testing.assert_allclose(out, _pointwise(image[None])[0], atol=1e-6)
    assert all(s[0] <= 2 and s[1] <= 96 and s[2] <= 96 for s in shapes)


def test_tiled_prediction_holds_one_image_size_sum_not_weight_images_or_copies():
    image = np.random.default_rng(2).random((1024, 1024, 3)).astype(np.float32)  # 12 MB, a multiple of 16
    tracemalloc.start()
    try:
        predict_dense(_pointwise, image, 16, tile=128, overlap=16, batch_size=2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # the sum (1x) and a batch of tiles; the former weight image, its maximum and the
    # divided copy took 2.7x
    assert peak < 1.5 * image.nbytes
