"""Model input transform: shapes, ranges, CLAHE contrast, mode switch, inversion."""

import numpy as np
import pytest
from scipy import ndimage

from preprocessing.errors import NucleiError
from preprocessing.normalize import (MODES, channels_for, clahe_lh, is_light_background, lightness,
                                     normalize, plain)


def low_contrast_image(shape=(128, 96)):
    """Smooth grey texture with levels 100..120 only: uint8 [H, W, 3]."""
    texture = ndimage.gaussian_filter(np.random.default_rng(0).normal(size=shape), 3)
    grey = (100 + 20 * (texture - texture.min()) / np.ptp(texture)).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def test_plain_shape_dtype_range():
    image = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    out = plain(image)
    assert out.shape == (20, 30, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out * 255, image, atol=1e-3)


def test_clahe_lh_shape_dtype_range():
    image = np.random.default_rng(2).integers(0, 256, (33, 47, 3), dtype=np.uint8)
    out = clahe_lh(image, clip_limit=3.0, tile_grid=(4, 4))
    assert out.shape == (33, 47, 2) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1


def test_clahe_increases_contrast_of_a_low_contrast_image():
    image = low_contrast_image()
    before = lightness(image)  # L of LAB, what CLAHE works on
    after = clahe_lh(image)[..., 0]
    assert after.std() > 1.5 * before.std()
    assert np.ptp(after) > 1.5 * np.ptp(before)
    stronger = clahe_lh(image, clip_limit=4.0)[..., 0]
    assert stronger.std() > 1.2 * after.std()


def test_hue_channel_keeps_colour_contrast():
    purple, pink = np.array([120, 40, 160], np.uint8), np.array([230, 160, 190], np.uint8)
    image = np.empty((16, 16, 3), np.uint8)
    image[:, :8], image[:, 8:] = purple, pink
    hue = clahe_lh(image)[..., 1]
    assert abs(float(hue[0, 0]) - float(hue[0, 15])) > 0.05
    grey = np.full((16, 16, 3), 90, np.uint8)
    assert clahe_lh(grey)[..., 1].max() == 0  # no hue without colour


@pytest.mark.parametrize("mode", MODES)
def test_switch_gives_the_advertised_channels(mode):
    image = low_contrast_image((24, 40))
    out = normalize(image, mode)
    assert out.shape == (24, 40, channels_for(mode)) and out.dtype == np.float32
    if mode in ("plain", "clahe"):
        assert out.min() >= 0 and out.max() <= 1
    else:  # standardised: centred on zero
        assert out.min() < 0 < out.max() and abs(float(out.mean())) < 1.5


def test_imagenet_and_standardize_modes_compute_their_formulas():
    from preprocessing.normalize import IMAGENET_MEAN, IMAGENET_STD

    image = low_contrast_image((8, 8))
    expected = (image / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(normalize(image, "imagenet"), expected, atol=1e-5)
    x = image.astype(np.float64)
    expected = (x - x.mean(axis=(0, 1))) / np.maximum(x.std(axis=(0, 1)), 5.0)
    np.testing.assert_allclose(normalize(image, "standardize"), expected, atol=1e-4)


def test_switch_matches_the_named_functions():
    image = np.random.default_rng(3).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    np.testing.assert_array_equal(normalize(image, "plain"), plain(image))
    np.testing.assert_array_equal(normalize(image, "clahe", clip_limit=3.0), clahe_lh(image, clip_limit=3.0))
    assert channels_for("plain") == 3 and channels_for("clahe") == 2


def test_unknown_mode_and_bad_image_raise():
    with pytest.raises(NucleiError, match="mode"):
        normalize(low_contrast_image(), "zscore")
    with pytest.raises(NucleiError, match="mode"):
        channels_for("zscore")
    with pytest.raises(NucleiError, match="uint8"):
        normalize(np.zeros((8, 8), np.uint8))


def test_invert_light_background_makes_nuclei_bright():
    light = np.full((32, 32, 3), 220, np.uint8)
    light[10:20, 10:20] = 60  # dark nucleus
    dark = 255 - light  # the fluorescence look: bright nucleus, dark background
    assert is_light_background(light) and not is_light_background(dark)
    for mode in MODES:
        inverted = normalize(light, mode, invert_light_background=True)[..., 0]
        assert inverted[15, 15] > inverted[0, 0]  # nucleus brighter than background
        kept = normalize(light, mode, invert_light_background=False)[..., 0]
        assert kept[15, 15] < kept[0, 0]
        np.testing.assert_array_equal(normalize(dark, mode, invert_light_background=True),
                                      normalize(dark, mode))
    np.testing.assert_allclose(normalize(light, "plain", invert_light_background=True), plain(dark), atol=1e-6)
