"""InferenceParams: one object for every inference choice, validated, one JSON format (and the old one read)."""

import json
from pathlib import Path

import numpy as np
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


def test_unfamiliar_params_round_trip_and_take_the_command_line_choices(tmp_path):
    params = InferenceParams(postprocess={"min_score": 0.8}, unfamiliar={"tta": 8, "postprocess": {"min_score": 0.6}})
    assert isinstance(params.unfamiliar, InferenceParams) and params.for_unfamiliar_images().tta == 8
    save_params(params, tmp_path / "p.json")
    again = load_params(tmp_path / "p.json")
    assert again == params and again.unfamiliar.postprocess.min_score == 0.6
    changed = again.with_overrides(tta=2, postprocess={"dilate": 1}, max_memory=1000)
    for chosen in (changed, changed.unfamiliar):  # a command-line choice holds for every image
        assert (chosen.tta, chosen.postprocess.dilate, chosen.max_memory_mb) == (2, 1, 1000)
    assert (changed.postprocess.min_score, changed.unfamiliar.postprocess.min_score) == (0.8, 0.6)
    assert InferenceParams(tta=3).for_unfamiliar_images().tta == 3  # none: the same choices
    with pytest.raises(NucleiError, match="of their own"):
        InferenceParams(unfamiliar={"unfamiliar": {}})


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
    ({"unfamiliar": {"postprocess": {"min_score": 2}}}, "unfamiliar params: post-processing min_score"),
    ({"unfamiliar": 8}, "unfamiliar"),
])
def test_bad_values_name_the_file_and_the_field(tmp_path, document, word):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document))
    with pytest.raises(NucleiError, match=word) as error:
        load_params(path)
    assert str(path) in str(error.value)


def test_mask_threshold_reaches_the_mask_rcnn_alone_and_names_are_checked():
    from tools.inference.models import build_pipeline

    shipped = build_pipeline("mrcnn")  # weights/mrcnn.params.json: mask_threshold 0.6 (bench/mask_paste.py)
    assert shipped.instance.predictor.config.MASK_THRESHOLD == 0.6
    plain = build_pipeline("mrcnn", use_shipped_params=False)
    assert plain.instance.predictor.config.MASK_THRESHOLD == 0.5
    ensemble = build_pipeline("ensemble", params=InferenceParams(thresholds={"mask_threshold": 0.7,
                                                                             "watershed_surface": "distance"}))
    assert ensemble.instance.predictor.config.MASK_THRESHOLD == 0.5  # the ensemble keeps the config's
    probabilities = np.zeros((8, 8, 3), np.float32)
    probabilities[..., 2] = 1
    labels, _ = ensemble.dense.decode(probabilities, ensemble.params.thresholds)  # mask_threshold not passed on
    assert labels.max() == 0
    with pytest.raises(NucleiError, match="watershed_surface must be a name"):
        InferenceParams(thresholds={"watershed_surface": 1})
    with pytest.raises(NucleiError, match="mask_threshold must be in"):
        InferenceParams(thresholds={"mask_threshold": 1.5})
