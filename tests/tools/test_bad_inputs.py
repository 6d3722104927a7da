"""A corpus of broken inputs through the commands' main(argv): exit 2 with one stderr line naming
the file, or a correct result. Nothing may end in a traceback or a silently wrong output.

Every case builds its inputs in tmp_path (images, masks, CSVs, parameter and weights files,
output paths) and runs tools.predict / tools.evaluate / tools.train / tools.tune in-process with a
tiny untrained U-Net, so the whole module runs in well under a minute.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

SHAPE = (40, 48)


# --- builders ---------------------------------------------------------------------------------

def _grey(shape=SHAPE, seed=0):
    rng = np.random.default_rng(seed)
    image = np.full(shape, 20, np.uint8)
    for _ in range(4):
        y, x = rng.integers(4, shape[0] - 10), rng.integers(4, shape[1] - 10)
        image[y:y + 6, x:x + 6] = 200
    return image


def _disk(shape, centre, radius, value=255):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return np.where((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius ** 2, value, 0).astype(np.uint8)


def _kaggle(root: Path, image_id="img", masks=None, image=None) -> Path:
    """<root>/<id>/images/<id>.png and masks/*.png (two good disks unless ``masks`` is given)."""
    folder = root / image_id
    (folder / "images").mkdir(parents=True)
    Image.fromarray(_grey() if image is None else image).save(folder / "images" / f"{image_id}.png")
    (folder / "masks").mkdir()
    masks = masks if masks is not None else {"a.png": _disk(SHAPE, (12, 12), 5), "b.png": _disk(SHAPE, (28, 34), 6)}
    for name, mask in masks.items():
        path = folder / "masks" / name
        if isinstance(mask, bytes):
            path.write_bytes(mask)
        else:
            Image.fromarray(mask).save(path)
    return folder


def _png_bytes(array) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny untrained U-Net (weights + JSON) and a folder of two good flat images."""
    from unet.config import UNetConfig
    from unet.model import build_unet

    folder = tmp_path_factory.mktemp("tiny")
    config = UNetConfig(depth=2, base_filters=4, max_filters=8, bottleneck_dilations=(1,), crop_size=32)
    build_unet(config).save_weights(folder / "tiny.weights.h5")
    config.save(folder / "tiny.json")
    images = folder / "images"
    images.mkdir()
    for k in range(2):
        Image.fromarray(_grey(seed=k)).save(images / f"good{k}.png")
    return {"weights": folder / "tiny.weights.h5", "images": images, "folder": folder}


def _run(main, argv, capsys):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _assert_one_line_naming(code, err, name):
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert name in lines[0], (name, lines[0])


def _predict(tiny, images, out, *extra):
    return ["--weights", tiny["weights"], "--images", images, "--out", out, "--no-params", *extra]


# --- images given to predict --------------------------------------------------------------------

def _truncated_png(path: Path):
    data = _png_bytes(_grey())
    path.write_bytes(data[: len(data) // 2])


BROKEN_IMAGES = {
    "truncated.png": _truncated_png,
    "empty.png": lambda p: p.write_bytes(b""),
    "text.png": lambda p: p.write_text("not an image\n"),
    "html.jpg": lambda p: p.write_text("<html></html>"),
    "nan.tif": lambda p: tifffile.imwrite(p, np.full(SHAPE, np.nan, np.float32)),
    "five_channels.tif": lambda p: tifffile.imwrite(p, np.zeros(SHAPE + (5,), np.uint8)),
    "four_dims.tif": lambda p: tifffile.imwrite(p, np.zeros((2, 3) + SHAPE, np.uint8)),
    "complex.tif": lambda p: tifffile.imwrite(p, np.zeros(SHAPE, np.complex64)),
}


@pytest.mark.parametrize("name", sorted(BROKEN_IMAGES))
def test_predict_on_a_broken_image_names_it_and_writes_no_submission(tiny, tmp_path, capsys, name):
    from tools.predict import main

    images = tmp_path / "images"
    shutil.copytree(tiny["images"], images)
    BROKEN_IMAGES[name](images / name)
    out = tmp_path / "out"
    code, _, err = _run(main, _predict(tiny, images, out), capsys)
    _assert_one_line_naming(code, err, name)
    assert not (out / "submission.csv").exists()  # never a submission missing an image


ODD_IMAGES = {
    "grey16.png": lambda p: Image.fromarray((_grey().astype(np.uint16) * 250)).save(p),
    "hot16.png": lambda p: Image.fromarray(np.where(np.arange(SHAPE[0] * SHAPE[1]).reshape(SHAPE) == 0, 65535,
                                                    _grey().astype(np.uint16) * 10).astype(np.uint16)).save(p),
    "palette.png": lambda p: Image.fromarray(_grey()).convert("P").save(p),
    "grey_alpha.png": lambda p: Image.fromarray(_grey()).convert("LA").save(p),
    "one_bit.png": lambda p: Image.fromarray(_grey() > 100).save(p),
    "rgba.png": lambda p: Image.fromarray(np.dstack([_grey()] * 3 + [np.full(SHAPE, 255, np.uint8)])).save(p),
    "cmyk.jpg": lambda p: Image.fromarray(np.dstack([_grey()] * 3)).convert("CMYK").save(p),
    "grey.jpg": lambda p: Image.fromarray(_grey()).save(p, quality=95),
    "float.tif": lambda p: tifffile.imwrite(p, _grey().astype(np.float32) / 255),
    "channels_first.tif": lambda p: tifffile.imwrite(p, np.stack([_grey()] * 3)),
    "flat.bmp": lambda p: Image.fromarray(np.full(SHAPE, 7, np.uint8)).save(p),
}


def test_predict_reads_every_odd_image_mode_and_writes_a_complete_submission(tiny, tmp_path, capsys):
    from tools.kaggle.rle import decode
    from tools.predict import main

    images = tmp_path / "images"
    images.mkdir()
    for name, write in ODD_IMAGES.items():
        write(images / name)
    out = tmp_path / "out"
    code, stdout, err = _run(main, _predict(tiny, images, out), capsys)
    assert code == 0, err
    assert f"{len(ODD_IMAGES)} images" in stdout
    labels = {p.stem: np.array(Image.open(p)) for p in (out / "labels").iterdir()}
    assert sorted(labels) == sorted(Path(n).stem for n in ODD_IMAGES)
    assert all(a.shape == SHAPE for a in labels.values())
    rows = (out / "submission.csv").read_text().splitlines()
    assert rows[0] == "ImageId,EncodedPixels"
    listed = {row.split(",")[0] for row in rows[1:]}
    assert listed == set(labels)  # every image has a row (an empty one when nothing was found)
    for row in rows[1:]:
        image_id, rle = row.split(",")
        if rle:
            assert decode(rle, SHAPE).sum() > 0


def test_predict_on_an_empty_folder_names_it(tiny, tmp_path, capsys):
    from tools.predict import main

    (tmp_path / "none").mkdir()
    code, _, err = _run(main, _predict(tiny, tmp_path / "none", tmp_path / "out"), capsys)
    _assert_one_line_naming(code, err, "none")


def test_predict_on_a_kaggle_folder_without_images_folder_names_it(tiny, tmp_path, capsys):
    from tools.predict import main

    (tmp_path / "data" / "abc" / "masks").mkdir(parents=True)
    code, _, err = _run(main, _predict(tiny, tmp_path / "data", tmp_path / "out"), capsys)
    _assert_one_line_naming(code, err, "abc")


# --- output paths ---------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["out_is_file", "out_under_a_file", "out_is_dev_null", "out_labels_is_a_file"])
def test_predict_to_an_odd_output_path_names_it(tiny, tmp_path, capsys, case):
    from tools.predict import main

    (tmp_path / "file.txt").write_text("x")
    if case == "out_is_file":
        out, named = tmp_path / "file.txt", "file.txt"
    elif case == "out_under_a_file":
        out, named = tmp_path / "file.txt" / "sub", "file.txt"
    elif case == "out_is_dev_null":
        out, named = Path("/dev/null"), "/dev/null"
    else:  # a file where the labels/ folder goes (named as the output folder for now)
        out, named = tmp_path / "out", "out"
        out.mkdir()
        (out / "labels").write_text("a file where the labels folder goes")
    code, _, err = _run(main, _predict(tiny, tiny["images"], out), capsys)
    _assert_one_line_naming(code, err, named)


# --- parameter and weights files --------------------------------------------------------------------

PARAMS = {
    "broken.json": '{"kind": "inference_params", "config": {',
    "empty.json": "",
    "list.json": "[1, 2]",
    "wrong_kind.json": json.dumps({"kind": "unet", "config": {}}),
    "bad_tta.json": json.dumps({"kind": "inference_params", "config": {"tta": 99}}),
    "bad_memory.json": json.dumps({"kind": "inference_params", "config": {"max_memory_mb": "lots"}}),
    "unknown_field.json": json.dumps({"kind": "inference_params", "config": {"speed": 3}}),
    "binary.json": b"\xff\xfe\x00garbage",
}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_predict_with_a_broken_params_file_names_it(tiny, tmp_path, capsys, name):
    from tools.predict import main

    path = tmp_path / name
    content = PARAMS[name]
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    argv = ["--weights", tiny["weights"], "--images", tiny["images"], "--out", tmp_path / "out", "--params", path]
    code, _, err = _run(main, argv, capsys)
    _assert_one_line_naming(code, err, name)


def _weights_case(tiny, tmp_path, case):
    """A weights file broken in one way; returns its path."""
    target = tmp_path / "w.weights.h5"
    config = (tiny["folder"] / "tiny.json").read_text()
    if case == "missing":
        return target
    if case == "folder":
        target.mkdir()
        return target
    if case == "truncated":
        data = tiny["weights"].read_bytes()
        target.write_bytes(data[: len(data) // 3])
    elif case == "text":
        target.write_text("not HDF5")
    elif case == "empty":
        target.write_bytes(b"")
    else:
        shutil.copy(tiny["weights"], target)
    if case == "no_json":
        return target
    if case == "broken_json":
        config = "{"
    elif case == "other_architecture":
        document = json.loads(config)
        document["config"]["depth"] = 3
        config = json.dumps(document)
    elif case == "json_of_unknown_kind":
        config = json.dumps({"kind": "resnet", "config": {}})
    (tmp_path / "w.json").write_text(config)
    return target


@pytest.mark.parametrize("case", ["missing", "folder", "truncated", "text", "empty", "no_json", "broken_json",
                                  "other_architecture", "json_of_unknown_kind"])
def test_predict_with_broken_weights_names_the_file(tiny, tmp_path, capsys, case):
    from tools.predict import main

    weights = _weights_case(tiny, tmp_path, case)
    argv = ["--weights", weights, "--images", tiny["images"], "--out", tmp_path / "out", "--no-params"]
    code, _, err = _run(main, argv, capsys)
    _assert_one_line_naming(code, err, "w.json" if case in ("broken_json", "json_of_unknown_kind") else "w.")


# --- masks: predict --labels, evaluate --labels, train ----------------------------------------------

BAD_MASKS = {
    "jpeg": ("b.jpg", lambda: None, "JPEG"),
    "inverted": ("b.png", lambda: 255 - _disk(SHAPE, (28, 34), 6), "inverted"),
    "all_ones": ("b.png", lambda: np.full(SHAPE, 255, np.uint8), "everywhere"),
    "wrong_size": ("b.png", lambda: _disk((SHAPE[0], SHAPE[1] + 1), (28, 34), 6), "its image is"),
    "truncated": ("b.png", lambda: _png_bytes(_disk(SHAPE, (28, 34), 6))[:40], "not a readable image"),
    "empty_file": ("b.png", lambda: b"", "not a readable image"),
}


def _bad_mask_data(root: Path, case: str) -> Path:
    name, make, _ = BAD_MASKS[case]
    masks = {"a.png": _disk(SHAPE, (12, 12), 5)}
    folder = _kaggle(root, masks=masks)
    if case == "jpeg":
        Image.fromarray(_disk(SHAPE, (28, 34), 6)).save(folder / "masks" / name, quality=90)
    else:
        value = make()
        path = folder / "masks" / name
        path.write_bytes(value) if isinstance(value, bytes) else Image.fromarray(value).save(path)
    return folder / "masks" / name


@pytest.mark.parametrize("case", sorted(BAD_MASKS))
@pytest.mark.parametrize("command", ["predict", "evaluate", "train"])
def test_a_bad_mask_is_named_by_every_command(tiny, tmp_path, capsys, case, command):
    mask = _bad_mask_data(tmp_path / "data", case)
    if command == "predict":
        from tools.predict import main

        argv = _predict(tiny, tmp_path / "data", tmp_path / "out", "--labels", tmp_path / "data")
    elif command == "evaluate":
        from tools.evaluate import main

        submission = tmp_path / "sub.csv"
        submission.write_text("ImageId,EncodedPixels\nimg,1 3\n")
        argv = [submission, "--labels", tmp_path / "data"]
    else:
        from tools.train import main

        argv = ["unet", "--data", tmp_path / "data", "--out", tmp_path / "run", "--epochs", "1"]
    code, _, err = _run(main, argv, capsys)
    _assert_one_line_naming(code, err, mask.name)
    assert BAD_MASKS[case][2] in err


def test_non_binary_and_offset_masks_give_a_correct_score_with_a_warning(tiny, tmp_path, capsys):
    """A mask with grey edges is thresholded at half its maximum (a warning names it); a mask with
    background 1 is read as its nucleus: the truth scored against itself is exactly 1."""
    from tools.evaluate import main
    from tools.kaggle.rle import labels_to_rles

    soft = _disk(SHAPE, (12, 12), 5, 200)
    soft[12, 4:7] = (60, 90, 150)  # grey levels outside the disk: 150 > 100 joins it, the others do not
    offset = np.where(_disk(SHAPE, (28, 34), 6) > 0, 255, 1).astype(np.uint8)
    _kaggle(tmp_path / "data", masks={"a.png": soft, "b.png": offset})
    truth = np.zeros(SHAPE, np.int32)
    truth[(soft > 100)] = 1
    truth[offset == 255] = 2
    submission = tmp_path / "sub.csv"
    submission.write_text("ImageId,EncodedPixels\n" + "".join(f"img,{r}\n" for r in labels_to_rles(truth)))
    with pytest.warns(UserWarning, match=r"a\.png: mask is not binary"):
        code, stdout, err = _run(main, [submission, "--labels", tmp_path / "data"], capsys)
    assert code == 0, err
    assert "score: 1.0000" in stdout


# --- submission CSVs for evaluate ---------------------------------------------------------------------

CSVS = {
    "empty.csv": b"",
    "garbage.csv": b"\x89PNG\r\n\x1a\n\x00\x00binary",
    "bad_header.csv": b"Id,Pixels\nimg,1 3\n",
    "odd_rle.csv": b"ImageId,EncodedPixels\nimg,1 3 5\n",
    "past_the_end.csv": b"ImageId,EncodedPixels\nimg,1900 50\n",
    "letters.csv": b"ImageId,EncodedPixels\nimg,one three\n",
    "unknown_id.csv": b"ImageId,EncodedPixels\nnot_an_image,1 3\n",
}


@pytest.mark.parametrize("name", sorted(CSVS))
def test_evaluate_on_a_broken_submission_names_it(tmp_path, capsys, name):
    from tools.evaluate import main

    _kaggle(tmp_path / "data")
    path = tmp_path / name
    path.write_bytes(CSVS[name])
    code, _, err = _run(main, [path, "--labels", tmp_path / "data"], capsys)
    _assert_one_line_naming(code, err, name)


def test_evaluate_on_a_missing_submission_and_to_a_folder_json_names_them(tmp_path, capsys):
    from tools.evaluate import main

    _kaggle(tmp_path / "data")
    code, _, err = _run(main, [tmp_path / "missing.csv", "--labels", tmp_path / "data"], capsys)
    _assert_one_line_naming(code, err, "missing.csv")
    good = tmp_path / "good.csv"
    good.write_text("ImageId,EncodedPixels\nimg,1 3\n")
    (tmp_path / "out.json").mkdir()
    code, _, err = _run(main, [good, "--labels", tmp_path / "data", "--json", tmp_path / "out.json"], capsys)
    _assert_one_line_naming(code, err, "out.json")


# --- training and tuning inputs ------------------------------------------------------------------------

def test_train_on_a_truncated_image_names_it(tmp_path, capsys):
    from tools.train import main

    folder = _kaggle(tmp_path / "data")
    image = folder / "images" / "img.png"
    image.write_bytes(image.read_bytes()[:60])
    code, _, err = _run(main, ["unet", "--data", tmp_path / "data", "--out", tmp_path / "run"], capsys)
    _assert_one_line_naming(code, err, "img.png")


@pytest.mark.parametrize("content, word", [("{", "not valid JSON"), ('{"kind": "mrcnn", "config": {}}', "kind"),
                                           ('{"kind": "unet", "config": {"depth": "deep"}}', "depth"),
                                           ('{"kind": "unet", "config": {"layers": 3}}', "layers")])
def test_train_with_a_broken_config_names_it(tmp_path, capsys, content, word):
    from tools.train import main

    _kaggle(tmp_path / "data")
    config = tmp_path / "my_config.json"
    config.write_text(content)
    code, _, err = _run(main, ["unet", "--data", tmp_path / "data", "--out", tmp_path / "run",
                               "--config", config], capsys)
    _assert_one_line_naming(code, err, "my_config.json")
    assert word in err
    assert not (tmp_path / "run").exists()  # nothing written for a run that cannot start


def test_tune_on_bad_inputs_names_them(tiny, tmp_path, capsys):
    from tools.tune import main

    folder = _kaggle(tmp_path / "data")
    Image.fromarray(_grey()).save(folder / "masks" / "c.jpg")
    base = ["--data", tmp_path / "data", "--val-fraction", "0.5", "--domains", "none", "--out", tmp_path / "p.json"]
    code, _, err = _run(main, ["--weights", tiny["weights"], *base], capsys)
    _assert_one_line_naming(code, err, "c.jpg")
    code, _, err = _run(main, ["--weights", tmp_path / "missing.weights.h5", *base], capsys)
    _assert_one_line_naming(code, err, "missing.weights.h5")
    assert not (tmp_path / "p.json").exists()
