"""Submission and solution CSV files: round trips, empty images, atomic writes, errors."""

import numpy as np
import pytest

from preprocessing.errors import NucleiError
from preprocessing.files import write_text_atomically
from tools.kaggle.submission import read_solution, read_submission, rles_to_labels, write_submission


def two_images():
    first = np.zeros((6, 5), np.int32)
    first[0:2, 0:2] = 1
    first[3:6, 1] = 2
    first[4, 3:5] = 7  # ids need not be consecutive
    second = np.zeros((4, 4), np.int32)  # no nuclei
    return [("img_a", first), ("img_b", second)]


def test_write_then_read_round_trip(tmp_path):
    path = tmp_path / "sub.csv"
    assert write_submission(path, two_images()) == (2, 3)
    text = path.read_text().splitlines()
    assert text[0] == "ImageId,EncodedPixels"
    # img_a (H = 6) column-major, pixel = 6 * column + row + 1: id 1 at 1,2 and 7,8;
    # id 2 at 10..12; id 7 at row 4 of columns 3 and 4: 23 and 29.
    assert text[1:4] == ["img_a,1 2 7 2", "img_a,10 3", "img_a,23 1 29 1"]
    assert text[4] == "img_b,"  # an image with no nuclei still gets a row
    submission = read_submission(path)
    assert submission == {"img_a": ["1 2 7 2", "10 3", "23 1 29 1"], "img_b": []}
    labels = rles_to_labels(submission["img_a"], (6, 5))
    first = two_images()[0][1]
    # Same nuclei, renumbered 1..N in file order.
    assert np.array_equal(labels > 0, first > 0)
    assert np.array_equal(labels[first == 7], np.full(2, 3))


def test_atomic_write_leaves_no_temp_file(tmp_path):
    path = tmp_path / "sub.csv"
    write_submission(path, two_images())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub.csv"]


def test_failed_write_keeps_old_file_and_no_temp(tmp_path):
    path = tmp_path / "sub.csv"
    path.write_text("old\n")
    with pytest.raises(NucleiError, match="given twice"):
        write_submission(path, two_images() + two_images())
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub.csv"]

    # A failure while writing the temp file (here: not text) removes it.
    with pytest.raises(TypeError):
        write_text_atomically(path, 123)
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub.csv"]


def test_write_rejects_bad_labels_and_ids(tmp_path):
    with pytest.raises(NucleiError, match="integer"):
        write_submission(tmp_path / "s.csv", [("a", np.zeros((3, 3)))])
    with pytest.raises(NucleiError, match="cannot be written"):
        write_submission(tmp_path / "s.csv", [("a,b", np.zeros((3, 3), np.int32))])


def test_overlapping_predictions_raise_naming_image_and_nuclei():
    with pytest.raises(NucleiError, match=r"sub.csv, image q: predicted nuclei 1 and 2 overlap \(2 shared"):
        rles_to_labels(["1 4", "3 3"], (3, 3), "sub.csv, image q")


def test_overlap_first_keeps_earlier_mask():
    labels = rles_to_labels(["1 4", "3 3", "2 1"], (3, 3), overlap="first")
    assert labels.ravel(order="F").tolist() == [1, 1, 1, 1, 2, 0, 0, 0, 0]  # third nucleus dropped


def test_malformed_rle_names_image_and_nucleus():
    with pytest.raises(NucleiError, match=r"sub.csv, image q: nucleus 2: RLE run 1 .* runs past"):
        rles_to_labels(["1 1", "9 2"], (3, 3), "sub.csv, image q")


def test_read_submission_errors(tmp_path):
    path = tmp_path / "s.csv"
    with pytest.raises(NucleiError, match="file not found"):
        read_submission(path)
    path.write_text("img,1 2\n")
    with pytest.raises(NucleiError, match="header is 'img,1 2'; expected 'ImageId,EncodedPixels'"):
        read_submission(path)
    path.write_text("ImageId,EncodedPixels\na,1 2\nb,1 2,extra\n")
    with pytest.raises(NucleiError, match="line 3 has 3 columns"):
        read_submission(path)
    path.write_text("")
    with pytest.raises(NucleiError, match="file is empty"):
        read_submission(path)


def test_read_solution_shapes_and_ignored_rows(tmp_path):
    path = tmp_path / "solution.csv"
    path.write_text("ImageId,EncodedPixels,Height,Width,Usage\n"
                    "a,1 2,3,4,Public\n"
                    "a,5 1,3,4,Public\n"
                    "b,,2,2,Private\n"
                    "c,1 1,5,5,Ignored\n")
    solution = read_solution(path)
    assert set(solution) == {"a", "b"}
    assert solution["a"].shape == (3, 4) and solution["a"].rles == ["1 2", "5 1"]
    shape, rles = solution["b"]
    assert shape == (2, 2) and rles == []
    path.write_text("ImageId,EncodedPixels,Height,Width\na,1 2,3,4\na,5 1,4,3\n")
    with pytest.raises(NucleiError, match="line 3: image a is 4x3 here but 3x4"):
        read_solution(path)
    path.write_text("ImageId,EncodedPixels\na,1 2\n")
    with pytest.raises(NucleiError, match="expected 'ImageId,EncodedPixels,Height,Width'"):
        read_solution(path)


# --- merging shards (tools/kaggle/merge.py) ---------------------------------------------------------

def shard_folder(root, index, count, images, finished=True, settings=None, all_ids=None):
    """A shard's --out as predict writes it: submission.csv + run.json; images: {id: [rle, ...]}."""
    import json

    from tools.kaggle.merge import ids_digest
    from tools.kaggle.submission import write_rle_submission

    folder = root / f"s{index}"
    write_rle_submission(folder / "submission.csv", sorted(images.items()))
    all_ids = all_ids or ["a", "b", "c", "d"]
    (folder / "run.json").write_text(json.dumps({
        "kind": "prediction_run", "settings": settings or {"model": "unet", "shard": f"{index}/{count}"},
        "shard": {"index": index, "count": count}, "images_total": len(all_ids),
        "all_ids_sha256": ids_digest(all_ids), "ids": sorted(images), "finished": finished,
        "shapes": {image_id: [3, 3] for image_id in images}}))
    return folder


def test_merge_keeps_the_empty_row_of_an_image_without_nuclei(tmp_path):
    from tools.kaggle.merge import merge_submissions

    first = shard_folder(tmp_path, 1, 2, {"a": ["1 2"], "c": []})
    second = shard_folder(tmp_path, 2, 2, {"b": ["1 1", "5 2"], "d": []})
    report = merge_submissions(tmp_path / "m.csv", [second, first])
    assert (report.images, report.nuclei, report.shards, report.manifests) == (4, 3, 2, True)
    assert (tmp_path / "m.csv").read_text().splitlines() == ["ImageId,EncodedPixels", "a,1 2", "b,1 1", "b,5 2",
                                                             "c,", "d,"]


@pytest.mark.parametrize("case, message", [
    ("unfinished", "shard 2/2 has not finished"),
    ("settings", "params.tta is 2 here but 1"),
    ("image set", "split another image set"),
    ("twice", "shard 1/2 is given twice"),
    ("bare", "has no run.json beside it"),
    ("csv lacks", "image d of shard 2/2 has no row"),
    ("outside", "runs past the last pixel 9"),
])
def test_merge_refuses_shards_that_do_not_make_one_submission(tmp_path, case, message):
    from tools.kaggle.merge import merge_submissions

    settings = {"model": "unet", "params": {"tta": 1}}
    first = shard_folder(tmp_path, 1, 2, {"a": ["1 2"], "c": []}, settings=settings)
    options = {"finished": case != "unfinished",
               "settings": {**settings, "params": {"tta": 2 if case == "settings" else 1}},
               "all_ids": ["a", "b", "c", "e"] if case == "image set" else None}
    second = shard_folder(tmp_path, 2, 2, {"b": ["1 1" if case != "outside" else "9 2"], "d": []}, **options)
    sources = {"twice": [first, first], "bare": [first, second / "submission.csv"]}.get(case, [first, second])
    if case == "bare":
        (second / "submission.csv").rename(second / "s2.csv")
        sources = [first, second / "s2.csv"]
    if case == "csv lacks":
        (second / "submission.csv").write_text("ImageId,EncodedPixels\nb,1 1\n")
    with pytest.raises(NucleiError, match=message):
        merge_submissions(tmp_path / "m.csv", sources)
    assert not (tmp_path / "m.csv").exists()


def test_write_rle_submission_rejects_what_is_not_an_rle(tmp_path):
    from tools.kaggle.submission import write_rle_submission

    for bad in ("", "1 2,3", "1 2\n3 4", "x"):
        with pytest.raises(NucleiError, match="not an RLE string"):
            write_rle_submission(tmp_path / "s.csv", [("a", [bad])])
    assert not (tmp_path / "s.csv").exists()
