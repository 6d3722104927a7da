"""python -m tools.train mrcnn: a two-step tiny run writes a resumable run folder."""

import json
from pathlib import Path

import pytest

from tools.train import main

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "stage1_train"


def tiny_argv(data, out):
    return ["mrcnn", "--data", str(data), "--out", str(out), "--config", "tiny", "--epochs", "1",
            "--steps-per-epoch", "2", "--validation-steps", "1", "--crop-size", "64",
            "--val-fraction", "0.25", "--no-val-score"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, small_sample_root):
    """A one-epoch tiny Mask R-CNN run folder (trained once for the tests below)."""
    out = tmp_path_factory.mktemp("mrcnn") / "run"
    assert main(tiny_argv(small_sample_root, out)) == 0
    return out


def test_tiny_run_writes_checkpoints_and_resumes(small_sample_root, tiny_run):
    out = tiny_run
    argv = tiny_argv(small_sample_root, out)
    for name in ("config.json", "split.json", "options.json", "best.weights.h5", "last.weights.h5", "state.json",
                 "log.csv", "model.weights.h5", "model.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "state.json").read_text())["epoch"] == 1
    # the second stage trains in bfloat16 from the float32 checkpoint (same weight files)
    assert main(argv[:-1] + ["--resume", "--epochs", "2", "--no-val-score", "--precision", "bfloat16"]) == 0
    assert json.loads((out / "state.json").read_text())["epoch"] == 2
    losses = [float(row.split(",")[1]) for row in (out / "log.csv").read_text().splitlines()[1:]]
    assert len(losses) == 2 and all(loss == loss and loss < 1e3 for loss in losses), losses
    assert main(argv) == 2  # the folder already holds a run and --resume is missing


def config_of(argv, run_dir):
    from tools.train import build_parser, mrcnn_task

    return mrcnn_task(build_parser().parse_args(["mrcnn"] + argv), run_dir).config


def test_backbone_weights_flag_sets_config_and_imagenet_input(tmp_path):
    base = ["--data", str(SAMPLE), "--out", str(tmp_path), "--backbone", "mobilenetv2", "--alpha", "1.0"]
    config = config_of(base + ["--backbone-weights", "w.h5"], tmp_path)
    assert config.BACKBONE_WEIGHTS == "w.h5" and config.NORMALIZE == "imagenet"
    config = config_of(base + ["--backbone-weights", "w.h5", "--normalize", "standardize"], tmp_path)
    assert config.NORMALIZE == "standardize"
    assert config_of(base, tmp_path).BACKBONE_WEIGHTS is None


def test_resume_takes_a_new_learning_rate_and_refuses_a_new_architecture(tmp_path):
    import pytest

    from preprocessing.errors import NucleiError

    base = ["--data", str(SAMPLE), "--out", str(tmp_path), "--config", "tiny"]
    config_of(base + ["--crop-size", "64"], tmp_path).save(tmp_path / "config.json")
    config = config_of(base + ["--resume", "--learning-rate", "0.0002"], tmp_path)
    assert config.IMAGE_CROP_SIZE == 64 and config.LEARNING_RATE == 0.0002
    with pytest.raises(NucleiError, match="IMAGE_CROP_SIZE"):
        config_of(base + ["--resume", "--crop-size", "128"], tmp_path)


def test_cascade_starts_from_a_single_stage_run(tmp_path, small_sample_root, tiny_run, capsys):
    first = tiny_run  # a single-stage run (resumed to epoch 2 if the test above ran first)
    common = ["--data", str(small_sample_root), "--epochs", "1", "--steps-per-epoch", "2", "--validation-steps", "1",
              "--crop-size", "64", "--val-fraction", "0.25", "--no-val-score"]
    cascade = tmp_path / "cascade"
    assert main(["mrcnn", "--out", str(cascade), "--config", str(first / "model.json"), "--cascade", "3",
                 "--cascade-from", str(first / "model.weights.h5"), *common]) == 0
    assert "cascade from" in capsys.readouterr().out
    saved = json.loads((cascade / "model.json").read_text())
    assert saved["config"]["CASCADE_STAGES"] == 3
