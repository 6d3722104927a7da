"""tools.predict with TTA and post-processing on two sample images; the pipeline's modes."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sample" / "stage1_train"
PYTHON = ROOT / ".venv" / "bin" / "python"


@pytest.fixture(scope="module")
def tiny_unet(tmp_path_factory):
    """An untrained tiny U-Net saved as weights + config: (weights path, predictor)."""
    from unet.config import UNetConfig
    from unet.model import build_unet
    from unet.predictor import UNetPredictor

    folder = tmp_path_factory.mktemp("unet")
    config = UNetConfig(depth=2, base_filters=4, max_filters=8, bottleneck_dilations=(1,), crop_size=64)
    model = build_unet(config)
    weights = folder / "tiny.weights.h5"
    model.save_weights(weights)
    config.save(folder / "tiny.json")
    return weights, UNetPredictor.from_path(weights)


@pytest.fixture(scope="module")
def two_images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    for image_id in sorted(p.name for p in SAMPLE.iterdir() if p.name.startswith(("0a7d30b2", "309ba76b"))):
        shutil.copytree(SAMPLE / image_id, folder / image_id)
    return folder


def test_cli_tta15_dilate_writes_a_valid_scored_submission(tiny_unet, two_images, tmp_path):
    out = tmp_path / "out"
    run = subprocess.run([str(PYTHON), "-m", "tools.predict", "--model", "unet", "--weights", str(tiny_unet[0]),
                          "--images", str(two_images), "--out", str(out), "--tta", "15", "--dilate", "1",
                          "--fill-holes", "--min-size", "4", "--labels", str(two_images)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "DSB score on 2 labelled images" in run.stdout
    for name in ("submission.csv", "contact_sheet.html", "contact_sheet.png", "score.json"):
        assert (out / name).is_file(), name
    assert len(list((out / "labels").glob("*.png"))) == 2
    evaluate = subprocess.run([str(PYTHON), "-m", "tools.evaluate", str(out / "submission.csv"),
                               "--labels", str(two_images)], cwd=ROOT, capture_output=True, text=True,
                              timeout=120)
    assert evaluate.returncode == 0, evaluate.stderr
    assert evaluate.stdout.strip().splitlines()[-1].startswith("score: ")


def test_cli_rejects_bad_tta(tiny_unet, two_images, tmp_path):
    run = subprocess.run([str(PYTHON), "-m", "tools.predict", "--weights", str(tiny_unet[0]), "--images",
                          str(two_images), "--out", str(tmp_path), "--tta", "16"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "--tta" in run.stderr


class _ThresholdInstances:
    """A stand-in Mask R-CNN: bright connected components, scored by brightness."""

    def predict(self, image):
        grey = image.mean(axis=2)
        labels, n = ndimage.label(grey > grey.mean() + grey.std())
        scores = ndimage.mean(grey, labels, np.arange(1, n + 1)) / 255 if n else np.zeros(0)
        return labels.astype(np.int32), np.asarray(scores, np.float32)


def test_pipeline_modes_give_valid_label_images(tiny_unet, sample_dataset):
    from tools.inference.params import InferenceParams
    from tools.inference.pipeline import DenseModel, InferencePipeline, InstanceModel

    image = sample_dataset.samples[0].image
    dense = DenseModel(tiny_unet[1])
    instance = InstanceModel(_ThresholdInstances())
    for pipeline in (InferencePipeline(dense, None, InferenceParams(tta=4)),
                     InferencePipeline(None, instance, InferenceParams(tta=15)),
                     InferencePipeline(dense, instance, InferenceParams(tta=2, postprocess={"dilate": 1}))):
        labels, scores = pipeline.predict(image)
        assert labels.shape == image.shape[:2] and labels.dtype == np.int32
        assert scores.shape == (labels.max(),)
        assert set(np.unique(labels)) | {0} == set(range(labels.max() + 1))
    assert pipeline.network_seconds > 0


def test_instance_tta_of_a_flip_invariant_model_equals_single_pass(sample_dataset):
    from tools.kaggle.metric import image_score
    from tools.inference.params import InferenceParams
    from tools.inference.pipeline import InferencePipeline, InstanceModel

    image = sample_dataset.samples[1].image
    single, _ = InferencePipeline(None, InstanceModel(_ThresholdInstances()), InferenceParams(tta=1)).predict(image)
    eight, _ = InferencePipeline(None, InstanceModel(_ThresholdInstances()), InferenceParams(tta=8)).predict(image)
    assert image_score(single, eight)["score"] == 1.0


def test_cli_bfloat16_is_recorded_and_a_float32_resume_is_refused(tiny_unet, two_images, tmp_path):
    import json

    out = tmp_path / "out"
    base = [str(PYTHON), "-m", "tools.predict", "--weights", str(tiny_unet[0]), "--images", str(two_images),
            "--out", str(out), "--no-overlays"]
    run = subprocess.run(base + ["--precision", "bfloat16"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert json.loads((out / "run.json").read_text())["settings"]["precision"] == "bfloat16"
    again = subprocess.run(base + ["--resume"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "precision" in again.stderr, again.stderr


@pytest.mark.parametrize("native", [True, False])
def test_fast_preset_is_the_bfloat16_mask_rcnn_where_the_cpu_has_it(monkeypatch, native, capsys):
    import preprocessing.precision
    from tools.predict import apply_preset, build_parser

    monkeypatch.setattr(preprocessing.precision, "cpu_has_bfloat16", lambda: native)
    base = ["--images", "in", "--out", "out"]
    fast = apply_preset(build_parser().parse_args(base + ["--preset", "fast"]))
    assert (fast.model, fast.precision) == ("mrcnn", "bfloat16" if native else "float32")
    assert fast.no_unfamiliar_params  # one pass for every image: the speed the preset is for
    assert ("no native bfloat16" in capsys.readouterr().out) is not native
    plain = apply_preset(build_parser().parse_args(base))
    assert (plain.model, plain.precision) == ("unet", "float32") and not plain.no_unfamiliar_params
    explicit = apply_preset(build_parser().parse_args(base + ["--preset", "fast", "--model", "unet",
                                                               "--precision", "float32"]))
    assert (explicit.model, explicit.precision) == ("unet", "float32")  # given options win
    auto = apply_preset(build_parser().parse_args(base + ["--precision", "auto"]))
    assert auto.precision == ("bfloat16" if native else "float32")
    # --weights without --model: the weights' own model (its config's kind), the preset's precision
    own = apply_preset(build_parser().parse_args(base + ["--preset", "fast", "--weights",
                                                          str(ROOT / "weights" / "unet.weights.h5")]))
    assert own.model == "unet" and own.precision == ("bfloat16" if native else "float32")


def test_cli_decodes_a_flagged_image_with_the_unfamiliar_params_and_records_them(tmp_path):
    import json

    images = tmp_path / "images"
    flagged = "9bb6e39d5f4415bc7554842ee5d1280403a602f2ba56122b87f453a62d37c06e"  # 260x347 grey: no training size
    shutil.copytree(SAMPLE / flagged, images / flagged)
    out = tmp_path / "out"
    base = [str(PYTHON), "-m", "tools.predict", "--model", "mrcnn", "--images", str(images), "--out", str(out),
            "--no-overlays", "--no-labels"]
    run = subprocess.run(base, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "1 unfamiliar image decoded with the params' unfamiliar choices (8-way TTA" in run.stdout, run.stdout
    params = json.loads((out / "run.json").read_text())["settings"]["params"]
    assert (params["tta"], params["unfamiliar"]["tta"]) == (1, 8)
    again = subprocess.run(base + ["--resume", "--no-unfamiliar-params"], cwd=ROOT, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 2 and "params" in again.stderr, again.stderr  # other settings: refused
