"""Test-time augmentation: transforms invert, equivariant models are unchanged by TTA."""

import numpy as np
import pytest

from preprocessing.errors import NucleiError
from tools.inference.tta import (DIHEDRAL_NAMES, TRANSFORM_NAMES, TRANSFORMS, select_transforms, tta_dense,
                       tta_instances)


def _smooth_image(height, width, channels=3):
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    return np.stack([np.sin(yy / 7.0 + k) * np.cos(xx / 9.0 - k) for k in range(channels)], -1)


def test_fifteen_unique_names_in_fixed_order():
    assert len(TRANSFORM_NAMES) == 15 == len(set(TRANSFORM_NAMES))
    assert TRANSFORM_NAMES[0] == "identity"
    assert [t.name for t in select_transforms(3)] == list(TRANSFORM_NAMES[:3])


@pytest.mark.parametrize("name", TRANSFORM_NAMES)
def test_inverse_of_forward_on_non_square_maps(name):
    transform = TRANSFORMS[name]
    maps = np.random.default_rng(0).random((37, 52, 3)).astype(np.float32)
    back = transform.inverse(transform.forward(maps), maps.shape[:2])
    assert back.shape == maps.shape
    if transform.exact:
        np.testing.assert_array_equal(back, maps)
    else:  # zooms resample: exact shape, values back up to interpolation on a smooth map
        smooth = _smooth_image(37, 52)
        again = transform.inverse(transform.forward(smooth), smooth.shape[:2])
        assert np.abs(again - smooth).mean() < 0.02


def test_the_eight_dihedral_transforms_are_distinct_and_exact():
    image = np.arange(5 * 7).reshape(5, 7)
    outputs = {TRANSFORMS[n].forward(image).tobytes() + bytes(TRANSFORMS[n].forward(image).shape)
               for n in DIHEDRAL_NAMES}
    assert len(outputs) == 8
    for name in DIHEDRAL_NAMES:
        assert TRANSFORMS[name].exact
        np.testing.assert_array_equal(TRANSFORMS[name].inverse(TRANSFORMS[name].forward(image), (5, 7)), image)


@pytest.mark.parametrize("name", TRANSFORM_NAMES)
def test_label_inverse_keeps_ids_and_shape(name):
    labels = np.zeros((40, 58), np.int32)
    labels[5:15, 6:20] = 1
    labels[22:35, 30:50] = 2
    transform = TRANSFORMS[name]
    back = transform.invert_labels(transform.forward_labels(labels), labels.shape)
    assert back.shape == labels.shape and back.dtype == np.int32
    assert set(np.unique(back)) == {0, 1, 2}
    assert (back == labels).mean() > 0.97


def test_colour_transforms_keep_uint8_and_geometry():
    image = (np.random.default_rng(1).random((9, 13, 3)) * 255).astype(np.uint8)
    changed = 0
    for name in TRANSFORM_NAMES:
        out = TRANSFORMS[name].colour(image)
        assert out.dtype == np.uint8 and out.shape == image.shape
        changed += not np.array_equal(out, image)
    assert changed == 5


def test_select_rejects_bad_counts_and_names():
    with pytest.raises(NucleiError):
        select_transforms(0)
    with pytest.raises(NucleiError):
        select_transforms(16)
    with pytest.raises(NucleiError):
        select_transforms(["rot45"])


def _pointwise_model(batch):
    """An equivariant 'network': per-pixel softmax of a fixed function of the pixel."""
    logits = np.stack([batch[..., 0] * 3, batch[..., 1] * 2, 1 - batch[..., 0]], -1)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_dense_tta_of_an_equivariant_model_equals_single_pass():
    image = (np.random.default_rng(2).random((45, 70, 3)) * 255).astype(np.uint8)
    prepare = lambda im: im.astype(np.float32) / 255  # noqa: E731
    calls = []

    def predict_batch(batch):
        calls.append(batch.shape)
        return _pointwise_model(batch)

    single = tta_dense(predict_batch, image, prepare, select_transforms(1), multiple=16)
    calls.clear()
    eight = tta_dense(predict_batch, image, prepare, select_transforms(8), multiple=16)
    np.testing.assert_allclose(eight, single, atol=1e-6)
    # variants of one shape share a batch: (45, 70) x4 and (70, 45) x4
    assert sorted(c[0] for c in calls) == [4, 4]
    assert all(c[1] % 16 == 0 and c[2] % 16 == 0 for c in calls)


def test_dense_tta_tiles_large_variants_and_bounds_batches():
    image = (np.random.default_rng(3).random((70, 90, 3)) * 255).astype(np.uint8)
    prepare = lambda im: im.astype(np.float32) / 255  # noqa: E731
    shapes = []

    def predict_batch(batch):
        shapes.append(batch.shape)
        return _pointwise_model(batch)

    single = tta_dense(predict_batch, image, prepare, select_transforms(1), multiple=16)
    out = tta_dense(predict_batch, image, prepare, select_transforms(8), multiple=16, tile_size=48,
                    tile_overlap=8, max_batch_pixels=48 * 48 * 2)
    assert max(s[1] for s in shapes) <= 96 and all(s[1] <= 48 for s in shapes[1:])
    np.testing.assert_allclose(out, single, atol=1e-5)


def test_full_tta_of_a_pointwise_model_is_close_to_single_pass():
    image = np.clip(_smooth_image(40, 64) * 100 + 128, 0, 255).astype(np.uint8)
    prepare = lambda im: im.astype(np.float32) / 255  # noqa: E731
    single = tta_dense(_pointwise_model, image, prepare, select_transforms(1), multiple=8)
    full = tta_dense(_pointwise_model, image, prepare, select_transforms(15), multiple=8)
    assert full.shape == single.shape
    assert np.abs(full - single).mean() < 0.05  # colour shifts change a pointwise model a little


def test_instance_tta_maps_instances_back():
    image = np.zeros((30, 50, 3), np.uint8)
    image[4:12, 5:15] = 200
    image[18:27, 30:44] = 200

    def predict_images(images):
        from scipy import ndimage

        out = []
        for im in images:
            labels, n = ndimage.label(im[..., 0] > 100)
            out.append((labels, np.ones(n, np.float32)))
        return out

    results = tta_instances(predict_images, image, select_transforms(8))
    truth = predict_images([image])[0][0]
    for labels, scores in results:
        assert labels.shape == (30, 50) and len(scores) == 2
        np.testing.assert_array_equal(labels > 0, truth > 0)


def test_dense_tta_memory_does_not_grow_with_the_number_of_transforms():
    import tracemalloc

    image = (np.random.default_rng(0).random((256, 256, 3)) * 255).astype(np.uint8)
    prepare = lambda im: im.astype(np.float32) / 255  # noqa: E731
    one_map = 256 * 256 * 3 * 4
    peaks = {}
    for count in (8, 15):
        tracemalloc.start()
        try:
            tta_dense(_pointwise_model, image, prepare, select_transforms(count), multiple=16,
                      max_batch_pixels=2 * 256 * 256)
            peaks[count] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    # variants are made one batch (here two) at a time and summed at once; making all of them
    # up front and keeping every output took 16 maps for 8 transforms, 27 for 15
    assert peaks[15] < 1.1 * peaks[8] and peaks[15] < 16 * one_map


def test_dense_tta_follows_the_plan_for_each_variant_shape():
    from tools.inference.tiling import TilePlan

    image = (np.random.default_rng(4).random((64, 96, 3)) * 255).astype(np.uint8)
    prepare = lambda im: im.astype(np.float32) / 255  # noqa: E731
    shapes = []

    def predict_batch(batch):
        shapes.append(batch.shape)
        return _pointwise_model(batch)

    plan = lambda h, w: TilePlan(False, 32, 3)  # noqa: E731  (a tiny budget: 32 px tiles, 3 per call)
    out = tta_dense(predict_batch, image, prepare, select_transforms(8), multiple=16, tile_overlap=8, plan=plan)
    single = tta_dense(_pointwise_model, image, prepare, select_transforms(1), multiple=16)
    assert all(s[0] <= 3 and s[1] == s[2] == 32 for s in shapes)
    np.testing.assert_allclose(out, single, atol=1e-5)


def test_instance_tta_calls_are_limited_to_the_pixel_budget():
    image = np.zeros((30, 40, 3), np.uint8)
    image[5:12, 5:15] = 200
    calls = []

    def predict_images(images):
        calls.append(len(images))
        from scipy import ndimage

        return [(ndimage.label(im[..., 0] > 100)[0], np.ones(1, np.float32)) for im in images]

    all_at_once = tta_instances(predict_images, image, select_transforms(8))
    assert calls == [8]
    calls.clear()
    one_by_one = tta_instances(predict_images, image, select_transforms(8), max_batch_pixels=1)
    assert calls == [1] * 8
    for (a, _), (b, _) in zip(all_at_once, one_by_one):
        np.testing.assert_array_equal(a, b)
