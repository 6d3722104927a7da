"""tools.export: SavedModels that plain TensorFlow reloads and that give the Keras models' numbers."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tools.export import main

ROOT = Path(__file__).resolve().parents[2]
IMAGE_ID = "709e094e39629a9ca21e187f007b331074694e443db40289447c1111f7e267e7"  # histology 256x320
IMAGE = ROOT / "data" / "sample" / "stage1_train" / IMAGE_ID / "images" / f"{IMAGE_ID}.png"

# run with ``python -I`` from a folder without the project: TensorFlow and NumPy only
RELOAD = """
import sys
import numpy as np
import tensorflow as tf
inputs = np.load(sys.argv[1])
results = {}
for name in ("unet", "mrcnn"):
    model = tf.saved_model.load(sys.argv[2] + "/" + name)
    out = model.signatures["serving_default"](images=tf.constant(inputs[name]))
    results.update({name + "." + key: value.numpy() for key, value in out.items()})
np.savez(sys.argv[3], **results)
print("tools" in sys.modules, "unet" in sys.modules, "mrcnn" in sys.modules)
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Both shipped models exported (the U-Net through the command), their inputs and Keras outputs."""
    from mrcnn.data import model_input
    from preprocessing.dataset import read_image
    from tools.inference.export import export_model
    from tools.inference.models import load_predictor
    from tools.inference.tiling import pad_to_multiple

    folder = tmp_path_factory.mktemp("exports")
    run = subprocess.run([sys.executable, "-m", "tools.export", "--model", "unet", "--out", str(folder / "unet")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "oneDNN" not in run.stderr and "absl::InitializeLog" not in run.stderr, run.stderr
    export_model("mrcnn", folder / "mrcnn")
    image = read_image(IMAGE)
    unet, mrcnn = load_predictor("unet"), load_predictor("mrcnn")
    inputs = {"unet": pad_to_multiple(unet.prepare(image), unet.config.multiple)[0][None],
              "mrcnn": model_input(image, mrcnn.config)[0][None]}
    keras_out = {"unet": unet.predict_batch(inputs["unet"]), "mrcnn": mrcnn.model.infer(inputs["mrcnn"])}
    np.savez(folder / "inputs.npz", **inputs)
    reload = subprocess.run([sys.executable, "-I", "-c", RELOAD, str(folder / "inputs.npz"), str(folder),
                             str(folder / "outputs.npz")], cwd=folder, capture_output=True, text=True, timeout=300)
    assert reload.returncode == 0, reload.stderr[-3000:]
    assert reload.stdout.split() == ["False", "False", "False"]  # no project code was needed
    return folder, keras_out, dict(np.load(folder / "outputs.npz"))


def test_unet_savedmodel_gives_the_keras_probabilities(exported):
    folder, keras_out, loaded = exported
    probabilities = loaded["unet.output_0"]
    assert probabilities.shape == (1, 256, 320, 3)
    np.testing.assert_allclose(probabilities, keras_out["unet"], atol=1e-5)
    assert probabilities[..., 0].max() > 0.9  # nuclei found, not a blank map
    document = json.loads((folder / "unet" / "export.json").read_text())
    assert document["model"] == "unet" and "multiples of 16" in document["inputs"]["images"]
    assert json.loads((folder / "unet" / "model.json").read_text())["kind"] == "unet"
    assert (folder / "unet" / "params.json").is_file()


def test_mrcnn_savedmodel_gives_the_keras_detections_and_masks(exported):
    _, keras_out, loaded = exported
    count = int(loaded["mrcnn.count"][0])
    assert count == int(keras_out["mrcnn"]["count"][0]) and count > 5
    for key in ("boxes", "scores", "masks"):
        np.testing.assert_allclose(loaded[f"mrcnn.{key}"][0, :count], keras_out["mrcnn"][key][0, :count], atol=1e-4)
    np.testing.assert_array_equal(loaded["mrcnn.class_ids"][0, :count], keras_out["mrcnn"]["class_ids"][0, :count])


def test_export_replaces_an_earlier_export_and_leaves_no_temporary_folder(exported, capsys):
    folder = exported[0]
    first = (folder / "unet" / "saved_model.pb").stat().st_mtime_ns
    assert main(["--model", "unet", "--out", str(folder / "unet"), "--no-params"]) == 0
    assert (folder / "unet" / "saved_model.pb").stat().st_mtime_ns != first
    assert json.loads((folder / "unet" / "export.json").read_text())["params"] is None
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]
    assert "in  images: float32 [batch, H, W, 3]" in capsys.readouterr().out


def test_export_refuses_a_folder_holding_other_files(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and str(tmp_path) in error and len(error.splitlines()) == 1
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_export_refuses_a_model_that_its_weights_are_not(tmp_path, capsys):
    assert main(["--model", "mrcnn", "--weights", str(ROOT / "weights" / "unet.weights.h5"),
                 "--out", str(tmp_path / "x")]) == 2
    assert "is a unet" in capsys.readouterr().err


def test_a_unet_with_a_distance_head_exports_and_predicts_its_four_channels(tmp_path):
    """The distance channel travels through the SavedModel and through TTA (one more channel)."""
    import tensorflow as tf

    from preprocessing.dataset import read_image
    from preprocessing.files import save_weights_atomic
    from tools.inference.export import export_model
    from tools.inference.models import build_pipeline
    from tools.inference.params import InferenceParams
    from unet.config import UNetConfig
    from unet.model import build_unet

    config = UNetConfig(distance_head=True, base_filters=4, max_filters=8, depth=2, bottleneck_dilations=(1,),
                        seed_source="distance", seed_threshold=0.5)
    weights = tmp_path / "dist.weights.h5"
    save_weights_atomic(build_unet(config), weights)
    config.save(tmp_path / "dist.json")
    document = export_model("unet", tmp_path / "export", weights=weights, use_shipped_params=False)
    assert "distance map" in document["outputs"]["output_0"]
    pipeline = build_pipeline("unet", weights=weights, params=InferenceParams(tta=4))
    image = read_image(IMAGE)
    maps = pipeline.probabilities(image)
    assert maps.shape == image.shape[:2] + (4,) and 0 < maps[..., 3].min() <= maps[..., 3].max() < 1
    labels, _ = pipeline.predict(image)
    assert labels.shape == image.shape[:2]
    x = np.random.default_rng(0).random((1, 64, 64, 3)).astype(np.float32)
    out = tf.saved_model.load(str(tmp_path / "export")).signatures["serving_default"](images=tf.constant(x))
    keras_out = build_pipeline("unet", weights=weights).dense.predictor.predict_batch(x)
    np.testing.assert_allclose(out["output_0"].numpy(), keras_out, atol=1e-5)
