"""Data augmentation shared by both models: image and instance labels move together.

One :class:`Augmenter` (a preset or a :class:`Pipeline` of named building blocks)
takes ``image: uint8 [H, W, 3]`` and ``labels: int32 [H, W]`` (0 = background,
one id per nucleus) and returns both augmented. Steps, in order:

1. nucleus copy (numpy, optional): real nuclei cut from donor images (or the image
   itself) are pasted with their masks into background areas, never touching an
   existing nucleus;
2. geometry (imgaug): flips, 90-degree rotations, rotation, zoom / aspect ratio,
   elastic, piecewise affine. They move the image and the label map together; the
   label map travels as ONE int32 ``SegmentationMapsOnImage`` (nearest neighbour),
   never as a stack of masks. Pixels that come from outside the image are filled
   with the image's median background colour (not black, which would frame light
   brightfield images);
3. photometry (imgaug, image only): CLAHE, sharpen, emboss, noise, grey, invert,
   grey to random colour map, blurs, contrast, brightness, HSV, channel shuffle;
4. labels re-derived: tiny remnants (< ``min_area`` pixels) of nuclei cut by the
   image border are dropped, then ids are made consecutive 1..N, numbered exactly
   as :func:`preprocessing.dataset.relabel_consecutive` does (see :func:`clean_labels`).
   A nucleus that geometry splits into disconnected pieces keeps ONE id: it is still
   one nucleus (rare; splitting would need a connected-components pass per call).

Randomness: one ``np.random.default_rng(seed)`` per Augmenter; it seeds imgaug and
drives nucleus copy, so the same seed and the same calls give the same outputs.
Give each data-loading worker its own seed. ``Rot90`` keeps the pixels, so a
non-square image may come back transposed ([W, H]); use :func:`random_crop`
afterwards for a fixed size.
"""

import copy
import dataclasses

import cv2
import numpy as np
from scipy import ndimage

from preprocessing.errors import NucleiError
from preprocessing.imgaug_compat import SegmentationMapsOnImage, iaa

PRESETS = ("none", "light", "heavy")

GEOMETRIC_BLOCKS = ("flip", "rot90", "rotate", "scale", "affine", "elastic", "piecewise_affine")
PHOTOMETRIC_BLOCKS = ("clahe", "sharpen", "emboss", "gaussian_noise", "grey", "invert", "grey_to_colour",
                      "blur", "median_blur", "motion_blur", "contrast", "brightness", "hsv", "channel_shuffle")
# Nucleus copy is the one block that is not an imgaug augmenter: see copy_nuclei / Pipeline.
BLOCKS = GEOMETRIC_BLOCKS + PHOTOMETRIC_BLOCKS + ("nucleus_copy",)

# Remnants of nuclei cut by the border smaller than this (pixels) are dropped.
MIN_REMNANT_AREA = 5


# --- building blocks ---------------------------------------------------------------------------

def _grey_to_random_colour(images, random_state, parents, hooks):
    """Map grey level through a random two-colour ramp so grey images look stained."""
    out = []
    for image in images:
        grey = image.astype(np.float32).mean(axis=2, keepdims=True) * np.float32(1 / 255)
        dark, light = random_state.uniform(0, 255, size=(2, 3)).astype(np.float32)
        gamma = np.float32(random_state.uniform(0.7, 1.4))
        coloured = dark + (light - dark) * np.power(grey, gamma)
        out.append(np.clip(coloured + 0.5, 0, 255).astype(np.uint8))
    return out


def block(name, order=1, zoom=(0.5, 2.0), max_rotation=180):
    """One named augmentation step as an imgaug augmenter (always applied when reached).

    Args:
        name: one of GEOMETRIC_BLOCKS or PHOTOMETRIC_BLOCKS.
        order: image interpolation of geometric blocks (0 nearest, 1 linear, 3 cubic);
            labels always use nearest neighbour.
        zoom: (low, high) scale factor of 'scale' and 'affine', drawn independently for
            x and y, so the aspect ratio changes too (< 1 zooms out, > 1 zooms in).
        max_rotation: degrees, for 'rotate' and 'affine' (uniform in +-max_rotation).

    Geometric blocks pad with constant 0; the Augmenter fills those pixels with the
    image's background colour afterwards.
    """
    zoom = {"x": tuple(zoom), "y": tuple(zoom)}
    rotation = (-max_rotation, max_rotation)
    factories = {
        "flip": lambda: iaa.Sequential([iaa.Fliplr(0.5), iaa.Flipud(0.5)]),
        "rot90": lambda: iaa.Rot90((0, 3), keep_size=False),
        "rotate": lambda: iaa.Affine(rotate=rotation, order=order, mode="constant", cval=0),
        "scale": lambda: iaa.Affine(scale=zoom, order=order, mode="constant", cval=0),
        # rotation and zoom in one warp: one interpolation, half the cost of two blocks
        "affine": lambda: iaa.Affine(rotate=rotation, scale=zoom, order=order, mode="constant", cval=0),
        "elastic": lambda: iaa.ElasticTransformation(alpha=(20, 60), sigma=(5, 8), order=order,
                                                     mode="constant", cval=0),
        # slow (scikit-image warp): presets give it a low probability
        "piecewise_affine": lambda: iaa.PiecewiseAffine(scale=(0.01, 0.03), nb_rows=4, nb_cols=4,
                                                        order=order, mode="constant", cval=0),
        "clahe": lambda: iaa.CLAHE(clip_limit=(1, 4)),
        "sharpen": lambda: iaa.Sharpen(alpha=(0.1, 0.5), lightness=(0.8, 1.2)),
        "emboss": lambda: iaa.Emboss(alpha=(0.1, 0.5), strength=(0.5, 1.5)),
        "gaussian_noise": lambda: iaa.AdditiveGaussianNoise(scale=(0, 0.05 * 255), per_channel=0.5),
        "grey": lambda: iaa.Grayscale(alpha=1.0),
        "invert": lambda: iaa.Invert(1.0),
        "grey_to_colour": lambda: iaa.Lambda(func_images=_grey_to_random_colour),
        "blur": lambda: iaa.GaussianBlur(sigma=(0.3, 1.5)),
        "median_blur": lambda: iaa.MedianBlur(k=(3, 5)),
        "motion_blur": lambda: iaa.MotionBlur(k=(3, 7)),
        "contrast": lambda: iaa.LinearContrast((0.6, 1.5)),
        "brightness": lambda: iaa.Sequential([iaa.Multiply((0.7, 1.3)), iaa.Add((-20, 20))]),
        "hsv": lambda: iaa.AddToHueAndSaturation(value_hue=(-30, 30), value_saturation=(-40, 40)),
        "channel_shuffle": lambda: iaa.ChannelShuffle(1.0),
    }
    if name not in factories:
        raise NucleiError(f"unknown augmentation block {name!r}; expected one of {BLOCKS}")
    return factories[name]()


@dataclasses.dataclass
class Pipeline:
    """What an Augmenter does.

    Attributes:
        geometric: imgaug augmenters applied to image and labels (in order).
        photometric: imgaug augmenters applied to the image only (in order).
        copy_probability: chance per call of pasting nuclei (see copy_nuclei).
        copy_max: at most this many nuclei pasted per call.
    """

    geometric: list = dataclasses.field(default_factory=list)
    photometric: list = dataclasses.field(default_factory=list)
    copy_probability: float = 0.0
    copy_max: int = 5


def preset_pipeline(preset):
    """The named Pipeline: 'none', 'light' or 'heavy'."""
    if preset == "none":
        return Pipeline()
    if preset == "light":
        return Pipeline(
            geometric=[block("flip"), block("rot90"), iaa.Sometimes(0.5, block("affine", zoom=(0.8, 1.25)))],
            photometric=[
                iaa.Sometimes(0.5, block("contrast")),
                iaa.Sometimes(0.5, block("brightness")),
                iaa.Sometimes(0.2, iaa.OneOf([block("blur"), block("gaussian_noise")])),
            ],
        )
    if preset == "heavy":
        return Pipeline(
            geometric=[
                block("flip"),
                block("rot90"),
                iaa.Sometimes(0.7, block("affine", zoom=(0.5, 2.0))),
                iaa.Sometimes(0.15, block("elastic")),
                iaa.Sometimes(0.01, block("piecewise_affine")),  # ~0.35 s per call at 256x256
            ],
            photometric=[
                iaa.Sometimes(0.05, block("grey_to_colour")),
                iaa.SomeOf((0, 3), [
                    block("clahe"), block("sharpen"), block("emboss"), block("gaussian_noise"),
                    iaa.OneOf([block("blur"), block("median_blur"), block("motion_blur")]),
                    block("contrast"), block("brightness"), block("hsv"), block("channel_shuffle"),
                ], random_order=True),
                iaa.Sometimes(0.1, block("grey")),
                iaa.Sometimes(0.1, block("invert")),
            ],
            copy_probability=0.3,
            copy_max=5,
        )
    raise NucleiError(f"unknown augmentation preset {preset!r}; expected one of {PRESETS}")


# --- label clean-up ----------------------------------------------------------------------------

def _border_remnant_ids(labels, areas, min_area):
    """bool [max_id + 1]: ids smaller than min_area pixels that touch the image border."""
    small = areas < min_area
    small[0] = False
    if not small.any():
        return small
    border = np.zeros_like(small)
    border[np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])] = True
    return small & border


def drop_border_remnants(labels, min_area=MIN_REMNANT_AREA):
    """Set to 0 the nuclei smaller than min_area pixels that touch the image border.

    labels: int [H, W], ids >= 0 -> same dtype [H, W] (a new array; ids are not renumbered).
    """
    drop = _border_remnant_ids(labels, np.bincount(labels.ravel()), min_area)
    out = labels.copy()
    if drop.any():
        out[drop[labels]] = 0
    return out


def clean_labels(labels, min_area=MIN_REMNANT_AREA):
    """Drop tiny border remnants and renumber ids 1..N: int [H, W] -> int32 [H, W].

    The numbering is exactly ``relabel_consecutive(drop_border_remnants(labels))``
    (ids keep their order; tested), done as one lookup table over bincount: ~20x
    faster than relabel_consecutive's np.unique (0.3 ms vs 6 ms at 256x256), which
    matters because it runs on every augmented image.
    """
    areas = np.bincount(labels.ravel())
    keep = areas > 0
    keep[0] = False
    keep &= ~_border_remnant_ids(labels, areas, min_area)
    table = np.cumsum(keep, dtype=np.int32)
    table[~keep] = 0
    return table[labels]


# --- nucleus copy ------------------------------------------------------------------------------

def copy_nuclei(image, labels, rng, donors=None, n_copies=3, margin=2, tries=10):
    """Paste real nuclei (pixels and masks) into background areas, without overlap.

    Args:
        image: uint8 [H, W, 3].
        labels: int32 [H, W], 0 = background.
        rng: np.random.Generator.
        donors: sequence of (image uint8 [h, w, 3], labels int [h, w]) to cut nuclei
            from; None = the image itself. Donors of the same image type look most natural.
        n_copies: how many nuclei to try to paste.
        margin: pixels of background kept between a pasted nucleus and any other.
        tries: random positions tried per nucleus before giving up on it.

    Returns:
        (image uint8 [H, W, 3], labels int32 [H, W]): new arrays; existing nuclei are
        unchanged, pasted ones get ids max+1, max+2, ... Each pasted nucleus is
        randomly flipped / rotated by 90 degrees.
    """
    image, labels = image.copy(), labels.astype(np.int32, copy=True)
    if donors is None:
        donors = [(image.copy(), labels.copy())]
    boxes = [ndimage.find_objects(donor_labels) for _, donor_labels in donors]
    candidates = [(d, i) for d, objects in enumerate(boxes) for i, box in enumerate(objects) if box is not None]
    if not candidates:
        return image, labels
    height, width = labels.shape
    next_id = int(labels.max()) + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
    for _ in range(n_copies):
        donor, index = candidates[rng.integers(len(candidates))]
        donor_image, donor_labels = donors[donor]
        box = boxes[donor][index]
        mask = donor_labels[box] == index + 1
        patch = donor_image[box]
        turns, flip = int(rng.integers(4)), bool(rng.integers(2))
        mask, patch = np.rot90(mask, turns), np.rot90(patch, turns)
        if flip:
            mask, patch = mask[:, ::-1], patch[:, ::-1]
        # footprint = mask grown by margin, in a box padded by margin on each side
        footprint = cv2.dilate(np.pad(mask, margin).astype(np.uint8), kernel).astype(bool)
        fh, fw = footprint.shape
        if fh > height or fw > width:
            continue
        for _ in range(tries):
            y, x = int(rng.integers(height - fh + 1)), int(rng.integers(width - fw + 1))
            if labels[y:y + fh, x:x + fw][footprint].any():
                continue
            inner = (slice(y + margin, y + fh - margin), slice(x + margin, x + fw - margin))
            image[inner][mask] = patch[mask]
            labels[inner][mask] = next_id
            next_id += 1
            break
    return image, labels


# --- the augmenter -----------------------------------------------------------------------------

def _check_pair(image, labels):
    image, labels = np.asarray(image), np.asarray(labels)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise NucleiError(f"expected image uint8 [H, W, 3], got {image.dtype} {list(image.shape)}")
    if labels.ndim != 2 or labels.shape != image.shape[:2] or not np.issubdtype(labels.dtype, np.integer):
        raise NucleiError(f"expected labels int [H, W] matching image {list(image.shape[:2])}, "
                          f"got {labels.dtype} {list(labels.shape)}")
    if labels.size and labels.min() < 0:
        raise NucleiError("labels must be >= 0 (0 = background)")
    return image, labels.astype(np.int32, copy=False)


def _background_colour(image, labels):
    """Median colour of background pixels (subsampled): uint8 [3]."""
    step = max(1, int(np.sqrt(labels.size / 16384)))
    pixels = image[::step, ::step][labels[::step, ::step] == 0]
    if len(pixels) == 0:
        pixels = image[::step, ::step].reshape(-1, 3)
    return np.median(pixels, axis=0).astype(np.float32)


class Augmenter:
    """Seeded augmentation of (image, labels) pairs.

    Args:
        preset: 'none', 'light', 'heavy', or a Pipeline.
        seed: int seed of the one random generator behind every draw.
        donors: optional sequence of (image, labels) to copy nuclei from
            (default: the image being augmented).
        min_area: after geometry, remnants of nuclei cut by the border smaller than this
            many pixels are dropped.
        relabel: make ids consecutive after augmentation (False keeps the input ids,
            minus dropped ones; useful to check where a nucleus went).

    Call: ``augmenter(image uint8 [H, W, 3], labels int [H, W])``
    -> ``(image uint8 [H', W', 3], labels int32 [H', W'])`` with (H', W') = (H, W)
    or (W, H) after a 90-degree rotation.
    """

    def __init__(self, preset="light", seed=0, donors=None, min_area=MIN_REMNANT_AREA, relabel=True):
        self.pipeline = preset if isinstance(preset, Pipeline) else preset_pipeline(preset)
        self.donors = donors
        self.min_area = min_area
        self.relabel = relabel
        # private copies: Augmenters built from one Pipeline (one per worker) share no state
        self._geometric = iaa.Sequential(copy.deepcopy(self.pipeline.geometric)) if self.pipeline.geometric else None
        self._photometric = (iaa.Sequential(copy.deepcopy(self.pipeline.photometric))
                             if self.pipeline.photometric else None)
        self.reseed(seed)

    def reseed(self, seed):
        """Restart every random draw from ``seed``: afterwards the Augmenter behaves like
        ``Augmenter(same preset, seed)``. Costs about as much as building one (imgaug
        reseeds every child augmenter: ~8 ms for 'heavy', ~4 ms for 'light'), so
        reseed per batch, not per image; cheapest is one Augmenter per worker."""
        self.rng = np.random.default_rng(seed)
        # imgaug keeps its own generators; seeding them from self.rng makes the sequence of
        # outputs a function of `seed` alone
        for sequence in (self._geometric, self._photometric):
            if sequence is not None:
                sequence.seed_(int(self.rng.integers(2**31 - 1)))

    def __call__(self, image, labels):
        image, labels = _check_pair(image, labels)
        pipeline = self.pipeline
        if pipeline.copy_probability > 0 and self.rng.random() < pipeline.copy_probability:
            image, labels = copy_nuclei(image, labels, self.rng, self.donors,
                                        n_copies=int(self.rng.integers(1, pipeline.copy_max + 1)))
        # remnants are dropped only after geometry, which is what cuts nuclei; tiny nuclei
        # at the border of an unmoved image are real annotations
        min_area = 0
        if self._geometric is not None:
            image, labels = self._apply_geometry(image, labels)
            min_area = self.min_area
        if self._photometric is not None:
            image = self._photometric(image=image)
        if self.relabel:
            labels = clean_labels(labels, min_area)
        elif min_area:
            labels = drop_border_remnants(labels, min_area)
        return np.ascontiguousarray(image), np.ascontiguousarray(labels, dtype=np.int32)

    def _apply_geometry(self, image, labels):
        """Geometric imgaug steps on image + labels; outside pixels get the background colour."""
        # a 4th channel of 255 marks pixels from inside the image; after the warp it is each
        # pixel's coverage (0..255), so the constant-0 outside can be replaced by the fill colour
        rgba = np.concatenate([image, np.full(image.shape[:2] + (1,), 255, np.uint8)], axis=2)
        segmap = SegmentationMapsOnImage(labels, shape=rgba.shape)
        warped, segmap = self._geometric(image=rgba, segmentation_maps=segmap)
        out = np.ascontiguousarray(warped[..., :3])
        partial = warped[..., 3] < 255
        if partial.any():  # flips and 90-degree turns never get here
            fill = _background_colour(image, labels)
            outside = (255 - warped[..., 3][partial].astype(np.float32)) * np.float32(1 / 255)
            out[partial] = np.clip(out[partial] + outside[:, None] * fill + 0.5, 0, 255).astype(np.uint8)
        return out, segmap.get_arr().astype(np.int32, copy=False)


# --- random crop -------------------------------------------------------------------------------

def _pad_mirrored(image, labels, pads):
    """Mirror-pad (edge pixel repeated) image and labels; mirrored nuclei get new ids.

    Each mirrored copy of the image is a tile of exactly [H, W]; ids in tile t are
    offset by t * max_id so no two copies of a nucleus share an id.
    """
    height, width = labels.shape
    (top, bottom), (left, right) = pads
    image = np.pad(image, (pads[0], pads[1], (0, 0)), mode="symmetric")
    padded = np.pad(labels, pads, mode="symmetric").astype(np.int64)
    tile_y = (np.arange(padded.shape[0]) - top) // height
    tile_x = (np.arange(padded.shape[1]) - left) // width
    n_x = tile_x.max() - tile_x.min() + 1
    tile = (tile_y - tile_y.min())[:, None] * n_x + (tile_x - tile_x.min())[None, :]
    original = (-tile_y.min()) * n_x + (-tile_x.min())
    n_tiles = (tile_y.max() - tile_y.min() + 1) * n_x
    rank = (tile - original) % n_tiles  # 0 for the original tile
    padded = np.where(padded > 0, padded + rank * max(int(labels.max()), 1), 0)
    return image, padded


def random_crop(image, labels, size, rng, pad_mode="reflect", nucleus_probability=0.9,
                min_area=MIN_REMNANT_AREA):
    """A random window of a fixed size, preferring windows that contain nuclei.

    Args:
        image: uint8 [H, W, 3].
        labels: int [H, W].
        size: int or (height, width) of the crop.
        rng: np.random.Generator.
        pad_mode: where the image is smaller than size: 'reflect' (mirror, edge pixel
            repeated; mirrored nuclei get their own ids) or 'constant' (image 0, labels 0).
            The image is placed at a random offset inside the padding.
        nucleus_probability: chance of centring the window's choice on a random nucleus
            pixel (the window then surely contains nuclei); otherwise uniform.
        min_area: remnants of cut nuclei smaller than this are dropped.

    Returns:
        (image uint8 [h, w, 3], labels int32 [h, w]) with ids renumbered 1..N.
    """
    image, labels = _check_pair(image, labels)
    crop_h, crop_w = (size, size) if np.isscalar(size) else (int(size[0]), int(size[1]))
    if crop_h <= 0 or crop_w <= 0:
        raise NucleiError(f"crop size must be positive, got {size}")
    if pad_mode not in ("reflect", "constant"):
        raise NucleiError(f"pad_mode must be 'reflect' or 'constant', got {pad_mode!r}")
    height, width = labels.shape
    need_y, need_x = max(0, crop_h - height), max(0, crop_w - width)
    if need_y or need_x:
        top, left = int(rng.integers(need_y + 1)), int(rng.integers(need_x + 1))
        pads = ((top, need_y - top), (left, need_x - left))
        if pad_mode == "reflect":
            image, labels = _pad_mirrored(image, labels, pads)
        else:
            image = np.pad(image, (pads[0], pads[1], (0, 0)))
            labels = np.pad(labels, pads)
        height, width = labels.shape
    y_max, x_max = height - crop_h, width - crop_w
    y, x = int(rng.integers(y_max + 1)), int(rng.integers(x_max + 1))
    if rng.random() < nucleus_probability:
        foreground = np.flatnonzero(labels)
        if len(foreground):
            fy, fx = divmod(int(foreground[rng.integers(len(foreground))]), width)
            # uniform among the windows that contain pixel (fy, fx)
            y = int(rng.integers(max(0, fy - crop_h + 1), min(y_max, fy) + 1))
            x = int(rng.integers(max(0, fx - crop_w + 1), min(x_max, fx) + 1))
    window = (slice(y, y + crop_h), slice(x, x + crop_w))
    return np.ascontiguousarray(image[window]), clean_labels(labels[window], min_area)
