"""End-to-end: the U-Net training CLI on the bundled sample with a tiny network."""

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT

TINY = ["--base-filters", "4", "--max-filters", "8", "--depth", "2", "--crop-size", "32", "--batch-size", "2",
        "--steps-per-epoch", "2", "--val-fraction", "0.25", "--augment", "light"]


def run_cli(data, *args):
    """``python -m tools.train unet`` in a subprocess: the command exactly as a user runs it."""
    return subprocess.run([sys.executable, "-m", "tools.train", "unet", "--data", str(data), *TINY, *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run_train(capsys):
    """``tools.train.main(["unet", ...])`` in this process, with what it printed: the same code path as
    the command (:func:`run_cli`, used once below) without a TensorFlow start-up per call."""
    from tools.train import main

    def run(data, *args) -> Ran:
        capsys.readouterr()
        try:
            code = main(["unet", "--data", str(data), *TINY, *args])
        except SystemExit as exit:  # argparse's own usage errors
            code = exit.code
        printed = capsys.readouterr()
        return Ran(code, printed.out, printed.err)

    return run


def test_train_then_resume_then_predict(tmp_path, small_sample_root):
    run = tmp_path / "run"
    first = run_cli(small_sample_root, "--out", str(run), "--epochs", "1", "--no-val-score")
    assert first.returncode == 0, first.stderr[-2000:]
    assert json.loads((run / "state.json").read_text())["epoch"] == 1
    for name in ("config.json", "last.weights.h5", "model.weights.h5", "model.json", "log.csv"):
        assert (run / name).is_file(), name

    again = run_cli(small_sample_root, "--out", str(run), "--epochs", "2")
    assert again.returncode == 2 and "--resume" in again.stderr  # never overwrites a run silently

    resumed = run_cli(small_sample_root, "--out", str(run), "--epochs", "2", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stdout and "validation DSB score" in resumed.stdout
    assert json.loads((run / "state.json").read_text())["epoch"] == 2
    assert len((run / "log.csv").read_text().strip().splitlines()) == 3
    score = json.loads((run / "val_score.json").read_text())
    assert 0.0 <= score["score"] <= 1.0 and len(score["per_image"]) == 2  # one per type

    from preprocessing.dataset import load_dataset
    from tools.inference import load_model

    model = load_model(run / "model.weights.h5")  # told a U-Net by its model.json
    image = load_dataset(small_sample_root).samples[0].image
    labels, scores = model.predict(image)
    assert labels.shape == image.shape[:2] and len(scores) == labels.max()
    split = json.loads((run / "split.json").read_text())
    assert sorted(split["val"]) == sorted(row["id"] for row in score["per_image"])


def test_resume_refuses_a_new_architecture_and_epochs_zero_is_one_line(tmp_path, small_sample_root, run_train):
    run = tmp_path / "run"
    assert run_train(small_sample_root, "--out", str(run), "--epochs", "1", "--no-val-score").returncode == 0
    changed = run_train(small_sample_root, "--out", str(run), "--epochs", "2", "--resume", "--depth", "3")
    assert changed.returncode == 2 and "depth" in changed.stderr and "Traceback" not in changed.stderr
    zero = run_train(small_sample_root, "--out", str(tmp_path / "other"), "--epochs", "0")
    assert zero.returncode == 2 and "--epochs" in zero.stderr and "Traceback" not in zero.stderr
    (tmp_path / "file").write_text("x")
    on_file = run_train(small_sample_root, "--out", str(tmp_path / "file"), "--epochs", "1")
    assert on_file.returncode == 2 and "is a file" in on_file.stderr and "Traceback" not in on_file.stderr


def test_bad_data_folder_is_a_clear_error(tmp_path, run_train):
    (tmp_path / "abc").mkdir()
    result = run_train(tmp_path, "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "abc" in result.stderr and "images/" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("devices", [2])
def test_one_step_under_mirrored_strategy_on_two_logical_cpus(tmp_path, small_sample_root, devices):
    script = f"""
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * {devices})
import sys
from tools.train import main
sys.exit(main(["unet", "--data", {str(small_sample_root)!r}, "--out", {str(tmp_path / 'run')!r}, "--multi-gpu",
               "--epochs", "1", "--no-val-score", *{TINY!r}]))
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "run" / "state.json").read_text())["epoch"] == 1
    # --batch-size is per replica: the global batch and the learning rate follow the devices
    scaled = f"{devices} replicas x 2 = global batch {2 * devices}; learning rate 0.001 -> {0.001 * devices:g}"
    assert scaled in result.stdout


def test_domain_holdout_and_warm_start(tmp_path, small_sample_root, run_train):
    first = tmp_path / "first"
    assert run_train(small_sample_root, "--out", str(first), "--epochs", "1", "--no-val-score").returncode == 0
    run = tmp_path / "held"
    held = run_train(small_sample_root, "--out", str(run), "--epochs", "1", "--no-val-score",
                     "--holdout-domains", "auto", "--warm-start", str(first / "model.weights.h5"),
                     "--config", str(first / "model.json"))
    assert held.returncode == 0, held.stderr[-2000:]
    assert "warm start from" in held.stdout and "domain hold-out: validating on" in held.stdout
    split = json.loads((run / "split.json").read_text())
    about = split.get("about", split)
    assert about["rule"] == "preprocessing.domains.domain_holdout_split"
    assert split["val"] and split["train"] and set(about["domains"]) == set(split["val"])
    assert set(about["domains"].values()) <= set(about["holdout"])

    distance = run_train(small_sample_root, "--out", str(tmp_path / "d"), "--epochs", "1", "--no-val-score",
                         "--distance-head", "--warm-start", str(first / "model.weights.h5"),
                         "--config", str(first / "model.json"))
    assert distance.returncode == 0, distance.stderr[-2000:]
    assert "has no distance head; the head starts fresh" in distance.stdout
    from unet.predictor import UNetPredictor

    maps = UNetPredictor.from_path(tmp_path / "d" / "model.weights.h5").predict_batch(np.zeros((1, 32, 32, 3), np.float32))
    assert maps.shape == (1, 32, 32, 4)

    missing = run_train(small_sample_root, "--out", str(tmp_path / "m"), "--epochs", "1",
                        "--warm-start", str(tmp_path / "nope.weights.h5"))
    assert missing.returncode == 2 and "nope.weights.h5" in missing.stderr and "Traceback" not in missing.stderr
    other = run_train(small_sample_root, "--out", str(tmp_path / "o"), "--epochs", "1", "--depth", "3",
                      "--warm-start", str(first / "model.weights.h5"))
    assert other.returncode == 2 and "does not fit" in other.stderr and "Traceback" not in other.stderr


def test_split_file_gives_the_same_train_and_validation_ids(tmp_path, small_sample_root, run_train):
    ids = sorted(p.name for p in small_sample_root.iterdir())
    given = tmp_path / "given.json"
    given.write_text(json.dumps({"train": ids[1:] + ["not-in-data"], "val": ids[:1]}))
    run = tmp_path / "run"
    done = run_train(small_sample_root, "--out", str(run), "--epochs", "1", "--no-val-score", "--split", str(given))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "1 listed ids are not in --data" in done.stdout
    split = json.loads((run / "split.json").read_text())
    assert split["train"] == ids[1:] and split["val"] == ids[:1]


def test_resume_on_an_empty_folder_says_so_and_a_run_checkpoint_predicts(tmp_path, small_sample_root, capsys):
    from tools.predict import main as predict
    from tools.train import main as train

    run = tmp_path / "run"
    argv = ["unet", "--data", str(small_sample_root), *TINY, "--out", str(run), "--epochs", "1", "--no-val-score"]
    assert train(argv + ["--resume"]) == 0
    assert capsys.readouterr().out.count("holds no run yet; starting a new one") == 1
    # a run's last.weights.h5 has no JSON of its own: the U-Net falls back to the run's config.json
    assert not (run / "last.json").exists()
    out = tmp_path / "predicted"
    assert predict(["--weights", str(run / "last.weights.h5"), "--images", str(small_sample_root),
                    "--out", str(out), "--no-overlays", "--no-params"]) == 0, capsys.readouterr().err
    assert len(list((out / "labels").iterdir())) == 5 and (out / "submission.csv").is_file()


def test_mrcnn_epochs_zero_is_one_line_and_writes_nothing(tmp_path, small_sample_root, capsys):
    from tools.train import main as train

    out = tmp_path / "run"
    assert train(["mrcnn", "--data", str(small_sample_root), "--out", str(out), "--config", "tiny",
                  "--epochs", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "--epochs" in err[0]
    assert not out.exists()


def test_cpu_preset_sets_the_recipe_and_explicit_options_win(tmp_path):
    from tools.train import UNET_PRESETS, build_parser, unet_task

    args = build_parser().parse_args(["unet", "--data", "d", "--out", str(tmp_path), "--preset", "cpu",
                                      "--crop-size", "192", "--border-width-factor", "0.12", "--border-width-max", "4"])
    task = unet_task(args, tmp_path)
    assert (task.config.border_width_factor, task.config.border_width_max) == (0.12, 4)
    assert task.config.encoder == "mobilenetv2" and task.config.depth == 5 and task.config.batch_size == 8
    assert task.config.crop_size == 192  # given on the command line: overrides the preset's 256
    assert task.augment == "light"
    assert Path(task.config.encoder_weights).is_file()  # the shipped ImageNet encoder
    assert "augment" in UNET_PRESETS["cpu"]  # not consumed by the first use
    plain = unet_task(build_parser().parse_args(["unet", "--data", "d", "--out", str(tmp_path)]), tmp_path)
    assert plain.config.encoder == "plain" and plain.augment == "heavy" and plain.precision == "float32"


def test_cpu_preset_trains_in_bfloat16_only_where_the_cpu_has_it(tmp_path, monkeypatch):
    import preprocessing.precision
    from tools.train import build_parser, unet_task

    def task(*extra):
        return unet_task(build_parser().parse_args(["unet", "--data", "d", "--out", str(tmp_path), *extra]), tmp_path)

    for native, expected in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(preprocessing.precision, "cpu_has_bfloat16", lambda native=native: native)
        assert task("--preset", "cpu").precision == expected
        assert task("--preset", "cpu", "--precision", "float32").precision == "float32"  # the command line wins
        assert task("--precision", "bfloat16").precision == "bfloat16"
        assert task("--precision", "auto").precision == expected


def test_bfloat16_training_learns_and_its_files_are_float32(tmp_path, small_sample_root, run_train):
    """--precision bfloat16: layers compute in bfloat16 (softmax float32), the loss falls on a
    fixed batch, and the run's files hold float32 weights that a float32 run resumes from."""
    import h5py
    import numpy as np

    from tools.engine.tasks import UNetTask
    from unet.config import UNetConfig
    from unet.targets import make_targets

    config = UNetConfig(base_filters=8, max_filters=16, depth=2, crop_size=32, batch_size=4, dropout=0.0,
                        learning_rate=3e-3)
    model = UNetTask(config, precision="bfloat16").build()
    assert model.get_layer("enc0_conv1").compute_dtype == "bfloat16"
    assert model.get_layer("enc0_conv1").variable_dtype == "float32" and model.output.dtype == "float32"
    yy, xx = np.mgrid[:32, :32]
    labels = np.zeros((4, 32, 32), np.int32)
    for k in range(4):
        labels[k][(yy - 8 - 4 * k) ** 2 + (xx - 12) ** 2 < 25] = 1
        labels[k][(yy - 22) ** 2 + (xx - 20 - k) ** 2 < 30] = 2
    x = np.repeat((labels > 0)[..., None].astype(np.float32), 3, -1) * 0.6 + 0.2
    y = np.stack([make_targets(lab) for lab in labels])
    losses = model.fit(x, y, batch_size=4, epochs=40, verbose=0).history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < 0.5 * losses[0], losses[::8]

    run = tmp_path / "bf16"
    trained = run_train(small_sample_root, "--out", str(run), "--epochs", "1", "--no-val-score",
                        "--precision", "bfloat16")
    assert trained.returncode == 0, trained.stderr[-2000:]
    with h5py.File(run / "last.weights.h5") as f:
        dtypes = set()
        f.visititems(lambda name, item: dtypes.add(str(item.dtype)) if isinstance(item, h5py.Dataset) else None)
    assert "float32" in dtypes and not dtypes & {"bfloat16", "float16"}, dtypes
    resumed = run_train(small_sample_root, "--out", str(run), "--resume", "--epochs", "2", "--no-val-score")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((run / "state.json").read_text())["epoch"] == 2
