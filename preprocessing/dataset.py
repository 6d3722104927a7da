"""Reading nucleus data: Kaggle's DSB 2018 layout, a compact label layout, or a flat folder.

Layouts understood by :func:`load_dataset` (detected per image folder):

* Kaggle: ``<root>/<id>/images/<id>.png`` and ``<root>/<id>/masks/*.png``, one binary
  PNG per nucleus (background its lowest value, 0 as a rule; nucleus its highest).
  A mask is refused when it is a JPEG (lossy: edges turn into grey levels) or covers
  more than half of its image (inverted: nuclei must be the bright pixels); a mask of
  more than two values is thresholded at half its maximum, with a warning naming it.
* Labels: ``<root>/<id>/images/<id>.png`` and ``<root>/<id>/labels/<id>.png``, one
  16-bit instance label image (0 = background, 1..N); the compact form written by
  :func:`save_labels_layout`, fast to read.
* Flat: image files directly in ``<root>`` (no masks): ``<root>/<id>.<ext>``.

Every image comes out as ``uint8 [H, W, 3]`` whatever it was on disk (grey, RGB, RGBA
with alpha dropped, palette, TIFF; 16-bit, 32-bit or float images rescaled linearly
between the 0.1 and 99.9 percentiles of their own values and clipped, so a few hot
pixels cannot darken the rest). Every mask set comes out as one instance label image
``int32 [H, W]``.
"""

import dataclasses
import logging
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from preprocessing.errors import NucleiError
from preprocessing.image_types import classify_image
from preprocessing.labels import relabel_consecutive

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
# Mask files in these formats are refused: lossy compression blurs a mask's edges.
LOSSY_EXTENSIONS = (".jpg", ".jpeg")
# A nucleus mask covering more than this share of its image is taken for an inverted one.
MAX_MASK_FRACTION = 0.5
# Images of more than 8 bits are scaled between these percentiles of their own values.
ROBUST_PERCENTILES = (0.1, 99.9)
# Percentiles of larger images are taken on an evenly strided subset of this many values.
PERCENTILE_SAMPLE = 1 << 22


@dataclasses.dataclass
class Sample:
    """One image and, where known, its nuclei.

    Attributes:
        image_id: the Kaggle id (folder name) or the file stem.
        image: uint8 [H, W, 3].
        labels: int32 [H, W], 0 = background, 1..N one id per nucleus; None without masks.
        image_type: 'fluorescence', 'brightfield' or 'histology' (see image_types.py).
        path: the image file it came from.
    """

    image_id: str
    image: np.ndarray
    labels: np.ndarray | None
    image_type: str
    path: Path


@dataclasses.dataclass
class Dataset:
    """The samples read from one root plus what was skipped and why."""

    root: Path
    samples: list
    skipped: list  # [(path, reason)] for whole images that were not read
    notes: list  # [(path, note)] for masks skipped or changed (empty, overlapping)

    def summary(self):
        n_nuclei = sum(int(s.labels.max()) for s in self.samples if s.labels is not None)
        types = {}
        for s in self.samples:
            types[s.image_type] = types.get(s.image_type, 0) + 1
        text = (f"{self.root}: {len(self.samples)} images, {n_nuclei} nuclei, types "
                + ", ".join(f"{k}={v}" for k, v in sorted(types.items())))
        if self.skipped:
            text += f"; {len(self.skipped)} images skipped"
        if self.notes:
            text += f"; {len(self.notes)} mask notes (empty or overlapping masks)"
        return text

    def by_id(self):
        return {s.image_id: s for s in self.samples}


def robust_range(array: np.ndarray) -> tuple[float, float]:
    """(low, high) of a numeric array: its 0.1 and 99.9 percentiles (ROBUST_PERCENTILES).

    When those coincide (a nearly constant image, or sparse bright nuclei on a flat
    background) the full min..max is returned instead. Pure; exact for integers of up to
    16 bits (a histogram), a strided subset of PERCENTILE_SAMPLE values otherwise.
    """
    flat = array.ravel()
    low_q, high_q = (q / 100.0 for q in ROBUST_PERCENTILES)
    if np.issubdtype(array.dtype, np.integer) and array.dtype.itemsize <= 2:
        offset = int(flat.min())
        counts = np.bincount((flat.astype(np.int64) - offset) if offset else flat)
        cumulative = np.cumsum(counts)
        n = cumulative[-1]
        low = offset + int(np.searchsorted(cumulative, low_q * n, side="right"))
        high = offset + int(np.searchsorted(cumulative, high_q * n, side="left"))
        lowest, highest = offset, offset + counts.size - 1
    else:
        step = max(1, flat.size // PERCENTILE_SAMPLE)
        low, high = (float(v) for v in np.percentile(flat[::step], ROBUST_PERCENTILES))
        lowest, highest = float(flat.min()), float(flat.max())
    if high <= low:
        return float(lowest), float(highest)
    return float(low), float(high)


def _to_uint8(array, path):
    """Rescale any numeric image to uint8 linearly between its robust range (robust_range), clipped."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise NucleiError(f"unsupported pixel type {array.dtype}", path)
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        raise NucleiError("image contains NaN or infinite pixels", path)
    low, high = robust_range(array)
    if high <= low:
        return np.zeros(array.shape, np.uint8)
    scaled = (array.astype(np.float32) - np.float32(low)) * np.float32(255.0 / (high - low))
    return np.round(np.clip(scaled, 0, 255, out=scaled), out=scaled).astype(np.uint8)


def _to_rgb(array, path):
    """[H, W] or [H, W, C] of any channel count -> [H, W, 3] (alpha dropped)."""
    if array.ndim == 2:
        return np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3:
        raise NucleiError(f"image has {array.ndim} dimensions, expected 2 or 3", path)
    channels = array.shape[2]
    if channels == 1:
        return np.repeat(array, 3, axis=2)
    if channels == 2:  # grey + alpha
        return np.repeat(array[:, :, :1], 3, axis=2)
    if channels in (3, 4):
        return np.ascontiguousarray(array[:, :, :3])
    raise NucleiError(f"image has {channels} channels, expected 1 to 4", path)


def _read_tiff_with_opencv(path):
    """The first page of a TIFF as stored, channels in RGB(A) order, or None if OpenCV cannot."""
    import cv2

    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if array is None or array.size == 0:
        return None
    if array.ndim == 3 and array.shape[2] == 3:
        return cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
    if array.ndim == 3 and array.shape[2] == 4:
        return cv2.cvtColor(array, cv2.COLOR_BGRA2RGBA)
    return array


def read_array(path):
    """Read an image file into a numpy array as stored (no channel or dtype changes).

    Palette images are expanded to RGB(A). Raises NucleiError for missing,
    truncated or non-image files.
    """
    path = Path(path)
    if not path.is_file():
        raise NucleiError("file not found", path)
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        try:
            array = tifffile.imread(path)
        except Exception as error:  # tifffile raises many types
            # compressed TIFFs (LZW, Deflate, JPEG: OpenCV's and ImageJ's defaults) need the
            # optional imagecodecs package in tifffile; OpenCV decodes them itself
            array = _read_tiff_with_opencv(path)
            if array is None:
                raise NucleiError(f"cannot read TIFF: {error}", path) from None
        if array.ndim == 3 and array.shape[0] in (1, 2, 3, 4) and array.shape[2] > 4:
            array = np.moveaxis(array, 0, -1)  # channels-first TIFF
        return array
    try:
        with Image.open(path) as image:
            image.load()  # forces decoding: truncated files fail here, not later
            if image.mode == "P":
                image = image.convert("RGBA" if "transparency" in image.info else "RGB")
            elif image.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                image = image.convert("RGB")
            elif image.mode == "1":
                image = image.convert("L")
            array = np.array(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise NucleiError(f"not a readable image ({error})", path) from None
    if image.mode.startswith("I;16") and array.dtype != np.uint16:
        array = array.astype(np.uint16)
    return array


def read_image(path):
    """Read any supported image file as uint8 [H, W, 3]."""
    array = read_array(path)
    if array.size == 0:
        raise NucleiError("image is empty", path)
    return _to_rgb(_to_uint8(array, path), path)


def read_label_image(path, shape=None):
    """Read a label image (0 = background, 1..N) as int32 [H, W], ids made consecutive."""
    array = read_array(path)
    if array.ndim == 3:
        raise NucleiError(f"label image must have one channel, has {array.shape[2]}", path)
    if not np.issubdtype(array.dtype, np.integer):
        raise NucleiError(f"label image must hold integers, holds {array.dtype}", path)
    if shape is not None and array.shape != tuple(shape):
        raise NucleiError(f"label image is {array.shape}, its image is {tuple(shape)}", path)
    return relabel_consecutive(array.astype(np.int64))


def mask_foreground(mask: np.ndarray, path: str | Path, notes: list | None = None) -> np.ndarray:
    """One nucleus' mask as stored ([H, W] or [H, W, C], any integer type) -> bool [H, W].

    Binary masks: foreground is the higher of the two values (so a background of 1, not
    0, is fine). A mask of more than two values (resampled, or lossy-saved) is thresholded
    at half its maximum, with a warning naming the file (and a note in ``notes``). A mask
    covering more than MAX_MASK_FRACTION of the image, or one value everywhere but 0, is
    refused as inverted (NucleiError naming the file).
    """
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask[..., :3].max(axis=2) if mask.shape[2] != 2 else mask[..., 0]
    if mask.dtype == bool:
        foreground = mask
    else:
        lowest, highest = mask.min(), mask.max()
        if lowest == highest:
            if highest == 0:
                return np.zeros(mask.shape, bool)
            raise NucleiError(f"mask is {highest} everywhere (covers the whole image): inverted or blank? "
                              "A mask must be 0 (background) around its nucleus", path)
        others = np.count_nonzero((mask != lowest) & (mask != highest))
        if others == 0:
            foreground = mask == highest
        else:
            threshold = float(highest) / 2
            levels = len(np.unique(mask))
            _note(notes, path, f"mask is not binary ({levels} values, {others} pixels neither background nor "
                               f"nucleus): thresholded at half its maximum (> {threshold:g})")
            foreground = mask > threshold
    fraction = float(np.count_nonzero(foreground)) / max(foreground.size, 1)
    if fraction > MAX_MASK_FRACTION:
        raise NucleiError(f"mask covers {fraction:.0%} of its image (more than {MAX_MASK_FRACTION:.0%}): "
                          "inverted? Nuclei must be the nonzero pixels on a 0 background", path)
    return foreground


def read_masks(mask_dir, shape, notes=None):
    """Combine Kaggle's one-PNG-per-nucleus masks into int32 [H, W] labels.

    Masks are taken in sorted file-name order and numbered 1..N. Empty masks are
    skipped; where masks overlap the earlier mask keeps the pixel. Both are reported
    with a warning and appended to ``notes`` as (path, note). JPEG, inverted and
    wrong-size masks raise NucleiError naming the file (see :func:`mask_foreground`).
    """
    mask_dir = Path(mask_dir)
    labels = np.zeros(shape, np.int32)
    next_id = 1
    for mask_path in sorted(p for p in mask_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS):
        if mask_path.suffix.lower() in LOSSY_EXTENSIONS:
            raise NucleiError("mask is a JPEG: lossy compression blurs its edges into grey levels; "
                              "save masks losslessly (PNG, TIFF or BMP)", mask_path)
        mask = read_array(mask_path)
        mask_shape = mask.shape[:2] if mask.ndim == 3 else mask.shape
        if mask.ndim not in (2, 3) or tuple(mask_shape) != tuple(shape):
            raise NucleiError(f"mask is {mask.shape}, its image is {tuple(shape)}", mask_path)
        mask = mask_foreground(mask, mask_path, notes)
        if not mask.any():
            _note(notes, mask_path, "empty mask skipped")
            continue
        overlap = mask & (labels > 0)
        if overlap.any():
            _note(notes, mask_path, f"{int(overlap.sum())} pixels overlap earlier masks; kept by the earlier")
            mask &= ~overlap
            if not mask.any():
                _note(notes, mask_path, "mask lies entirely under earlier masks; skipped")
                continue
        labels[mask] = next_id
        next_id += 1
    return labels


def _note(notes, path, text):
    warnings.warn(f"{path}: {text}", stacklevel=3)
    if notes is not None:
        notes.append((Path(path), text))


def _image_folders(root):
    """Yield (image_id, image_path, mask_dir | None, label_path | None) for a root."""
    root = Path(root)
    if not root.is_dir():
        raise NucleiError("data folder not found", root)
    entries = sorted(root.iterdir())
    flat = [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    folders = [p for p in entries if p.is_dir() and not p.name.startswith(".")]
    if flat and not folders:
        for path in flat:
            yield path.stem, path, None, None
        return
    if not folders:
        raise NucleiError("holds neither image files nor Kaggle-style <id>/images/ folders", root)
    for folder in folders:
        image_dir = folder / "images"
        if not image_dir.is_dir():
            raise NucleiError("missing images/ folder (expected <id>/images/<id>.png)", folder)
        candidates = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not candidates:
            raise NucleiError("images/ folder holds no image file", image_dir)
        preferred = [p for p in candidates if p.stem == folder.name]
        image_path = (preferred or candidates)[0]
        mask_dir = folder / "masks"
        label_path = folder / "labels" / f"{folder.name}.png"
        yield (folder.name, image_path, mask_dir if mask_dir.is_dir() else None,
               label_path if label_path.is_file() else None)


def load_sample(image_id, image_path, mask_dir=None, label_path=None, notes=None):
    """Read one image and its labels (None when it has neither masks nor labels)."""
    image = read_image(image_path)
    labels = None
    if label_path is not None:
        labels = read_label_image(label_path, image.shape[:2])
    elif mask_dir is not None:
        labels = read_masks(mask_dir, image.shape[:2], notes)
    return Sample(image_id, image, labels, classify_image(image), Path(image_path))


def load_dataset(root, require_labels=False, ids=None, progress=False):
    """Read every image under ``root`` (any layout in the module docstring).

    Args:
        root: data folder.
        require_labels: raise if an image has neither masks/ nor labels/.
        ids: optional iterable of image ids to read (others are not opened).
        progress: show a tqdm progress bar.

    Returns:
        Dataset with samples sorted by id, and notes on anything skipped.
    """
    root = Path(root)
    wanted = None if ids is None else set(ids)
    items = [item for item in _image_folders(root) if wanted is None or item[0] in wanted]
    if wanted is not None:
        missing = wanted - {item[0] for item in items}
        if missing:
            raise NucleiError(f"image ids not found: {', '.join(sorted(missing)[:5])}", root)
    samples, skipped, notes = [], [], []
    iterator = items
    if progress:
        from tqdm import tqdm

        iterator = tqdm(items, desc=f"reading {root.name}", unit="img", disable=None)
    for image_id, image_path, mask_dir, label_path in iterator:
        if require_labels and mask_dir is None and label_path is None:
            raise NucleiError("no masks/ or labels/ folder, but labels are required", image_path.parent.parent)
        samples.append(load_sample(image_id, image_path, mask_dir, label_path, notes))
    dataset = Dataset(root, samples, skipped, notes)
    log.info(dataset.summary())
    return dataset


def save_labels_layout(samples, out_root):
    """Write samples in the compact labels layout (image PNG + 16-bit label PNG).

    Grey images (R = G = B) are stored with one channel; reading them back gives
    the same uint8 [H, W, 3]. Used to ship or carry data cheaply.
    """
    out_root = Path(out_root)
    for sample in samples:
        folder = out_root / sample.image_id
        (folder / "images").mkdir(parents=True, exist_ok=True)
        image = sample.image
        if np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 0], image[..., 2]):
            image = image[..., 0]
        write_png(folder / "images" / f"{sample.image_id}.png", image)
        if sample.labels is not None:
            if sample.labels.max() > 65535:
                raise NucleiError("more than 65535 nuclei do not fit a 16-bit label image", sample.path)
            (folder / "labels").mkdir(exist_ok=True)
            write_png(folder / "labels" / f"{sample.image_id}.png", sample.labels.astype(np.uint16))


def write_png(path, array, compress_level=6):
    """Write uint8 or uint16 [H, W] / uint8 [H, W, 3] as PNG atomically (temp file + rename;
    a failed or interrupted write leaves the previous file, or none, never half a PNG).

    ``compress_level`` 0-9 (zlib): 1 writes an overlay three times faster than the default 6
    for files about a quarter larger (tools.predict writes its per-image outputs so)."""
    from preprocessing.files import atomic_target

    with atomic_target(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG", compress_level=compress_level)


def iter_images(root):
    """Yield (image_id, image_path) for every image under ``root`` (any layout), opening none."""
    for image_id, image_path, _, _ in _image_folders(root):
        yield image_id, image_path


def load_training_samples(roots, exclude_roots=(), max_images=None, seed=0, progress=True):
    """Labelled samples from several data roots, for training.

    Args:
        roots: data folders (any layout above; every image must have masks or labels).
        exclude_roots: folders whose image ids (sub-folder names) are left out, e.g. the
            bundled sample, so that scores on it stay honest.
        max_images: keep at most this many, chosen with ``seed`` (quick runs).

    Returns:
        list of Sample. Raises NucleiError for a missing folder or an id in two roots.
    """
    excluded = set()
    for root in exclude_roots:
        if not Path(root).is_dir():
            raise NucleiError("--exclude folder not found", root)
        excluded |= {p.name for p in Path(root).iterdir() if p.is_dir()}
    samples = []
    for root in roots:
        dataset = load_dataset(root, require_labels=True, progress=progress)
        samples += [s for s in dataset.samples if s.image_id not in excluded]
    ids = [s.image_id for s in samples]
    if len(set(ids)) != len(ids):
        raise NucleiError("the same image id appears in several data roots")
    if max_images and len(samples) > max_images:
        keep = np.random.default_rng(seed).choice(len(samples), max_images, replace=False)
        samples = [samples[k] for k in sorted(keep)]
    return samples
