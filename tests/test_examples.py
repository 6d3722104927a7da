"""examples/: each notebook runs top to bottom in a fresh kernel and shows what it promises."""

import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(EXAMPLES))
import make_notebooks  # noqa: E402


def execute(name, tmp_path, monkeypatch):
    """Run examples/NAME in a new kernel (cwd: tmp_path); return (stdout text, stderr text, pictures)."""
    monkeypatch.setenv("NUCLEI_EXAMPLES_OUT", str(tmp_path / "work"))
    notebook = nbformat.read(EXAMPLES / name, as_version=4)
    nbclient.NotebookClient(notebook, timeout=240, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()  # raises on any error
    streams = {"stdout": "", "stderr": ""}
    pictures = 0
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output["output_type"] == "stream":
                streams[output["name"]] += output["text"]
            pictures += "image/png" in output.get("data", {})
    assert "oneDNN custom operations" not in streams["stderr"]  # quiet_tensorflow() in the first cell
    return streams["stdout"], streams["stderr"], pictures


@pytest.mark.parametrize("name", sorted(make_notebooks.NOTEBOOKS))
def test_committed_notebooks_are_the_generated_ones_without_outputs(name):
    committed = nbformat.read(EXAMPLES / name, as_version=4)
    generated = make_notebooks.build(name)
    assert [(c.cell_type, c.source) for c in committed.cells] == [(c.cell_type, c.source) for c in generated.cells]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in committed.cells
               if c.cell_type == "code")


def test_inspect_data_shows_types_masks_augmentation_and_sampler(tmp_path, monkeypatch):
    out, _, pictures = execute("inspect_data.ipynb", tmp_path, monkeypatch)
    assert "12 images, 617 nuclei" in out
    assert re.search(r"histology\s+3\s+\S+\s+0\.250\s+0\.299", out)  # uniform 3/12, balanced sqrt rule
    assert pictures == 4


def test_inspect_model_finds_anchors_proposals_detections_and_seeds(tmp_path, monkeypatch):
    out, _, pictures = execute("inspect_model.ipynb", tmp_path, monkeypatch)
    assert re.search(r"\b16368 anchors\b", out)
    detections = int(re.search(r"(\d+) detections", out).group(1))
    seeds, nuclei = map(int, re.search(r"(\d+) seeds .* -> (\d+) nuclei", out).groups())
    assert detections > 10 and seeds > 10 and nuclei >= seeds
    assert pictures == 6


def test_train_and_submit_trains_predicts_and_scores(tmp_path, monkeypatch):
    out, _, pictures = execute("train_and_submit.ipynb", tmp_path, monkeypatch)
    tiny, shipped = map(float, re.search(r"tiny U-Net ([\d.]+), shipped U-Net ([\d.]+)", out).groups())
    assert 0 <= tiny < shipped and shipped > 0.3
    submission = (tmp_path / "work" / "tiny" / "submission.csv").read_text().splitlines()
    assert submission[0] == "ImageId,EncodedPixels" and len(submission) > 5
    assert (tmp_path / "work" / "run" / "model.json").is_file() and pictures == 1
