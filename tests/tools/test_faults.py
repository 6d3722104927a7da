"""kill -9 at a random moment: training resumes losing at most the epoch it was in, with no
half-written checkpoint; prediction leaves each output file either absent or complete.

The moment is random on purpose (the seed is in every failure message, to replay it).
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import ROOT

TINY = ["--base-filters", "4", "--max-filters", "8", "--depth", "2", "--crop-size", "32", "--batch-size", "2",
        "--steps-per-epoch", "3", "--val-fraction", "0.25", "--augment", "light"]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}


def _start(module, argv, log):
    return subprocess.Popen([sys.executable, "-m", module, *map(str, argv)], cwd=ROOT, env=ENV,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for(condition, process, seconds, what):
    deadline = time.time() + seconds
    while not condition():
        assert process.poll() is None, f"the process ended ({process.returncode}) before {what}"
        assert time.time() < deadline, f"no {what} within {seconds} s"
        time.sleep(0.02)


def _kill(process, may_have_finished=False):
    """SIGKILL ``process``; ``may_have_finished``: it may also have exited by itself just before
    (between a poll and the signal), successfully."""
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode in ((-signal.SIGKILL, 0) if may_have_finished else (-signal.SIGKILL,))


def _logged_epochs(path):
    with open(path, newline="") as file:
        return [int(row["epoch"]) for row in csv.DictReader(file)]


def test_training_killed_at_a_random_moment_resumes_losing_at_most_one_epoch(tmp_path, small_sample_root):
    from preprocessing.files import is_temporary
    from tools.train import main as train
    from unet.predictor import UNetPredictor

    seed = random.randrange(2**32)
    rng = random.Random(seed)
    run = tmp_path / "run"
    argv = ["unet", "--data", small_sample_root, "--out", run, *TINY, "--no-val-score"]
    with open(tmp_path / "train.log", "wb") as log:
        process = _start("tools.train", argv + ["--epochs", "500"], log)
        try:
            _wait_for(lambda: (run / "state.json").is_file(), process, 120, "first checkpoint")
            time.sleep(rng.uniform(0.0, 1.5))
            seen = json.loads((run / "state.json").read_text())["epoch"]
        finally:
            _kill(process)
    where = f"(seed {seed}; log: {(tmp_path / 'train.log').read_text(errors='replace')[-1500:]})"

    state = json.loads((run / "state.json").read_text())  # never half-written
    assert state["epoch"] >= seen >= 1, where
    # every checkpoint file is whole: the weights and the optimizer state load
    UNetPredictor.from_path(run / "last.weights.h5")
    if (run / "best.weights.h5").exists():
        UNetPredictor.from_path(run / "best.weights.h5")
    with np.load(run / "last.optimizer.npz") as data:
        assert len(data.files) > 0
    # at most the epoch in progress is lost: the checkpoint holds every logged epoch but, at
    # most, one logged just before a kill that came before its checkpoint was saved
    logged = _logged_epochs(run / "log.csv")
    assert logged in (list(range(state["epoch"])), list(range(state["epoch"] + 1))), where

    (run / ".state.json.partial.zz.tmp").write_text("{")  # as a writer killed mid-write leaves it
    target = state["epoch"] + 2
    assert train([str(a) for a in argv] + ["--epochs", str(target), "--resume"]) == 0, where
    assert json.loads((run / "state.json").read_text())["epoch"] == target
    assert _logged_epochs(run / "log.csv") == list(range(target)), where  # each epoch once
    assert not [p.name for p in run.iterdir() if is_temporary(p.name)]
    UNetPredictor.from_path(run / "model.weights.h5")


def test_prediction_killed_at_a_random_moment_leaves_no_truncated_output(tmp_path):
    from unet.config import UNetConfig
    from unet.model import build_unet

    seed = random.randrange(2**32)
    rng = random.Random(seed)
    config = UNetConfig(depth=2, base_filters=4, max_filters=8, bottleneck_dilations=(1,), crop_size=32)
    build_unet(config).save_weights(tmp_path / "tiny.weights.h5")
    config.save(tmp_path / "tiny.json")
    images = tmp_path / "images"
    images.mkdir()
    image_rng = np.random.default_rng(0)
    ids = [f"im{k:03d}" for k in range(80)]
    for image_id in ids:
        Image.fromarray((image_rng.random((96, 112)) * 255).astype(np.uint8)).save(images / f"{image_id}.png")
    out = tmp_path / "out"
    argv = ["--weights", tmp_path / "tiny.weights.h5", "--images", images, "--out", out, "--no-params"]
    with open(tmp_path / "predict.log", "wb") as log:
        process = _start("tools.predict", argv, log)
        try:
            _wait_for(lambda: (out / "labels").is_dir() and any((out / "labels").glob("im*.png")), process, 120,
                      "first label image")
            time.sleep(rng.uniform(0.0, 2.0))  # sometimes past the end (~1.8 s here): a finished run must be whole too
        finally:
            if process.poll() is None:
                _kill(process, may_have_finished=True)
    where = f"(seed {seed})"

    submission = out / "submission.csv"
    if submission.exists():  # written once, atomically, after the last image: complete or absent
        rows = submission.read_text().splitlines()
        assert rows[0] == "ImageId,EncodedPixels", where
        assert {row.split(",")[0] for row in rows[1:]} == set(ids), where
    for folder in ("labels", "overlays"):
        for path in (out / folder).glob("im*.png"):  # the files under their own names are whole
            with Image.open(path) as written:
                written.load()
                assert written.size == (112, 96), (path, where)
