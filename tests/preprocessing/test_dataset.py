"""Reader: bad inputs give NucleiError naming the file; every image kind loads as uint8 [H, W, 3]."""

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from preprocessing.dataset import load_dataset, read_array, read_image, read_masks, save_labels_layout
from preprocessing.errors import NucleiError

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "stage1_train"


def write_png(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)
    return path


def disk_mask(shape, centre, radius):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) <= radius**2).astype(np.uint8) * 255


def kaggle_image(root, image_id="img", shape=(40, 50), masks=()):
    """Write <root>/<id>/images/<id>.png (grey ramp) and masks/<name>.png; return the folder."""
    folder = root / image_id
    image = np.tile(np.linspace(0, 200, shape[1], dtype=np.uint8), (shape[0], 1))
    write_png(folder / "images" / f"{image_id}.png", image)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    for name, mask in masks:
        write_png(folder / "masks" / name, mask)
    return folder


def assert_names(error_info, path):
    assert error_info.value.path == str(path)
    assert Path(path).name in str(error_info.value)


# --- bad inputs -------------------------------------------------------------------------------

def test_missing_images_folder_names_the_folder(tmp_path):
    folder = tmp_path / "abc"
    (folder / "masks").mkdir(parents=True)
    with pytest.raises(NucleiError, match="images/") as info:
        load_dataset(tmp_path)
    assert_names(info, folder)


def test_truncated_png_names_the_file(tmp_path):
    path = write_png(tmp_path / "cut.png", np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(NucleiError) as info:
        read_image(path)
    assert_names(info, path)


def test_truncated_png_inside_dataset_names_the_file(tmp_path):
    folder = kaggle_image(tmp_path, masks=[("m1.png", disk_mask((40, 50), (20, 20), 5))])
    image_path = folder / "images" / "img.png"
    data = image_path.read_bytes()
    image_path.write_bytes(data[:60])
    with pytest.raises(NucleiError) as info:
        load_dataset(tmp_path)
    assert_names(info, image_path)


def test_text_file_named_png_names_the_file(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n")
    with pytest.raises(NucleiError, match="not a readable image") as info:
        read_image(path)
    assert_names(info, path)


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(NucleiError, match="not found") as info:
        read_image(tmp_path / "nope.png")
    assert_names(info, tmp_path / "nope.png")


def test_mask_of_another_shape_names_the_mask(tmp_path):
    folder = kaggle_image(tmp_path, masks=[("good.png", disk_mask((40, 50), (20, 20), 5)),
                                           ("wrong.png", disk_mask((40, 49), (20, 20), 5))])
    with pytest.raises(NucleiError, match="mask is") as info:
        load_dataset(tmp_path)
    assert_names(info, folder / "masks" / "wrong.png")


def test_empty_mask_is_skipped_with_a_warning(tmp_path):
    folder = kaggle_image(tmp_path, masks=[("a.png", disk_mask((40, 50), (20, 20), 5)),
                                           ("b.png", np.zeros((40, 50), np.uint8)),
                                           ("c.png", disk_mask((40, 50), (10, 40), 4))])
    with pytest.warns(UserWarning, match="b.png: empty mask skipped"):
        dataset = load_dataset(tmp_path)
    labels = dataset.samples[0].labels
    assert labels.max() == 2  # a -> 1, c -> 2; b left no gap
    assert (labels == 2).sum() == (disk_mask((40, 50), (10, 40), 4) > 0).sum()
    assert dataset.notes == [(folder / "masks" / "b.png", "empty mask skipped")]


def test_overlapping_masks_resolved_deterministically_with_a_warning(tmp_path):
    first, second = disk_mask((40, 50), (20, 20), 8), disk_mask((40, 50), (20, 28), 8)
    folder = kaggle_image(tmp_path, masks=[("z_later.png", second), ("a_first.png", first)])
    with pytest.warns(UserWarning, match="overlap"):
        labels_once = read_masks(folder / "masks", (40, 50))
    with pytest.warns(UserWarning, match="overlap"):
        labels_again = read_masks(folder / "masks", (40, 50))
    np.testing.assert_array_equal(labels_once, labels_again)
    # masks are taken in file-name order: the earlier name keeps the shared pixels
    assert np.array_equal(labels_once == 1, first > 0)
    assert np.array_equal(labels_once == 2, (second > 0) & (first == 0))


def test_jpeg_mask_is_refused_naming_it(tmp_path):
    folder = kaggle_image(tmp_path, masks=[("a.png", disk_mask((40, 50), (20, 20), 5))])
    Image.fromarray(disk_mask((40, 50), (10, 40), 4)).save(folder / "masks" / "b.jpg", quality=90)
    with pytest.raises(NucleiError, match="JPEG") as info:
        load_dataset(tmp_path)
    assert_names(info, folder / "masks" / "b.jpg")


def test_inverted_mask_is_refused_naming_it(tmp_path):
    inverted = 255 - disk_mask((40, 50), (20, 20), 5)  # nucleus 0, background 255
    folder = kaggle_image(tmp_path, masks=[("a.png", disk_mask((40, 50), (10, 40), 4)), ("b.png", inverted)])
    with pytest.raises(NucleiError, match="inverted") as info:
        load_dataset(tmp_path)
    assert_names(info, folder / "masks" / "b.png")


def test_mask_of_one_nonzero_value_everywhere_is_refused(tmp_path):
    folder = kaggle_image(tmp_path, masks=[("full.png", np.full((40, 50), 255, np.uint8))])
    with pytest.raises(NucleiError, match="everywhere") as info:
        load_dataset(tmp_path)
    assert_names(info, folder / "masks" / "full.png")


def test_binary_mask_with_background_1_is_read_as_its_nucleus(tmp_path):
    disk = disk_mask((40, 50), (20, 20), 6)
    offset = np.where(disk > 0, 255, 1).astype(np.uint8)  # background 1, not 0
    folder = kaggle_image(tmp_path, masks=[("a.png", offset)])
    labels = read_masks(folder / "masks", (40, 50))
    np.testing.assert_array_equal(labels > 0, disk > 0)


def test_non_binary_mask_warns_naming_it_and_is_thresholded_at_half_its_maximum(tmp_path):
    disk = disk_mask((40, 50), (20, 20), 6)
    soft = (disk // 255 * 200).astype(np.uint8)
    soft[20, 10:13] = (40, 90, 120)  # grey levels: 40 and 90 fall below 100, 120 above
    folder = kaggle_image(tmp_path, masks=[("soft.png", soft)])
    with pytest.warns(UserWarning, match=r"soft\.png: mask is not binary"):
        labels = read_masks(folder / "masks", (40, 50))
    expected = (disk > 0)
    expected[20, 12] = True
    expected[20, 10:12] = False
    np.testing.assert_array_equal(labels > 0, expected)


# --- every image kind -------------------------------------------------------------------------

RAMP = np.tile(np.arange(0, 250, 5, dtype=np.uint8), (30, 1))  # uint8 [30, 50]


def assert_rgb_uint8(image, shape=(30, 50)):
    assert image.dtype == np.uint8 and image.shape == shape + (3,)


def test_grey_png_loads_as_three_equal_channels(tmp_path):
    image = read_image(write_png(tmp_path / "grey.png", RAMP))
    assert_rgb_uint8(image)
    for channel in range(3):
        np.testing.assert_array_equal(image[..., channel], RAMP)


def test_rgb_png_loads_unchanged(tmp_path):
    rgb = np.stack([RAMP, 255 - RAMP, np.full_like(RAMP, 7)], axis=2)
    image = read_image(write_png(tmp_path / "rgb.png", rgb))
    assert_rgb_uint8(image)
    np.testing.assert_array_equal(image, rgb)


def test_rgba_png_drops_alpha(tmp_path):
    rgb = np.stack([RAMP, 255 - RAMP, np.full_like(RAMP, 7)], axis=2)
    rgba = np.concatenate([rgb, np.full_like(RAMP, 10)[..., None]], axis=2)  # nearly transparent
    image = read_image(write_png(tmp_path / "rgba.png", rgba))
    assert_rgb_uint8(image)
    np.testing.assert_array_equal(image, rgb)


def test_palette_png_is_expanded(tmp_path):
    palette_image = Image.fromarray(RAMP % 4, mode="L").convert("P")
    colours = [(0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255)]
    palette_image.putpalette([v for c in colours for v in c] + [0] * (768 - 12))
    path = tmp_path / "palette.png"
    palette_image.save(path)
    assert Image.open(path).mode == "P"
    image = read_image(path)
    assert_rgb_uint8(image)
    np.testing.assert_array_equal(image, np.array(colours, np.uint8)[RAMP % 4])


def test_16_bit_png_is_rescaled_over_its_range_not_clipped(tmp_path):
    deep = (1000 + RAMP.astype(np.uint16) * 100).astype(np.uint16)  # 1000 .. 25500
    path = write_png(tmp_path / "deep.png", deep)
    assert Image.open(path).mode == "I;16"
    image = read_image(path)
    assert_rgb_uint8(image)
    assert image[deep == deep.min()].max() == 0
    assert image[deep == deep.max()].min() == 255
    assert len(np.unique(image[..., 0])) == len(np.unique(deep))  # not clipped to a few values


def test_16_bit_image_with_one_hot_pixel_keeps_its_contrast(tmp_path):
    deep = (1000 + RAMP.astype(np.uint16) * 100).astype(np.uint16)  # 1000 .. 25500
    deep[0, 0] = 65535  # one hot pixel
    image = read_image(write_png(tmp_path / "hot.png", deep))
    assert image[0, 0, 0] == 255
    rest = deep < 65535
    # the other pixels still span the whole range (min..max scaling put them all below 100)
    assert image[..., 0][rest].min() == 0 and image[..., 0][rest].max() >= 254
    assert image[..., 0][deep == 13000].mean() == pytest.approx(255 * 12000 / 24500, abs=1.5)


def test_16_bit_image_of_sparse_bright_nuclei_is_not_flattened(tmp_path):
    sparse = np.zeros((100, 100), np.uint16)
    sparse[50, 50] = 4000  # under 0.1% of the pixels: the percentiles coincide, min..max is used
    image = read_image(write_png(tmp_path / "sparse.png", sparse))
    assert image[50, 50, 0] == 255 and image[..., 0].sum() == 255


def test_tiff_loads(tmp_path):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, (RAMP.astype(np.uint16) * 200))
    image = read_image(path)
    assert_rgb_uint8(image)
    assert image.min() == 0 and image.max() == 255


def test_compressed_colour_tiff_loads_without_imagecodecs_in_rgb_order(tmp_path):
    # OpenCV writes LZW TIFFs, which tifffile cannot decode without imagecodecs
    import cv2

    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 0] = 200  # red
    rgb[5:10, 5:10, 2] = 90
    path = tmp_path / "lzw.tif"
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert tifffile.TiffFile(path).pages[0].compression != 1  # compressed, as the case needs
    np.testing.assert_array_equal(read_array(path), rgb)


def test_unreadable_tiff_names_the_file(tmp_path):
    path = tmp_path / "broken.tif"
    path.write_bytes(b"II*\x00" + b"\x00" * 20)
    with pytest.raises(NucleiError, match="broken.tif"):
        read_image(path)


def test_flat_folder_of_images_has_no_labels(tmp_path):
    write_png(tmp_path / "one.png", RAMP)
    tifffile.imwrite(tmp_path / "two.tif", RAMP)
    dataset = load_dataset(tmp_path)
    assert [s.image_id for s in dataset.samples] == ["one", "two"]
    for sample in dataset.samples:
        assert sample.labels is None
        assert_rgb_uint8(sample.image)


# --- bundled sample and labels layout --------------------------------------------------------

@pytest.fixture(scope="module")
def sample_dataset():
    return load_dataset(SAMPLE, require_labels=True)


def test_bundled_sample_loads_with_all_three_types(sample_dataset):
    assert len(sample_dataset.samples) == 12
    assert {s.image_type for s in sample_dataset.samples} == {"fluorescence", "brightfield", "histology"}
    for sample in sample_dataset.samples:
        assert sample.image.dtype == np.uint8 and sample.image.ndim == 3 and sample.image.shape[2] == 3
        assert sample.labels.dtype == np.int32 and sample.labels.shape == sample.image.shape[:2]
        n_masks = len(list((SAMPLE / sample.image_id / "masks").glob("*.png")))
        assert sample.labels.max() == n_masks
        np.testing.assert_array_equal(np.unique(sample.labels), np.arange(n_masks + 1))


def test_labels_layout_round_trip(tmp_path, sample_dataset):
    chosen = sample_dataset.samples[:3] + [s for s in sample_dataset.samples if s.image_type == "histology"][:1]
    save_labels_layout(chosen, tmp_path)
    back = load_dataset(tmp_path).by_id()
    assert set(back) == {s.image_id for s in chosen}
    for sample in chosen:
        np.testing.assert_array_equal(back[sample.image_id].image, sample.image)
        np.testing.assert_array_equal(back[sample.image_id].labels, sample.labels)
        assert back[sample.image_id].image_type == sample.image_type
