"""Image type from simple colour statistics (no labels needed).

DSB 2018 mixes three kinds of microscopy, which behave very differently:

* 'fluorescence': grey content (R = G = B), bright nuclei on a dark background;
* 'brightfield': grey content on a light background, dark nuclei;
* 'histology': colour (H&E-stained tissue and colour brightfield), purple nuclei.

The type drives the stratified validation split and the balanced sampler.
"""

import numpy as np

IMAGE_TYPES = ("fluorescence", "brightfield", "histology")

# Mean absolute channel difference (0..255) above which an image counts as colour;
# JPEG-ish noise in grey images stays well below it.
COLOUR_THRESHOLD = 4.0
# Mean grey level above which a grey image counts as a light background (brightfield).
LIGHT_BACKGROUND_THRESHOLD = 110.0


def classify_image(image):
    """image: uint8 [H, W, 3] -> one of IMAGE_TYPES."""
    image = np.asarray(image)
    step = max(1, int(np.sqrt(image.shape[0] * image.shape[1] / 65536)))  # subsample big images
    pixels = image[::step, ::step, :3].astype(np.int16)
    colour = (np.abs(pixels[..., 0] - pixels[..., 1]).mean() + np.abs(pixels[..., 1] - pixels[..., 2]).mean()) / 2
    if colour > COLOUR_THRESHOLD:
        return "histology"
    if pixels.mean() > LIGHT_BACKGROUND_THRESHOLD:
        return "brightfield"
    return "fluorescence"
