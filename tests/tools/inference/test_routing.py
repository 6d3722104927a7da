"""Images unlike every training acquisition: stained ones to the stain-trained model, all of them to the
params' unfamiliar choices (tools/inference/routing.py)."""

from pathlib import Path

import numpy as np
import pytest

from preprocessing.dataset import load_training_samples
from preprocessing.domains import load_reference
from preprocessing.image_types import classify_image
from tools.inference.routing import UnfamiliarRouter, goes_to_stain_model, route_of, stain_weights_for

ROOT = Path(__file__).resolve().parents[3]
REFERENCE = load_reference(ROOT / "weights" / "training_domains.json")


def pink_scan(height=300, width=400, seed=0):
    """A pale pink H&E-like image with one purple nucleus: no training acquisition looks like it."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.uint8)
    image[...] = (235, 200, 215)
    image[100:140, 100:200] = (120, 60, 150)
    return image - rng.integers(0, 12, image.shape, dtype=np.uint8)


def odd_grey(height=700, width=90):
    """A grey image of a shape and layout no training acquisition has (flagged, not stained)."""
    image = np.full((height, width, 3), 20, np.uint8)
    image[100:140, 30:60] = 200
    return image


class Recorder:
    """A pipeline stand-in: labels full of its ``mark``, and how many images it saw."""

    def __init__(self, mark):
        self.mark, self.calls, self.params = mark, 0, f"params-{mark}"

    def predict(self, image):
        self.calls += 1
        return np.full(image.shape[:2], self.mark, np.int32), np.ones(1, np.float32)


def test_only_unfamiliar_colour_images_go_to_the_stain_model():
    grey = np.full((300, 400, 3), 20, np.uint8)
    grey[100:140, 100:200] = 200
    assert goes_to_stain_model(pink_scan(), REFERENCE)
    assert not goes_to_stain_model(grey, REFERENCE)
    # the bundled sample's histology images are of a training acquisition: they stay
    samples = load_training_samples([ROOT / "data" / "sample" / "stage1_train"], progress=False)
    colour = [s for s in samples if classify_image(s.image) == "histology"]
    assert len(colour) == 3 and not any(goes_to_stain_model(s.image, REFERENCE) for s in colour)


def test_router_sends_each_image_to_one_pipeline_and_counts_the_routed_ones():
    familiar, stained, built = Recorder(1), Recorder(2), []
    router = UnfamiliarRouter(familiar, REFERENCE, lambda: built.append(1) or stained)
    sample = load_training_samples([ROOT / "data" / "sample" / "stage1_train"], progress=False)[0]
    router.predict(sample.image)
    assert built == []  # the stain pipeline loads only when an image needs it
    labels, _ = router.predict(pink_scan())
    assert labels.max() == 2 and router.routed == 1
    labels, _ = router.predict(pink_scan(seed=1))
    assert labels.max() == 2 and router.routed == 2 and built == [1]  # built once
    labels, _ = router.predict(sample.image)
    assert labels.max() == 1 and router.routed == 2
    assert (familiar.calls, stained.calls) == (2, 2)
    assert router.params == "params-1"  # everything else is the shipped pipeline's
    labels, _ = router.predict(odd_grey())  # flagged but grey: without unfamiliar params, the shipped pipeline
    assert labels.max() == 1 and (router.routed, router.unfamiliar_count) == (2, 3)


def test_flagged_grey_images_and_colour_ones_without_a_stain_model_take_the_unfamiliar_pipeline():
    familiar, unfamiliar = Recorder(1), Recorder(3)
    assert route_of(odd_grey(), REFERENCE) == "unfamiliar" and route_of(pink_scan(), REFERENCE) == "stained"
    router = UnfamiliarRouter(familiar, REFERENCE, unfamiliar=unfamiliar)
    sample = load_training_samples([ROOT / "data" / "sample" / "stage1_train"], progress=False)[0]
    assert [router.predict(image)[0].max() for image in (odd_grey(), pink_scan(), sample.image)] == [3, 3, 1]
    assert (router.routed, router.unfamiliar_count, unfamiliar.calls) == (0, 2, 2)
    stained = Recorder(2)
    both = UnfamiliarRouter(familiar, REFERENCE, lambda: stained, unfamiliar)
    assert [both.predict(image)[0].max() for image in (odd_grey(), pink_scan())] == [3, 2]


def test_a_folder_checks_each_image_once_and_the_router_takes_its_answer(tmp_path, monkeypatch):
    import tools.inference.folder as folder
    from preprocessing.dataset import write_png

    for name, image in (("grey", odd_grey()), ("pink", pink_scan())):
        (tmp_path / "in" / name / "images").mkdir(parents=True)
        write_png(tmp_path / "in" / name / "images" / f"{name}.png", image)
    checks = []
    real = folder.unfamiliar_image
    monkeypatch.setattr(folder, "unfamiliar_image", lambda image, reference: checks.append(1) or real(image, reference))
    familiar, unfamiliar, stained = Recorder(1), Recorder(3), Recorder(2)
    router = UnfamiliarRouter(familiar, REFERENCE, lambda: stained, unfamiliar)
    run = folder.predict_folder(router, tmp_path / "in", tmp_path / "out", overlays=False, progress=False,
                                reference=router.reference)
    assert len(checks) == 2 and sorted(run.unfamiliar) == ["grey", "pink"]
    assert (unfamiliar.calls, stained.calls, router.unfamiliar_count) == (1, 1, 2)
    # the router trusts the caller's answer: an image said to be familiar takes the familiar pipeline
    assert router.predict(pink_scan(), flagged=False)[0].max() == 1
    # another reference than the router's: the router checks for itself
    checks.clear()
    folder.predict_folder(router, tmp_path / "in", tmp_path / "out2", overlays=False, progress=False,
                          reference=dict(REFERENCE))
    assert len(checks) == 4


def test_stain_weights_are_found_beside_the_weights_only(tmp_path):
    (tmp_path / "m.weights.h5").write_bytes(b"")
    assert stain_weights_for(tmp_path / "m.weights.h5") is None
    (tmp_path / "m.stain.weights.h5").write_bytes(b"")
    assert stain_weights_for(tmp_path / "m.weights.h5") == tmp_path / "m.stain.weights.h5"
    assert stain_weights_for(tmp_path / "m.stain.weights.h5") is None  # no stain model of a stain model


@pytest.mark.parametrize("model", ["mrcnn", "unet"])
def test_shipped_pipelines_route_and_can_be_told_not_to(model):
    from tools.inference.models import build_pipeline
    from tools.inference.pipeline import InferencePipeline

    routed = build_pipeline(model)
    assert isinstance(routed, UnfamiliarRouter)
    if model == "mrcnn":  # weights/mrcnn.params.json: flagged images get 8-way TTA, on either network
        assert routed.unfamiliar.params == routed.familiar.params.unfamiliar and routed.unfamiliar.params.tta == 8
        assert routed.stained.params == routed.unfamiliar.params and routed.familiar.params.tta == 1
        assert routed.unfamiliar.instance is routed.familiar.instance  # the same network, not loaded twice
        no_stain = build_pipeline(model, stain_models=False)
        assert no_stain.build_stained is None and no_stain.unfamiliar.params.tta == 8
    else:  # the U-Net's params have no unfamiliar choices: the stain network, the same thresholds
        assert routed.unfamiliar is None and routed.stained.params == routed.familiar.params
        assert isinstance(build_pipeline(model, stain_models=False), InferencePipeline)
    plain = build_pipeline(model, stain_models=False, unfamiliar_params=False)
    assert isinstance(plain, InferencePipeline) and plain.params.unfamiliar is None
