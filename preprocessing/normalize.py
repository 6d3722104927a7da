"""The model input transform, shared by U-Net and Mask R-CNN: the one place images are normalised.

Modes, chosen by one switch (:func:`normalize`) so both models see the same input:

* ``'plain'``: RGB scaled to [0, 1], 3 channels.
* ``'clahe'``: as in the DSB 2018 seed talk: RGB -> LAB, CLAHE on L, plus the H
  channel of HSV so colour contrast (purple nuclei on pink tissue) survives the
  reduction to one intensity channel; 2 channels, both in [0, 1].
* ``'standardize'``: per image and channel ``(x - mean) / max(std, 5)`` on 0..255 values.
* ``'imagenet'``: ``(x / 255 - IMAGENET_MEAN) / IMAGENET_STD``, torchvision's statistics, what
  ImageNet-pretrained encoders expect.

Optional inversion (``invert_light_background=True``): fluorescence images have
bright nuclei on a dark background, brightfield and histology dark nuclei on a
light one. Many DSB teams invert light-background images so nuclei are always
bright, which lets one model treat all kinds alike. An image counts as
light-background when its mean LAB lightness exceeds 0.5 (of 0..1). Inversion
flips intensity only: in the RGB modes all three channels (``255 - x`` before
scaling), in 'clahe' mode the CLAHE'd L channel; the hue channel is kept so stain
colour still tells histology apart.
"""

from __future__ import annotations

import cv2
import numpy as np

from preprocessing.errors import NucleiError

MODES = ("plain", "clahe", "standardize", "imagenet")
_CHANNELS = {"plain": 3, "clahe": 2, "standardize": 3, "imagenet": 3}
# torchvision's ImageNet preprocessing, for RGB in [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# 'standardize' divides by at least this standard deviation (0..255 scale): flat images stay finite.
MIN_STD = 5.0
# Mean LAB lightness (0..1) above which an image has a light background.
LIGHT_BACKGROUND_LIGHTNESS = 0.5


def _check_image(image):
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise NucleiError(f"expected an image uint8 [H, W, 3], got {image.dtype} {list(image.shape)}")
    return image


def channels_for(mode):
    """Number of channels :func:`normalize` returns for ``mode`` (3 or 2)."""
    if mode not in _CHANNELS:
        raise NucleiError(f"unknown normalisation mode {mode!r}; expected one of {MODES}")
    return _CHANNELS[mode]


def plain(image):
    """image: uint8 [H, W, 3] -> float32 [H, W, 3] in [0, 1]."""
    return _check_image(image).astype(np.float32) * np.float32(1 / 255)


def lightness(image):
    """image: uint8 [H, W, 3] -> LAB lightness float32 [H, W] in [0, 1]."""
    return cv2.cvtColor(_check_image(image), cv2.COLOR_RGB2LAB)[..., 0].astype(np.float32) * np.float32(1 / 255)


def is_light_background(image):
    """True when the mean LAB lightness of image (uint8 [H, W, 3]) exceeds 0.5."""
    return float(lightness(image).mean()) > LIGHT_BACKGROUND_LIGHTNESS


def clahe_lh(image, clip_limit=2.0, tile_grid=(8, 8)):
    """CLAHE'd LAB lightness and HSV hue.

    Args:
        image: uint8 [H, W, 3], RGB.
        clip_limit: CLAHE contrast limit (cv2.createCLAHE clipLimit).
        tile_grid: (rows, cols) of CLAHE tiles.

    Returns:
        float32 [H, W, 2] in [0, 1]: channel 0 = CLAHE(L), channel 1 = H (full circle
        mapped to [0, 1); 0 for grey pixels).
    """
    image = _check_image(image)
    lab_l = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)[..., 0]
    clahe = cv2.createCLAHE(clipLimit=float(clip_limit), tileGridSize=tuple(int(t) for t in tile_grid))
    out = np.empty(image.shape[:2] + (2,), np.float32)
    out[..., 0] = clahe.apply(lab_l)
    out[..., 1] = cv2.cvtColor(image, cv2.COLOR_RGB2HSV_FULL)[..., 0]  # hue 0..255
    out *= np.float32(1 / 255)
    return out


def normalize(image: np.ndarray, mode: str = "plain", invert_light_background: bool = False,
              clip_limit: float = 2.0, tile_grid: tuple[int, int] = (8, 8)) -> np.ndarray:
    """The model input for one image.

    Args:
        image: uint8 [H, W, 3].
        mode: one of MODES (see module doc).
        invert_light_background: invert intensity when mean LAB lightness > 0.5,
            so nuclei are bright in every image kind.
        clip_limit, tile_grid: CLAHE settings ('clahe' mode only).

    Returns:
        float32 [H, W, channels_for(mode)].
    """
    channels_for(mode)  # validates mode
    invert = invert_light_background and is_light_background(image)
    if mode == "clahe":
        out = clahe_lh(image, clip_limit, tile_grid)
        if invert:
            out[..., 0] = 1.0 - out[..., 0]
        return out
    image = _check_image(image)
    if invert:
        image = 255 - image
    if mode == "plain":
        return plain(image)
    if mode == "imagenet":
        return (plain(image) - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)
    x = image.astype(np.float32)  # 'standardize'
    mean = x.mean(axis=(0, 1), keepdims=True)
    std = np.maximum(x.std(axis=(0, 1), keepdims=True), MIN_STD)
    return (x - mean) / std
