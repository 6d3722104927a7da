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


class CountingModel(SquareModel):
    """SquareModel that counts its calls."""

    def __init__(self):
        self.calls = 0

    def predict(self, image):
        self.calls += 1
        return super().predict(image)


@pytest.fixture
def five_images(tmp_path):
    folder = tmp_path / "five"
    folder.mkdir()
    for image_id in ("e", "a", "d", "b", "c"):
        write_png(folder / f"{image_id}.png", np.full((16, 16, 3), 40, np.uint8))
    return folder


def test_a_shard_takes_every_nth_sorted_id_and_a_sibling_shard_is_refused_its_folder(five_images, tmp_path, capsys):
    from preprocessing.errors import NucleiError

    out = tmp_path / "out"
    counts = predict_folder(SquareModel(), five_images, out, progress=False, shard=(2, 2))
    assert list(counts) == ["b", "d"] and counts.shard == (2, 2)
    assert sorted(p.stem for p in (out / "labels").iterdir()) == ["b", "d"]
    assert "shard 2/2: 2 of 5 images" in capsys.readouterr().out
    with pytest.raises(NucleiError, match="holds shard 2/2 of this same prediction"):
        predict_folder(SquareModel(), five_images, out, progress=False, shard=(1, 2))
    assert sorted(p.stem for p in (out / "labels").iterdir()) == ["b", "d"]  # untouched
    empty = predict_folder(SquareModel(), five_images, tmp_path / "empty", progress=False, shard=(6, 9))
    assert dict(empty) == {} and (tmp_path / "empty" / "submission.csv").read_text() == "ImageId,EncodedPixels\n"


def test_resume_predicts_only_what_is_not_done_and_scores_every_image(five_images, tmp_path, capsys):
    out = tmp_path / "out"
    predict_folder(SquareModel(), five_images, out, overlays=False, progress=False, settings={"model": "square"})
    whole = (out / "submission.csv").read_text()
    (out / ".records" / "c.json").unlink()
    (out / "labels" / "e.png").unlink()
    model = CountingModel()
    keep = dict.fromkeys("abcde")
    counts = predict_folder(model, five_images, out, overlays=False, progress=False, keep_labels=keep, resume=True,
                            settings={"model": "square"})
    assert model.calls == 2 and counts.skipped == ["a", "b", "d"] and counts.predicted == 2
    assert "resume: 3 of 5 images already done" in capsys.readouterr().out
    assert (out / "submission.csv").read_text() == whole
    assert all(keep[i] is not None and keep[i].sum() == 16 for i in "abcde")  # skipped ones decoded from records


def test_a_fresh_run_ignores_records_and_drops_those_of_images_it_does_not_predict(five_images, images, tmp_path):
    from preprocessing.errors import NucleiError

    out = tmp_path / "out"
    predict_folder(SquareModel(), five_images, out, progress=False)
    model = CountingModel()
    predict_folder(model, images, out, progress=False)  # not --resume: everything again
    assert model.calls == 2
    assert sorted(p.stem for p in (out / ".records").iterdir()) == ["a", "b"]
    with pytest.raises(NucleiError, match="outputs.overlays is False now but True"):
        predict_folder(SquareModel(), images, out, overlays=False, progress=False, resume=True)


def test_images_unlike_the_training_set_are_listed_and_counted(tmp_path, capsys):
    import json

    from preprocessing.domains import assign_domains, domain_reference, image_features

    rng = np.random.default_rng(0)

    def dark(k):  # training-like: a dark grey 64x64 image with one bright nucleus
        image = np.full((64, 64, 3), 10, np.uint8)
        image[20 + k % 3:30, 20 + k:30 + k] = 200
        return image + np.repeat(rng.integers(0, 5, (64, 64, 1)), 3, axis=2).astype(np.uint8)

    train = {f"t{k}": image_features(dark(k)) for k in range(8)}
    reference = domain_reference(train, assign_domains(train, n_domains=1))
    folder = tmp_path / "images"
    folder.mkdir()
    write_png(folder / "like.png", dark(3))
    write_png(folder / "huge_bright.png", np.full((64, 400, 3), 90, np.uint8))
    out = tmp_path / "out"
    run = predict_folder(SquareModel(), folder, out, overlays=False, progress=False, reference=reference)
    assert set(run.unfamiliar) == {"huge_bright"}
    assert "1 of 2 images look unlike every training acquisition" in capsys.readouterr().out
    listed = json.loads((out / "unfamiliar.json").read_text())
    assert set(listed) == {"huge_bright"} and listed["huge_bright"]["distance"] > listed["huge_bright"]["limit"]
    again = predict_folder(SquareModel(), folder, out, overlays=False, progress=False)  # no reference: no list
    assert not again.unfamiliar and not (out / "unfamiliar.json").exists()


def test_a_resumed_run_keeps_the_unfamiliar_images_it_skips(tmp_path):
    import json

    from preprocessing.domains import assign_domains, domain_reference, image_features

    dark = np.full((64, 64, 3), 10, np.uint8)
    dark[20:30, 20:30] = 200
    train = {}
    for k in range(6):
        image = dark.copy()
        image[k:k + 2, :] = 12 + k
        train[f"t{k}"] = image_features(image)
    reference = domain_reference(train, assign_domains(train, n_domains=1))
    folder = tmp_path / "images"
    folder.mkdir()
    write_png(folder / "a_bright.png", np.full((64, 400, 3), 90, np.uint8))
    write_png(folder / "b_bright.png", np.full((64, 400, 3), 95, np.uint8))
    out = tmp_path / "out"
    predict_folder(SquareModel(), folder, out, overlays=False, progress=False, reference=reference)
    (out / ".records" / "b_bright.json").unlink()  # as if killed before the second image was done
    run = predict_folder(SquareModel(), folder, out, overlays=False, progress=False, reference=reference,
                         resume=True)
    assert run.skipped == ["a_bright"]
    assert set(json.loads((out / "unfamiliar.json").read_text())) == {"a_bright", "b_bright"}
