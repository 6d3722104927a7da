"""tools.evaluate: the CLI on the bundled sample, its user errors, and evaluate_labels."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from preprocessing.dataset import load_dataset
from preprocessing.errors import NucleiError
from tools.kaggle.scoring import evaluate_labels, evaluate_submission
from tools.kaggle.rle import labels_to_rles
from tools.kaggle.submission import write_submission

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sample" / "stage1_train"
PYTHON = ROOT / ".venv" / "bin" / "python"


@pytest.fixture(scope="module")
def sample_files(tmp_path_factory):
    """Solution and perfect submission CSVs built from the bundled sample's masks."""
    folder = tmp_path_factory.mktemp("evaluate")
    samples = load_dataset(SAMPLE).samples
    rows = ["ImageId,EncodedPixels,Height,Width,Usage"]
    for sample in samples:
        height, width = sample.labels.shape
        rows += [f"{sample.image_id},{rle},{height},{width},Public" for rle in labels_to_rles(sample.labels)]
    solution = folder / "solution.csv"
    solution.write_text("\n".join(rows) + "\n")
    submission = folder / "perfect.csv"
    write_submission(submission, [(s.image_id, s.labels) for s in samples])
    return {"folder": folder, "solution": solution, "submission": submission,
            "ids": [s.image_id for s in samples]}


def run_evaluate(*args):
    return subprocess.run([str(PYTHON), "-m", "tools.evaluate", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_sample_scored_against_itself_is_exactly_one(sample_files):
    out_json = sample_files["folder"] / "scores.json"
    done = run_evaluate(sample_files["submission"], "--solution", sample_files["solution"], "--json", out_json)
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().splitlines()[-1] == "score: 1.0000"
    document = json.loads(out_json.read_text())
    assert document["score"] == 1.0
    assert document["per_threshold"] == [1.0] * 10
    assert len(document["per_image"]) == 12
    assert sum(row["n_true"] for row in document["per_image"]) == 617
    assert all(row["n_true"] == row["n_pred"] for row in document["per_image"])
    assert not list(sample_files["folder"].glob("*.tmp"))


def test_labels_folder_gives_types(sample_files):
    done = run_evaluate(sample_files["submission"], "--labels", SAMPLE)
    assert done.returncode == 0, done.stderr
    assert "per type:" in done.stdout and "fluorescence" in done.stdout
    assert done.stdout.rstrip().splitlines()[-1] == "score: 1.0000"


def test_missing_image_scores_zero_with_warning(sample_files):
    lines = sample_files["submission"].read_text().splitlines()
    dropped = sample_files["ids"][3]
    partial = sample_files["folder"] / "partial.csv"
    partial.write_text("\n".join(line for line in lines if not line.startswith(dropped)) + "\n")
    done = run_evaluate(partial, "--solution", sample_files["solution"])
    assert done.returncode == 0, done.stderr
    assert "warning:" in done.stderr and dropped in done.stderr
    assert done.stdout.rstrip().splitlines()[-1] == f"score: {11 / 12:.4f}"


def test_unknown_image_id_exits_2_with_message(sample_files):
    text = sample_files["submission"].read_text() + "not_an_image,1 5\n"
    bad = sample_files["folder"] / "unknown.csv"
    bad.write_text(text)
    done = run_evaluate(bad, "--solution", sample_files["solution"])
    assert done.returncode == 2
    assert "not_an_image" in done.stderr and "not in the answers" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize("extra_row, problem", [
    ("1 2 3", "odd count"),
    ("99999999 3", "runs past the last pixel"),
    ("1 x", "not an integer"),
])
def test_malformed_prediction_exits_2_naming_image(sample_files, extra_row, problem):
    image_id = sample_files["ids"][0]
    bad = sample_files["folder"] / "malformed.csv"
    bad.write_text(sample_files["submission"].read_text() + f"{image_id},{extra_row}\n")
    done = run_evaluate(bad, "--solution", sample_files["solution"])
    assert done.returncode == 2
    assert problem in done.stderr and image_id in done.stderr
    assert "Traceback" not in done.stderr


def test_overlapping_predictions_exit_2(sample_files):
    image_id = sample_files["ids"][0]
    first_rle = sample_files["submission"].read_text().splitlines()[1].split(",")[1]
    bad = sample_files["folder"] / "overlap.csv"
    bad.write_text(sample_files["submission"].read_text() + f"{image_id},{first_rle}\n")
    done = run_evaluate(bad, "--solution", sample_files["solution"])
    assert done.returncode == 2
    assert "overlap" in done.stderr and image_id in done.stderr


def test_missing_submission_file_exits_2(sample_files):
    done = run_evaluate(sample_files["folder"] / "nope.csv", "--solution", sample_files["solution"])
    assert done.returncode == 2 and "file not found" in done.stderr


def test_evaluate_labels_function():
    true = {"a": np.zeros((10, 10), np.int32), "b": np.zeros((10, 10), np.int32)}
    true["a"][2:6, 2:6] = 1
    true["b"][0:5, 0:5] = 4
    shifted = np.zeros((10, 10), np.int32)
    shifted[2:6, 3:7] = 1  # IoU 12/20 = 0.6: hits at 0.50 and 0.55 only
    result = evaluate_labels({"a": shifted}, true, {"a": "histology", "b": "fluorescence"})
    assert result["score"] == pytest.approx((0.2 + 0.0) / 2)  # b is missing -> 0
    assert result["missing"] == ["b"]
    assert result["per_type"] == pytest.approx({"histology": 0.2, "fluorescence": 0.0})
    with pytest.raises(NucleiError, match="not in the answers: c"):
        evaluate_labels({"c": shifted}, true)


def test_overlapping_true_masks_warn_and_keep_earlier(tmp_path):
    # Some answer keys have masks overlapping by a pixel: the earlier mask keeps it.
    solution = tmp_path / "solution.csv"
    solution.write_text("ImageId,EncodedPixels,Height,Width\nq,1 4,3,3\nq,4 3,3,3\n")
    submission = tmp_path / "sub.csv"
    submission.write_text("ImageId,EncodedPixels\nq,1 4\nq,5 2\n")
    result = evaluate_submission(submission, solution_path=solution)
    assert result["score"] == 1.0  # truth becomes pixels 1-4 and 5-6
    assert any("true masks overlap" in warning for warning in result["warnings"])


def test_domains_give_per_domain_scores_counts_and_balanced_mean(sample_files, tmp_path):
    from preprocessing.domains import save_domains
    from tools.evaluate import main

    ids = sample_files["ids"]
    # one image predicted as nothing: its domain scores 0, the other domain 1
    samples = load_dataset(SAMPLE).samples
    write_submission(tmp_path / "sub.csv",
                     [(s.image_id, s.labels if s.image_id != ids[0] else np.zeros_like(s.labels)) for s in samples])
    save_domains(tmp_path / "domains.json", {i: ("lonely" if i == ids[0] else "rest") for i in ids[1:] + ids[:1]})
    out = tmp_path / "scores.json"
    assert main([str(tmp_path / "sub.csv"), "--solution", str(sample_files["solution"]),
                 "--domains", str(tmp_path / "domains.json"), "--json", str(out)]) == 0
    document = json.loads(out.read_text())
    assert document["per_domain"]["lonely"]["score"] == 0.0
    assert document["per_domain"]["rest"]["score"] == 1.0
    assert document["per_domain"]["lonely"]["n_pred"] == 0
    assert document["per_domain"]["lonely"]["n_true"] == int(samples[0].labels.max())
    assert document["balanced_score"] == 0.5
    assert document["score"] == pytest.approx((len(ids) - 1) / len(ids))


def test_domains_file_that_is_not_one_exits_2(sample_files, tmp_path, capsys):
    from tools.evaluate import main

    (tmp_path / "bad.json").write_text("{\"x\": 1}")
    assert main([str(sample_files["submission"]), "--solution", str(sample_files["solution"]),
                 "--domains", str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.json" in err[0]
