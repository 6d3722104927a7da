"""tools.inference.folder: one run per output folder (an earlier run's outputs are removed)."""

import numpy as np
import pytest

from preprocessing.dataset import Sample, write_png
from tools.inference.folder import predict_folder, remove_stale_outputs, report_against_truth


class SquareModel:
    """predict(image) -> one square nucleus; no network."""

    def predict(self, image):
        labels = np.zeros(image.shape[:2], np.int32)
        labels[2:6, 2:6] = 1
        return labels, np.ones(1, np.float32)


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for image_id in ("a", "b"):
        write_png(folder / f"{image_id}.png", np.full((16, 16, 3), 40, np.uint8))
    return folder


def earlier_run(out, ids=("a", "old")):
    """Outputs as an earlier run over ``ids`` with --labels left them, plus a user's own files."""
    for folder in ("labels", "overlays", "contact"):
        (out / folder).mkdir(parents=True, exist_ok=True)
        for image_id in ids:
            write_png(out / folder / f"{image_id}.png", np.zeros((4, 4), np.uint8))
    for name in ("score.json", "contact_sheet.html", "contact_sheet.png"):
        (out / name).write_text("earlier")
    (out / "labels" / "notes.txt").write_text("mine")
    (out / "overlays" / "keep").mkdir()


def test_outputs_of_images_not_predicted_now_are_removed_and_counted(images, tmp_path, capsys):
    out = tmp_path / "out"
    earlier_run(out)
    counts = predict_folder(SquareModel(), images, out, progress=False)
    assert counts == {"a": 1, "b": 1}
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["a.png", "b.png", "notes.txt"]
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["a.png", "b.png", "keep"]
    # no --labels this time: the earlier score and contact sheet would describe another run
    assert not (out / "score.json").exists() and not (out / "contact_sheet.png").exists()
    assert list((out / "contact").iterdir()) == []
    said = capsys.readouterr().out
    assert "removed 7 files an earlier run left" in said
    assert "labels/ 1, overlays/ 1, score report 5" in said
    assert (out / "submission.csv").read_text().splitlines()[0] == "ImageId,EncodedPixels"


def test_a_run_that_scores_keeps_the_report_for_rewriting(images, tmp_path, capsys):
    out = tmp_path / "out"
    earlier_run(out)
    keep = {"a": None}
    predict_folder(SquareModel(), images, out, progress=False, keep_labels=keep)
    assert (out / "score.json").read_text() == "earlier"  # report_against_truth rewrites it next
    assert keep["a"] is not None and not (out / "labels" / "old.png").exists()
    assert "removed 2 files" in capsys.readouterr().out


def test_a_clean_folder_says_nothing_and_no_labels_leaves_no_label_images(images, tmp_path, capsys):
    out = tmp_path / "out"
    predict_folder(SquareModel(), images, out, progress=False)
    assert capsys.readouterr().out == ""
    predict_folder(SquareModel(), images, out, label_images=False, progress=False)
    assert list((out / "labels").glob("*.png")) == []  # the first run's labels are not this run's
    assert len(list((out / "overlays").glob("*.png"))) == 2
    assert "removed 2 files" in capsys.readouterr().out


def test_input_images_are_never_removed(tmp_path):
    labels = tmp_path / "out" / "labels"
    labels.mkdir(parents=True)
    write_png(labels / "x.png", np.zeros((4, 4), np.uint8))
    removed = remove_stale_outputs(tmp_path / "out", {"labels": set()}, keep_report=True,
                                   inputs=[labels / "x.png"])
    assert removed == [] and (labels / "x.png").exists()


def test_the_contact_sheet_keeps_no_thumbnail_of_an_earlier_run(images, tmp_path):
    out = tmp_path / "out"
    earlier_run(out)
    keep = {"a": None}
    predict_folder(SquareModel(), images, out, progress=False, keep_labels=keep)
    truth = {"a": Sample("a", np.full((16, 16, 3), 40, np.uint8), SquareModel().predict(np.zeros((16, 16, 3)))[0],
                         "fluorescence", images / "a.png")}
    result = report_against_truth(truth, keep, out)
    assert result["score"] == 1.0
    assert sorted(p.name for p in (out / "contact").iterdir()) == ["a.png"]  # not old.png
    assert (out / "score.json").read_text() != "earlier"
