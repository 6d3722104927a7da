"""Augmentation: image and labels stay aligned, seeded, no invented ids, presets, copy, crop."""

import numpy as np
import pytest
from scipy import ndimage

from preprocessing.augment import (BLOCKS, GEOMETRIC_BLOCKS, PHOTOMETRIC_BLOCKS, PRESETS, Augmenter, Pipeline,
                                   ScaleAspect, block, clean_labels, copy_nuclei, drop_border_remnants,
                                   from_stains, grey_to_he, hed_jitter, invert_light_background,
                                   preset_pipeline, random_crop, recolour, restain, to_stains)
from preprocessing.dataset import relabel_consecutive
from preprocessing.errors import NucleiError
from preprocessing.image_types import classify_image
from preprocessing.imgaug_compat import iaa
from preprocessing.normalize import is_light_background

# imgaug triggers scikit-image deprecation FutureWarnings; imgaug_compat ignores them, but
# pytest resets warning filters per test
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def disk_grid(shape, radius=5, spacing=16, offset=8):
    """int32 [H, W] labels: disks on a grid, ids 1..N in row-major order."""
    labels = np.zeros(shape, np.int32)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    next_id = 1
    for cy in range(offset, shape[0], spacing):
        for cx in range(offset, shape[1], spacing):
            labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = next_id
            next_id += 1
    return labels


def textured_image(shape, seed=0):
    return np.random.default_rng(seed).integers(30, 220, shape + (3,), dtype=np.uint8)


def label_image(labels):
    """uint8 [H, W, 3] whose every channel equals labels (ids must be < 256)."""
    assert labels.max() < 256
    return np.repeat(labels.astype(np.uint8)[..., None], 3, axis=2)


# --- alignment --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", GEOMETRIC_BLOCKS)
def test_geometric_block_keeps_image_and_labels_aligned(name):
    labels = disk_grid((72, 88), radius=4, spacing=11, offset=6)  # 48 ids, non-square
    pipeline = Pipeline(geometric=[block(name, order=0)])
    augmenter = Augmenter(pipeline, seed=3, min_area=0, relabel=False)
    for _ in range(3):
        image_out, labels_out = augmenter(label_image(labels), labels)
        assert image_out.shape[:2] == labels_out.shape
        for channel in range(3):
            np.testing.assert_array_equal(image_out[..., channel], labels_out)


def test_full_geometric_chain_keeps_alignment():
    labels = disk_grid((96, 96), radius=5, spacing=14)
    pipeline = Pipeline(geometric=[block("flip"), block("rot90"), block("affine", order=0),
                                   block("elastic", order=0)])
    augmenter = Augmenter(pipeline, seed=8, min_area=0, relabel=False)
    for _ in range(3):
        image_out, labels_out = augmenter(label_image(labels), labels)
        np.testing.assert_array_equal(image_out[..., 0], labels_out)


def test_large_ids_survive_geometry():
    labels = disk_grid((64, 64), radius=6, spacing=20) * 1000 + 70000 * (disk_grid((64, 64), 6, 20) > 0)
    augmenter = Augmenter(Pipeline(geometric=[block("affine", max_rotation=20, zoom=(0.9, 1.1))]), seed=0,
                          relabel=False)
    _, labels_out = augmenter(textured_image((64, 64)), labels)
    assert set(np.unique(labels_out)) <= set(np.unique(labels))
    assert labels_out.max() > 65535


# --- reproducibility and ids ------------------------------------------------------------------

def test_same_seed_same_outputs_different_seed_different():
    image, labels = textured_image((96, 128)), disk_grid((96, 128))

    def run(seed):
        augmenter = Augmenter("heavy", seed=seed)
        return [augmenter(image, labels) for _ in range(3)]

    first, again, other = run(5), run(5), run(6)
    for (image_a, labels_a), (image_b, labels_b) in zip(first, again):
        np.testing.assert_array_equal(image_a, image_b)
        np.testing.assert_array_equal(labels_a, labels_b)
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first, other))


def test_geometry_never_invents_ids():
    labels = disk_grid((96, 112), radius=5, spacing=15)
    pipeline = preset_pipeline("heavy")
    pipeline.copy_probability = 0.0  # copying adds ids by design; tested separately
    augmenter = Augmenter(pipeline, seed=1, relabel=False)
    for _ in range(6):
        _, labels_out = augmenter(textured_image((96, 112)), labels)
        assert set(np.unique(labels_out)) <= set(np.unique(labels))


def test_rotation_loses_only_nuclei_near_the_border():
    size, radius = 120, 4
    labels = disk_grid((size, size), radius=radius, spacing=12, offset=6)
    centres = ndimage.center_of_mass(labels > 0, labels, np.arange(1, labels.max() + 1))
    distance = np.hypot(*(np.array(centres) - (size - 1) / 2).T)
    safe_ids = set(np.flatnonzero(distance + radius + 1 < size / 2) + 1)  # inside the inscribed circle
    augmenter = Augmenter(Pipeline(geometric=[block("rotate")]), seed=4, relabel=False)
    for _ in range(4):
        _, labels_out = augmenter(textured_image((size, size)), labels)
        lost = set(range(1, labels.max() + 1)) - set(np.unique(labels_out))
        assert not lost & safe_ids


def test_zoom_out_loses_no_nucleus():
    labels = disk_grid((96, 96), radius=6, spacing=16)
    augmenter = Augmenter(Pipeline(geometric=[block("scale", zoom=(0.5, 0.9))]), seed=2)
    for _ in range(3):
        _, labels_out = augmenter(textured_image((96, 96)), labels)
        assert labels_out.max() == labels.max()


def test_outside_pixels_get_the_background_colour():
    image = np.full((64, 64, 3), 200, np.uint8)  # light background, no black frame wanted
    labels = np.zeros((64, 64), np.int32)
    labels[28:36, 28:36] = 1
    image[labels > 0] = 40
    augmenter = Augmenter(Pipeline(geometric=[block("scale", zoom=(0.5, 0.6))]), seed=0)
    image_out, labels_out = augmenter(image, labels)
    assert image_out[0, 0].tolist() == [200, 200, 200]
    assert image_out[labels_out == 0].min() >= 195  # linear interpolation at the seam included


def test_drop_border_remnants_drops_only_small_pieces_at_the_border():
    labels = np.zeros((20, 20), np.int32)
    labels[0, 5:7] = 3  # 2-pixel remnant at the border: dropped
    labels[9:11, 9:11] = 5  # 4-pixel nucleus inside: kept
    labels[5:15, 0:4] = 7  # big nucleus at the border: kept
    out = drop_border_remnants(labels, min_area=5)
    assert set(np.unique(out)) == {0, 5, 7}
    np.testing.assert_array_equal(clean_labels(labels, min_area=5), relabel_consecutive(out))


def test_clean_labels_numbers_like_relabel_consecutive():
    labels = np.random.default_rng(0).choice([0, 0, 0, 4, 9, 17, 300], size=(40, 50)).astype(np.int32)
    labels[0, 0] = 2  # 1-pixel border remnant
    cleaned = clean_labels(labels, min_area=2)
    np.testing.assert_array_equal(cleaned, relabel_consecutive(drop_border_remnants(labels, min_area=2)))
    assert cleaned.dtype == np.int32
    np.testing.assert_array_equal(np.unique(cleaned), np.arange(5))


# --- presets and blocks -----------------------------------------------------------------------

@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("shape", [(256, 256), (200, 312)])
def test_preset_runs_on_square_and_non_square_inputs(preset, shape):
    image, labels = textured_image(shape), disk_grid(shape)
    augmenter = Augmenter(preset, seed=0)
    for _ in range(3):
        image_out, labels_out = augmenter(image, labels)
        assert image_out.dtype == np.uint8 and labels_out.dtype == np.int32
        assert image_out.shape[2] == 3 and image_out.shape[:2] == labels_out.shape
        assert labels_out.shape in (shape, shape[::-1])
        np.testing.assert_array_equal(np.unique(labels_out), np.arange(labels_out.max() + 1))
    if preset == "none":
        np.testing.assert_array_equal(image_out, image)
        np.testing.assert_array_equal(labels_out, labels)


@pytest.mark.parametrize("name", PHOTOMETRIC_BLOCKS)
def test_photometric_block_leaves_labels_alone(name):
    image, labels = textured_image((48, 64)), disk_grid((48, 64))
    image_out, labels_out = Augmenter(Pipeline(photometric=[block(name)]), seed=0)(image, labels)
    np.testing.assert_array_equal(labels_out, labels)
    assert image_out.shape == image.shape and image_out.dtype == np.uint8


def test_every_named_block_exists_and_unknown_names_raise():
    assert set(BLOCKS) == set(GEOMETRIC_BLOCKS) | set(PHOTOMETRIC_BLOCKS) | {"nucleus_copy"}
    for name in GEOMETRIC_BLOCKS + PHOTOMETRIC_BLOCKS:
        assert isinstance(block(name), iaa.Augmenter)
    with pytest.raises(NucleiError):
        block("sparkle")
    with pytest.raises(NucleiError):
        Augmenter("medium")


def test_grey_to_colour_colours_a_grey_image():
    grey = np.repeat(np.tile(np.arange(0, 256, 4, dtype=np.uint8), (16, 1))[..., None], 3, axis=2)
    out, _ = Augmenter(Pipeline(photometric=[block("grey_to_colour")]), seed=1)(grey, np.zeros((16, 64), np.int32))
    assert np.abs(out[..., 0].astype(int) - out[..., 1]).mean() > 2 or np.abs(
        out[..., 1].astype(int) - out[..., 2]).mean() > 2


def test_bad_inputs_raise():
    augmenter = Augmenter("light", seed=0)
    with pytest.raises(NucleiError):
        augmenter(np.zeros((10, 10), np.uint8), np.zeros((10, 10), np.int32))
    with pytest.raises(NucleiError):
        augmenter(np.zeros((10, 10, 3), np.uint8), np.zeros((10, 11), np.int32))


# --- nucleus copy -----------------------------------------------------------------------------

def assert_pasted_without_overlap(labels, labels_out, image, image_out, margin):
    old = labels > 0
    np.testing.assert_array_equal(labels_out[old], labels[old])  # existing nuclei untouched
    new_ids = np.setdiff1d(np.unique(labels_out), np.unique(labels))
    assert len(new_ids) > 0 and new_ids.min() > labels.max()
    for new_id in new_ids:
        grown = ndimage.binary_dilation(labels_out == new_id, iterations=margin)
        assert set(np.unique(labels_out[grown])) <= {0, new_id}  # touches nobody
    unchanged = labels_out == labels
    np.testing.assert_array_equal(image_out[unchanged], image[unchanged])
    return new_ids


def test_nucleus_copy_from_the_same_image_adds_nuclei_without_overlap():
    labels = disk_grid((128, 128), radius=5, spacing=40)  # sparse: room to paste
    image = textured_image((128, 128))
    image_out, labels_out = copy_nuclei(image, labels, np.random.default_rng(0), n_copies=4, margin=2)
    new_ids = assert_pasted_without_overlap(labels, labels_out, image, image_out, margin=2)
    assert len(new_ids) == 4
    for new_id in new_ids:
        assert (labels_out == new_id).sum() == (labels == 1).sum()  # a disk keeps its area


def test_nucleus_copy_from_donors_pastes_their_pixels():
    donor_labels = np.zeros((30, 30), np.int32)
    donor_labels[10:16, 8:20] = 1
    donor_image = np.zeros((30, 30, 3), np.uint8)
    donor_image[donor_labels > 0] = (250, 10, 120)
    labels, image = disk_grid((96, 96), radius=4, spacing=48), textured_image((96, 96))
    image_out, labels_out = copy_nuclei(image, labels, np.random.default_rng(1),
                                        donors=[(donor_image, donor_labels)], n_copies=3)
    new_ids = assert_pasted_without_overlap(labels, labels_out, image, image_out, margin=2)
    for new_id in new_ids:
        assert (labels_out == new_id).sum() == 72
        assert (image_out[labels_out == new_id] == (250, 10, 120)).all()


def test_nucleus_copy_gives_up_when_there_is_no_room():
    labels = np.ones((20, 20), np.int32)
    image, labels_out = copy_nuclei(textured_image((20, 20)), labels, np.random.default_rng(0), n_copies=3)
    np.testing.assert_array_equal(labels_out, labels)


# --- random crop ------------------------------------------------------------------------------

def test_random_crop_size_alignment_and_reproducibility():
    labels = disk_grid((150, 230), radius=5, spacing=17)
    image = label_image(labels)
    crops = [random_crop(image, labels, (64, 80), np.random.default_rng(9), min_area=0) for _ in range(2)]
    image_out, labels_out = crops[0]
    assert image_out.shape == (64, 80, 3) and labels_out.shape == (64, 80)
    np.testing.assert_array_equal(crops[0][0], crops[1][0])
    np.testing.assert_array_equal((image_out[..., 0] > 0), (labels_out > 0))
    np.testing.assert_array_equal(np.unique(labels_out), np.arange(labels_out.max() + 1))


def test_random_crop_prefers_windows_with_nuclei():
    labels = np.zeros((400, 400), np.int32)
    labels[300:306, 50:56] = 1  # one nucleus in a big empty image
    image = textured_image((400, 400))
    rng = np.random.default_rng(0)
    hits = sum(random_crop(image, labels, 64, rng, nucleus_probability=1.0)[1].max() > 0 for _ in range(20))
    assert hits == 20
    hits_uniform = sum(random_crop(image, labels, 64, rng, nucleus_probability=0.0)[1].max() > 0 for _ in range(20))
    assert hits_uniform < 10


def test_random_crop_pads_small_images_with_mirrored_nuclei_getting_own_ids():
    labels = np.zeros((40, 30), np.int32)
    labels[10:20, 0:6] = 1  # touches the left edge: its mirror copy touches it
    labels[25:32, 12:20] = 2
    image = label_image(labels * 100)
    image_out, labels_out = random_crop(image, labels, (96, 100), np.random.default_rng(3))
    assert image_out.shape == (96, 100, 3)
    np.testing.assert_array_equal(image_out[..., 0] > 0, labels_out > 0)  # mirrored together
    assert labels_out.max() > 2
    for nucleus_id in range(1, labels_out.max() + 1):
        _, n_pieces = ndimage.label(labels_out == nucleus_id)
        assert n_pieces == 1  # no id shared by two mirror copies


def test_random_crop_constant_padding_is_background():
    labels = disk_grid((40, 40), radius=5, spacing=20, offset=10)
    image = textured_image((40, 40))
    image_out, labels_out = random_crop(image, labels, 64, np.random.default_rng(0), pad_mode="constant")
    assert image_out.shape == (64, 64, 3)
    assert labels_out.max() == labels.max()
    assert (image_out.sum(axis=2) == 0).sum() >= 64 * 64 - 40 * 40


def test_random_crop_rejects_bad_arguments():
    with pytest.raises(NucleiError):
        random_crop(textured_image((20, 20)), np.zeros((20, 20), np.int32), 0, np.random.default_rng(0))
    with pytest.raises(NucleiError):
        random_crop(textured_image((20, 20)), np.zeros((20, 20), np.int32), 8, np.random.default_rng(0),
                    pad_mode="wrap")


# --- imgaug compatibility ---------------------------------------------------------------------

def test_none_preset_keeps_tiny_border_nuclei_and_only_renumbers():
    labels = np.zeros((32, 32), np.int32)
    labels[0, 3:5] = 9  # a real 2-pixel nucleus cut by the image border
    labels[10:15, 10:15] = 4
    _, labels_out = Augmenter("none", seed=0)(textured_image((32, 32)), labels)
    np.testing.assert_array_equal(labels_out, relabel_consecutive(labels))


def test_imgaug_deprecation_warnings_are_silenced():
    import warnings

    from preprocessing.imgaug_compat import silence_imgaug_warnings

    image = textured_image((32, 32))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_imgaug_warnings()
        iaa.PiecewiseAffine(scale=0.03, nb_rows=3, nb_cols=3, seed=0)(image=image)
    assert not [w for w in caught if issubclass(w.category, FutureWarning)]
    assert hasattr(np, "sctypes")  # restored for imgaug on NumPy 2


def test_augmenters_sharing_a_pipeline_are_independent():
    image, labels = textured_image((64, 64)), disk_grid((64, 64))
    pipeline = Pipeline(geometric=[block("affine")], photometric=[block("gaussian_noise")])
    alone = Augmenter(pipeline, seed=7)(image, labels)
    first, second = Augmenter(pipeline, seed=7), Augmenter(pipeline, seed=8)
    second(image, labels)  # must not advance `first`
    shared = first(image, labels)
    np.testing.assert_array_equal(alone[0], shared[0])
    np.testing.assert_array_equal(alone[1], shared[1])


def test_reseed_behaves_like_a_fresh_augmenter():
    image, labels = textured_image((64, 80)), disk_grid((64, 80))
    fresh = Augmenter("heavy", seed=21)
    expected = [fresh(image, labels) for _ in range(3)]
    reused = Augmenter("heavy", seed=3)
    reused(image, labels)
    reused.reseed(21)
    for want in expected:
        got = reused(image, labels)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


# --- stain and scale robustness ('stain' preset) ------------------------------------------------

def he_image(shape=(64, 80), seed=0):
    """(uint8 [H, W, 3] H&E-like: dark purple disks on a light lavender background, labels)."""
    labels = disk_grid(shape, radius=5, spacing=16)
    rng = np.random.default_rng(seed)
    stains = np.zeros(shape + (3,))
    stains[..., 0] = np.where(labels > 0, 0.07, 0.02) + rng.uniform(0, 0.005, shape)
    stains[..., 1] = np.where(labels > 0, 0.03, 0.005)
    stains[..., 2] = 0.005
    return from_stains(stains), labels


def grey_fluorescence(shape=(64, 80)):
    """(uint8 [H, W, 3] grey: bright disks on a dark background, labels)."""
    labels = disk_grid(shape, radius=5, spacing=16)
    grey = np.where(labels > 0, 200, 10).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2), labels


def channel_spread(image):
    image = image.astype(int)
    return (np.abs(image[..., 0] - image[..., 1]).mean() + np.abs(image[..., 1] - image[..., 2]).mean()) / 2


def test_stain_transform_round_trips_exactly():
    image, _ = he_image()
    np.testing.assert_array_equal(from_stains(to_stains(image)), image)
    random_colour = textured_image((32, 32))
    assert np.abs(from_stains(to_stains(random_colour)).astype(int) - random_colour).max() <= 1


def test_hed_jitter_changes_stain_colours_but_leaves_grey_images_alone():
    image, labels = he_image()
    rng = np.random.default_rng(0)
    outs = [hed_jitter(image, rng) for _ in range(4)]
    for out in outs:
        assert out.dtype == np.uint8 and out.shape == image.shape
        assert classify_image(out) == "histology"
        # nuclei stay darker than the background: the stain amounts move, not their order
        assert out[labels > 0].mean() < out[labels == 0].mean()
    assert all(np.abs(out.astype(int) - image).mean() > 1 for out in outs)
    assert not np.array_equal(outs[0], outs[1])
    grey, _ = grey_fluorescence()
    np.testing.assert_array_equal(hed_jitter(grey, rng), grey)


def test_grey_to_he_makes_bright_nuclei_dark_purple_on_a_light_background():
    for image, labels in (grey_fluorescence(), light_background_grey()):
        for seed in range(4):
            out = grey_to_he(image, np.random.default_rng(seed))
            assert classify_image(out) == "histology" and is_light_background(out)
            nuclei, background = out[labels > 0].astype(float), out[labels == 0].astype(float)
            assert nuclei.mean() < background.mean() - 40  # dark nuclei where they were bright / dark
            assert nuclei[:, 2].mean() > nuclei[:, 1].mean() + 10  # haematoxylin: blue over green
            assert background.mean() > 150


def light_background_grey(shape=(64, 80)):
    """(uint8 [H, W, 3] grey brightfield: dark disks on a light background, labels)."""
    labels = disk_grid(shape, radius=5, spacing=16)
    grey = np.where(labels > 0, 60, 220).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2), labels


def test_restain_gives_other_stains_grey_and_fluorescence_looks():
    image, labels = he_image()
    looks = set()
    for seed in range(12):
        out = restain(image, np.random.default_rng(seed))
        assert out.dtype == np.uint8 and out.shape == image.shape
        if channel_spread(out) < 1:
            looks.add("fluorescence" if out[labels > 0].mean() > out[labels == 0].mean() else "grey")
        else:
            assert not np.array_equal(out, image)
            looks.add("stain")
    assert looks == {"stain", "grey", "fluorescence"}


def test_recolour_colours_grey_images_and_restains_colour_ones():
    grey, _ = grey_fluorescence()
    assert classify_image(recolour(grey, np.random.default_rng(0))) == "histology"
    image, _ = he_image()
    assert not np.array_equal(recolour(image, np.random.default_rng(0)), image)


def test_invert_light_background_flips_only_light_images():
    light, labels = light_background_grey()
    inverted = invert_light_background(light)
    np.testing.assert_array_equal(inverted, 255 - light)
    assert inverted[labels > 0].mean() > inverted[labels == 0].mean()  # nuclei now bright
    dark, _ = grey_fluorescence()
    np.testing.assert_array_equal(invert_light_background(dark), dark)


@pytest.mark.parametrize("name", ["hed_jitter", "recolour", "invert_light"])
def test_colour_blocks_leave_labels_alone_and_are_seeded(name):
    image, labels = he_image()
    pipeline = Pipeline(photometric=[block(name)])
    first = [Augmenter(pipeline, seed=4)(image, labels) for _ in range(2)]
    np.testing.assert_array_equal(first[0][0], first[1][0])
    np.testing.assert_array_equal(first[0][1], labels)
    if name != "invert_light":  # deterministic: nothing to draw
        others = [Augmenter(pipeline, seed=seed)(image, labels)[0] for seed in range(5, 9)]
        assert any(not np.array_equal(other, first[0][0]) for other in others)


def test_scale_aspect_keeps_ids_and_bounds_zoom_and_aspect():
    labels = np.zeros((200, 200), np.int32)
    labels[80:120, 80:120] = 7  # a 40 x 40 square in the middle: its size shows the zoom
    labels[10:16, 10:16] = 3
    augmenter = Augmenter(Pipeline(geometric=[ScaleAspect(zoom=(0.5, 2.0), max_aspect=1.5, order=0)]),
                          seed=0, relabel=False)
    aspects = []
    for _ in range(12):
        _, out = augmenter(textured_image((200, 200)), labels)
        assert out.dtype == np.int32 and set(np.unique(out)) <= {0, 3, 7}
        rows, cols = np.nonzero(out == 7)  # zoom is about the centre: the square is never cut
        height, width = np.ptp(rows) + 1, np.ptp(cols) + 1
        assert 0.5 * 40 - 2 <= min(height, width) and max(height, width) <= 2 * 40 + 2
        aspects.append(width / height)
    assert all(1 / 1.5 - 0.08 <= a <= 1.5 + 0.08 for a in aspects)
    assert max(aspects) / min(aspects) > 1.1  # the aspect does vary


def test_scale_aspect_rejects_bad_ranges():
    with pytest.raises(NucleiError):
        ScaleAspect(zoom=(0, 2))
    with pytest.raises(NucleiError):
        ScaleAspect(max_aspect=0.9)


def test_stain_preset_is_seeded_and_keeps_labels_valid():
    image, labels = he_image((96, 128))
    grey, grey_labels = grey_fluorescence((96, 128))

    def run(seed):
        augmenter = Augmenter("stain", seed=seed)
        return [augmenter(*pair) for pair in [(image, labels), (grey, grey_labels)] * 3]

    first, again = run(5), run(5)
    for (image_a, labels_a), (image_b, labels_b) in zip(first, again):
        np.testing.assert_array_equal(image_a, image_b)
        np.testing.assert_array_equal(labels_a, labels_b)
        np.testing.assert_array_equal(np.unique(labels_a), np.arange(labels_a.max() + 1))
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first, run(6)))
