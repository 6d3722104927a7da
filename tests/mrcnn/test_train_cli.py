"""python -m tools.train mrcnn: a two-step tiny run writes a resumable run folder."""

import json
from pathlib import Path

from tools.train import main

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "stage1_train"


def test_tiny_run_writes_checkpoints_and_resumes(tmp_path):
    out = tmp_path / "run"
    argv = ["mrcnn", "--data", str(SAMPLE), "--out", str(out), "--config", "tiny", "--epochs", "1",
            "--steps-per-epoch", "2", "--validation-steps", "1", "--crop-size", "64", "--max-images", "4",
            "--val-fraction", "0.25", "--no-val-score"]
    assert main(argv) == 0
    for name in ("config.json", "best.json", "best.weights.h5", "last.weights.h5", "state.json", "log.csv"):
        assert (out / name).is_file(), name
    assert json.loads((out / "state.json").read_text())["epoch"] == 1
    assert main(argv[:-1] + ["--resume", "--epochs", "2", "--no-val-score"]) == 0
    assert json.loads((out / "state.json").read_text())["epoch"] == 2
    assert main(argv) == 2  # the folder already holds a run and --resume is missing
