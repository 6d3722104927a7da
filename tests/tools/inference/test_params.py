"""InferenceParams: one object for every inference choice, validated, one JSON format (and the old one read)."""

import json
from pathlib import Path

import pytest

from preprocessing.errors import NucleiError
from tools.inference.params import InferenceParams, load_params, save_params

WEIGHTS = Path(__file__).resolve().parents[3] / "weights"


def test_round_trip_and_overrides(tmp_path):
    params = InferenceParams(tta=8, thresholds={"seed_threshold": 0.9}, postprocess={"closing": 2})
    save_params(params, tmp_path / "p.json", {"score": 0.5})
    document = json.loads((tmp_path / "p.json").read_text())
    assert document["kind"] == "inference_params" and document["tuning"] == {"score": 0.5}
    again = load_params(tmp_path / "p.json")
    assert again == params and again.postprocess.closing == 2
    changed = again.with_overrides(tta=1, postprocess={"dilate": 1, "min_size": None})
    assert changed.tta == 1 and changed.postprocess.dilate == 1 and changed.postprocess.closing == 2


def test_files_written_before_the_one_format_still_load(tmp_path):
    old = {"thresholds": {"foreground_threshold": 0.7}, "ensemble": {}, "postprocess": {"closing": 2},
           "tta": 1, "score": 0.51, "note": "tuned"}
    (tmp_path / "old.json").write_text(json.dumps(old))
    params = load_params(tmp_path / "old.json")
    assert params.thresholds == {"foreground_threshold": 0.7} and params.postprocess.closing == 2
    for path in sorted(WEIGHTS.glob("*.params.json")):  # every shipped file reads
        assert isinstance(load_params(path), InferenceParams)


@pytest.mark.parametrize("document, word", [
    ({"tta": "x"}, "tta"),
    ({"tta": 16}, "tta"),
    ({"thresholds": {"seed": 0.5}}, "seed"),
    ({"postprocess": {"dilation": 1}}, "dilation"),
    ({"ensemble": {"mrcnn_weight": 2}}, "mrcnn_weight"),
    ({"merge": {"cluster_iou": 0}}, "cluster_iou"),
])
def test_bad_values_name_the_file_and_the_field(tmp_path, document, word):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document))
    with pytest.raises(NucleiError, match=word) as error:
        load_params(path)
    assert str(path) in str(error.value)
