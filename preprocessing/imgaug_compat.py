"""The one place the project imports imgaug (upstream 0.4.0 from PyPI).

Use ``from preprocessing.imgaug_compat import ia, iaa, SegmentationMapsOnImage``;
never ``import imgaug`` elsewhere, so the fixes below are applied exactly once.

What is fixed here, and why (measured with numpy 2.4, OpenCV 4.14, scikit-image 0.26):

* ``np.sctypes`` was removed in NumPy 2; ``imgaug/imgaug.py`` reads it at import
  time. It is restored (only if missing) with NumPy 1.x's contents.
* ``iaa.ElasticTransformation`` raises ``cv2.error (-215) ... in convertMaps``
  for images *and* segmentation maps, at every interpolation order. Cause: its
  displacement fields come from ``blur_gaussian_`` as float64, so the remap
  coordinates ``x - dx`` are float64, and ``cv2.convertMaps`` accepts only
  CV_32FC1 / CV_32FC2 / CV_16SC2 maps. No parameter avoids it. The fix casts
  the displacement fields to float32 (what OpenCV wants anyway); displacements
  are a few dozen pixels, so float32 loses nothing.
* scikit-image 0.26 deprecates ``PiecewiseAffineTransform.estimate``, which
  imgaug's PiecewiseAffine calls on every image: a FutureWarning per image that
  says nothing to our users. FutureWarnings raised from imgaug's modules are ignored.

Known remaining NumPy 2 breakage in imgaug 0.4.0, not used by this project:
``iap.FrequencyNoise`` (so ``BlendAlphaFrequencyNoise``, ``Clouds``, ``Fog``) and
``iap.Power`` use the removed ``np.complex``.
"""

import warnings

import numpy as np

if not hasattr(np, "sctypes"):
    # NumPy 1.x's np.sctypes, which imgaug uses to sort dtypes into kinds.
    np.sctypes = {
        "int": [np.int8, np.int16, np.int32, np.int64],
        "uint": [np.uint8, np.uint16, np.uint32, np.uint64],
        "float": [np.float16, np.float32, np.float64, np.longdouble],
        "complex": [np.complex64, np.complex128, np.clongdouble],
        "others": [bool, object, bytes, str, np.void],
    }

import imgaug as ia  # noqa: E402  (needs np.sctypes first)
from imgaug import augmenters as iaa  # noqa: E402
from imgaug.augmentables.segmaps import SegmentationMapsOnImage  # noqa: E402
from imgaug.augmenters import geometric as _geometric  # noqa: E402

__all__ = ["ia", "iaa", "SegmentationMapsOnImage", "silence_imgaug_warnings"]


def silence_imgaug_warnings():
    """Ignore FutureWarnings raised from inside imgaug (skimage deprecations it triggers).

    Called at import; call again inside code that resets warning filters (pytest does).
    """
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"imgaug(\.|$)")


def _patch_elastic_float32_maps():
    """Make ElasticTransformation hand float32 displacement maps to cv2 (see module doc)."""
    elastic = _geometric.ElasticTransformation
    if getattr(elastic, "_nuclei_float32_maps", False):
        return
    generate = elastic._generate_shift_maps.__func__

    def generate_float32(cls, shape, alpha, sigma, random_state):
        dx, dy = generate(cls, shape, alpha, sigma, random_state)
        return dx.astype(np.float32, copy=False), dy.astype(np.float32, copy=False)

    elastic._generate_shift_maps = classmethod(generate_float32)
    elastic._nuclei_float32_maps = True


silence_imgaug_warnings()
_patch_elastic_float32_maps()
