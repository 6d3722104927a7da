"""Write the example notebooks (outputs stripped) from the cells below: ``python examples/make_notebooks.py``.

The notebooks are generated so that they stay small, reviewable and in step with the library;
edit the cells here, not in Jupyter. ``tests/test_examples.py`` runs each one and checks that the
files in examples/ are what this script writes.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

SETUP = '''\
# TensorFlow's start-up chatter hidden (the commands do this for you; --verbose brings it back)
from tools.quiet import quiet_tensorflow

quiet_tensorflow()

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from tools.inference.models import WEIGHTS_DIR

ROOT = WEIGHTS_DIR.parent  # the repository (installed with pip install -e)
SAMPLE = ROOT / "data" / "sample" / "stage1_train"  # 12 bundled DSB 2018 images with masks'''

INSPECT_DATA = [
    ("markdown", """\
# Inspect the data

The bundled sample (`data/sample/stage1_train`, 12 DSB 2018 training images in Kaggle's layout,
see `data/sample/SOURCE.md`): images by type, their masks, what augmentation does to an image and
its nuclei, and how the balanced sampler weighs the image types during training."""),
    ("code", SETUP),
    ("code", '''\
from preprocessing.dataset import load_dataset

dataset = load_dataset(SAMPLE)  # image uint8 [H, W, 3], labels int32 [H, W] (0 = background), type
samples = dataset.samples
print(dataset.summary())
by_type = {}
for sample in samples:
    by_type.setdefault(sample.image_type, []).append(sample)
for image_type, group in sorted(by_type.items()):
    sizes = sorted({sample.image.shape[:2] for sample in group})
    print(f"{image_type:13s} {len(group):2d} images, {sum(s.labels.max() for s in group):4d} nuclei, sizes {sizes}")
assert len(samples) == 12 and set(by_type) == {"fluorescence", "brightfield", "histology"}'''),
    ("markdown", """\
## Images by type

Outlines from the masks (`tools.inference.overlay.draw_outlines`); the type is
`preprocessing.image_types.classify_image`'s, from the pixels alone."""),
    ("code", '''\
from tools.inference.overlay import draw_outlines

fig, axes = plt.subplots(len(by_type), 3, figsize=(12, 4 * len(by_type)))
for row, (image_type, group) in zip(axes, sorted(by_type.items())):
    for ax in row:
        ax.axis("off")
    for ax, sample in zip(row, group):
        ax.imshow(draw_outlines(sample.image, sample.labels))
        ax.set_title(f"{image_type} {sample.image_id[:8]}: {sample.labels.max()} nuclei", fontsize=9)
plt.tight_layout()
plt.show()'''),
    ("markdown", """\
## Masks

Kaggle gives one PNG per nucleus; `load_dataset` combines them into one label image (where masks
overlap, the earlier keeps the pixel). Nucleus sizes differ a lot between types."""),
    ("code", '''\
sample = by_type["histology"][0]
areas_by_type = {t: np.concatenate([np.bincount(s.labels.ravel())[1:] for s in g]) for t, g in by_type.items()}
for image_type, areas in sorted(areas_by_type.items()):
    print(f"{image_type:13s} median nucleus {np.median(areas):6.0f} px  (5%: {np.percentile(areas, 5):.0f}, "
          f"95%: {np.percentile(areas, 95):.0f})")
fig, axes = plt.subplots(1, 3, figsize=(15, 4))
axes[0].imshow(sample.image)
axes[0].set_title(f"{sample.image_id[:8]} ({sample.image_type})")
axes[1].imshow(sample.labels, cmap="nipy_spectral", interpolation="nearest")
axes[1].set_title(f"labels: {sample.labels.max()} nuclei")
for image_type, areas in sorted(areas_by_type.items()):
    axes[2].hist(np.log10(areas), bins=30, alpha=0.5, label=image_type)
axes[2].set_xlabel("log10 nucleus area (pixels)")
axes[2].legend()
for ax in axes[:2]:
    ax.axis("off")
plt.show()'''),
    ("markdown", """\
## Augmentation, before and after

`preprocessing.augment.Augmenter` moves the image and its labels together (flips, rotations,
zoom and aspect, elastic warps, stain and colour changes, copied nuclei), then drops the
remnants of nuclei cut by the border. The presets are `none`, `light` and `heavy` (training's
default)."""),
    ("code", '''\
from preprocessing.augment import Augmenter

augmenter = Augmenter("heavy", seed=0)
fig, axes = plt.subplots(2, 4, figsize=(16, 8))
for row, sample in zip(axes, (by_type["fluorescence"][0], by_type["histology"][0])):
    row[0].imshow(draw_outlines(sample.image, sample.labels))
    row[0].set_title(f"original: {sample.labels.max()} nuclei")
    for ax in row[1:]:
        image, labels = augmenter(sample.image, sample.labels)
        assert image.dtype == np.uint8 and image.shape[:2] == labels.shape and labels.max() > 0
        ax.imshow(draw_outlines(image, labels))
        ax.set_title(f"augmented: {labels.max()} nuclei")
    for ax in row:
        ax.axis("off")
plt.tight_layout()
plt.show()'''),
    ("markdown", """\
## The balanced sampler

Fluorescence images dominate DSB 2018. Training draws images with
`preprocessing.sampling.sampling_weights`: each type with n images gets weight sqrt(n), spread
over its images, so rare types are seen more often than their share, without being
over-fitted."""),
    ("code", '''\
from preprocessing.sampling import BalancedSampler, sampling_weights

types = [sample.image_type for sample in samples]
weights = sampling_weights(types)
draws = BalancedSampler(types, seed=0).sample(12000)
shares = {}
print("type          images  weight/image  uniform  balanced  drawn")
for image_type in sorted(by_type):
    index = [i for i, t in enumerate(types) if t == image_type]
    expected, drawn = weights[index].sum(), np.isin(draws, index).mean()
    shares[image_type] = (len(index) / len(types), expected)
    print(f"{image_type:13s} {len(index):6d}  {weights[index[0]]:12.3f}  {len(index) / len(types):7.3f}  "
          f"{expected:8.3f}  {drawn:5.3f}")
    assert abs(drawn - expected) < 0.02
assert shares["histology"][1] > shares["histology"][0]  # the rare type is drawn more than uniformly
positions = np.arange(len(shares))
plt.bar(positions - 0.2, [u for u, _ in shares.values()], 0.4, label="uniform")
plt.bar(positions + 0.2, [b for _, b in shares.values()], 0.4, label="balanced")
plt.xticks(positions, list(shares))
plt.ylabel("share of training draws")
plt.legend()
plt.show()'''),
]

INSPECT_MODEL = [
    ("markdown", """\
# Inspect the models

The shipped Mask R-CNN (`weights/mrcnn.weights.h5`, MobileNetV2-FPN) step by step on one bundled
image: anchors, RPN proposals, detections and masks; then the shipped U-Net
(`weights/unet.weights.h5`): its probability maps and the seeds of its watershed; last, both
full pipelines (with their tuned parameters) against the true masks."""),
    ("code", SETUP + '''

from preprocessing.dataset import load_dataset
from tools.inference.overlay import draw_outlines

IMAGE_ID = "dae976f161fe42dc58dee87d4bf2eb9f65736597cab0114138641b2a39a5c42b"  # fluorescence, 256 x 256
sample = load_dataset(SAMPLE, ids=[IMAGE_ID]).samples[0]
print(sample.image.shape, sample.image_type, sample.labels.max(), "true nuclei")'''),
    ("markdown", """\
## Mask R-CNN: anchors

`mrcnn.predictor.MrcnnPredictor` reads the weights and the config JSON beside them. The input is
normalised and zero-padded to multiples of 64 (`mrcnn.data.model_input`); each pyramid level
P2..P6 has anchors of one scale and several aspect ratios on every feature cell."""),
    ("code", '''\
from mrcnn.anchors import anchors_for_config, feature_shapes
from mrcnn.data import model_input
from mrcnn.predictor import MrcnnPredictor

mrcnn = MrcnnPredictor.from_path(WEIGHTS_DIR / "mrcnn.weights.h5")
config = mrcnn.config
x, (height, width) = model_input(sample.image, config)
anchors = anchors_for_config(config, x.shape[:2])
per_level = [(-(-rows // config.RPN_ANCHOR_STRIDE)) * (-(-cols // config.RPN_ANCHOR_STRIDE))
             * len(config.RPN_ANCHOR_RATIOS) for rows, cols in feature_shapes(x.shape[:2], config.BACKBONE_STRIDES)]
assert sum(per_level) == len(anchors)
print(f"backbone {config.BACKBONE}, input {x.shape}, {len(anchors)} anchors")
for level, (scale, stride, count) in enumerate(zip(config.RPN_ANCHOR_SCALES, config.BACKBONE_STRIDES, per_level)):
    print(f"  P{level + 2}: stride {stride:2d}, scale {scale:3d} px, {count:5d} anchors")

def draw_boxes(ax, boxes, colour, width=1.0):
    for y1, x1, y2, x2 in boxes:
        ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=width))

fig, ax = plt.subplots(figsize=(6, 6))
ax.imshow(sample.image)
start, centre = 0, np.array([height / 2, width / 2])
for count, colour in zip(per_level, ("yellow", "cyan", "magenta", "lime", "orange")):
    level = anchors[start:start + count]
    middle = (level[:, :2] + level[:, 2:]) / 2
    nearest = np.linalg.norm(middle - centre, axis=1)
    draw_boxes(ax, level[nearest == nearest.min()], colour)  # every ratio of the cell nearest the centre
    start += count
ax.set_title("the anchors of the centre cell, one colour per level")
ax.axis("off")
plt.show()'''),
    ("markdown", """\
## RPN proposals

The RPN scores every anchor (nucleus or not) and refines its box; the proposal layer keeps the
best, decodes and clips them and suppresses overlaps (NMS)."""),
    ("code", '''\
from keras import ops

model = mrcnn.model
features = model.backbone(x[None], training=False)  # P2..P6
_, rpn_probs, rpn_deltas = model.rpn_head(features)
size = np.array(x.shape[:2], np.int32)
proposals = ops.convert_to_numpy(model.inference_proposals([rpn_probs, rpn_deltas, anchors, size]))[0]
proposals = proposals[proposals[:, 2] > proposals[:, 0]]  # rows past the last proposal are zero padding
rpn_scores = ops.convert_to_numpy(rpn_probs)[0, :, 1]
print(f"{len(anchors)} anchors, {int((rpn_scores > 0.5).sum())} scored nucleus > 0.5; "
      f"{len(proposals)} proposals after refinement and NMS")
assert len(proposals) > 0
fig, axes = plt.subplots(1, 2, figsize=(12, 6))
for ax, boxes, title in ((axes[0], anchors[np.argsort(-rpn_scores)[:60]], "the 60 best anchors, as placed"),
                         (axes[1], proposals[:60], "the 60 best proposals, refined, after NMS")):
    ax.imshow(sample.image)
    draw_boxes(ax, boxes, "yellow")
    ax.set_title(title)
    ax.axis("off")
plt.show()'''),
    ("markdown", """\
## Detections and masks

The box head classifies each proposal and refines its box again; the detection layer keeps the
confident ones (after per-class NMS) and the mask head predicts a small probability mask
(`MASK_SHAPE`) per detection, pasted into the image at its box."""),
    ("code", '''\
detections = mrcnn.detect(sample.image)  # boxes, class_ids, scores, masks [D, 28, 28], image_shape
scores = detections["scores"]
print(f"{len(scores)} detections (DETECTION_MIN_CONFIDENCE {config.DETECTION_MIN_CONFIDENCE}), "
      f"scores {scores.min():.2f} .. {scores.max():.2f}; {sample.labels.max()} true nuclei")
assert len(scores) > 0
labels, label_scores = mrcnn.predict(sample.image)  # masks pasted, overlaps to the higher score
fig, axes = plt.subplots(1, 2, figsize=(12, 6))
axes[0].imshow(sample.image)
draw_boxes(axes[0], detections["boxes"], "lime")
axes[0].set_title("detection boxes")
axes[1].imshow(draw_outlines(sample.image, labels))
axes[1].set_title(f"masks pasted: {labels.max()} nuclei")
for ax in axes:
    ax.axis("off")
plt.show()
fig, axes = plt.subplots(1, 8, figsize=(16, 2.4))
for ax, mask, score in zip(axes, detections["masks"], scores):
    ax.imshow(mask, vmin=0, vmax=1, cmap="magma")
    ax.set_title(f"{score:.2f}", fontsize=9)
    ax.axis("off")
plt.suptitle("mask head outputs of the best detections (probabilities over each box)")
plt.show()'''),
    ("markdown", """\
## U-Net: probability maps and watershed seeds

The U-Net gives three maps per pixel (softmax): nucleus body, nucleus border, background. Its
decode grows the nuclei from seeds (connected regions where P(body) is high) over the
foreground with a watershed (`unet.instances.probabilities_to_labels`)."""),
    ("code", '''\
from scipy import ndimage

from tools.inference.tiling import pad_to_multiple
from unet.predictor import UNetPredictor

unet = UNetPredictor.from_path(WEIGHTS_DIR / "unet.weights.h5")
padded, (h, w) = pad_to_multiple(unet.prepare(sample.image), unet.config.multiple)
probabilities = unet.predict_batch(padded[None])[0, :h, :w]
body, border, background = np.moveaxis(probabilities, -1, 0)
c = unet.config
foreground = (1 - background) > c.foreground_threshold
seeds, n_seeds = ndimage.label((body > c.seed_threshold) & foreground)
unet_labels, _ = unet.decode(probabilities)
print(f"{n_seeds} seeds (P(body) > {c.seed_threshold}) -> {unet_labels.max()} nuclei after the watershed")
assert unet_labels.max() > 0 and np.allclose(probabilities.sum(-1), 1, atol=1e-4)
fig, axes = plt.subplots(1, 5, figsize=(20, 4))
for ax, (title, picture) in zip(axes, (("P(body)", body), ("P(border)", border), ("P(background)", background),
                                       (f"seeds: {n_seeds}", seeds), (f"watershed: {unet_labels.max()} nuclei",
                                                                      draw_outlines(sample.image, unet_labels)))):
    ax.imshow(picture, cmap="nipy_spectral" if title.startswith("seeds") else "viridis", interpolation="nearest")
    ax.set_title(title)
    ax.axis("off")
plt.show()'''),
    ("markdown", """\
## Both pipelines against the truth

`tools.inference.load_model` is the Python API: the same pipeline the commands run, with the
tuned parameters shipped beside the weights (post-processing, thresholds). Green outlines:
nuclei found; red: invented; yellow: missed (IoU 0.5)."""),
    ("code", '''\
from tools.inference import load_model
from tools.inference.contact_sheet import render_errors
from tools.kaggle.scoring import evaluate_labels

fig, axes = plt.subplots(1, 2, figsize=(12, 6))
scores = {}
for ax, name in zip(axes, ("unet", "mrcnn")):
    predicted, _ = load_model(WEIGHTS_DIR / f"{name}.weights.h5").predict(sample.image)
    scores[name] = evaluate_labels({IMAGE_ID: predicted}, {IMAGE_ID: sample.labels})["score"]
    ax.imshow(render_errors(sample.image, sample.labels, predicted))
    ax.set_title(f"{name}: {predicted.max()} nuclei, DSB score {scores[name]:.3f}")
    ax.axis("off")
plt.show()
print(scores)
assert all(score > 0.2 for score in scores.values())'''),
]

TRAIN_AND_SUBMIT = [
    ("markdown", """\
# Train, predict, submit, score

A tiny U-Net trained for 60 steps on five bundled images (seconds on a CPU; it learns a
little), then the whole Kaggle round trip: predict a folder, write the run-length-encoded
submission CSV, score it with the DSB metric (`tools.kaggle`). Much the same with the commands:

```bash
python -m tools.train unet --data DIR --out RUN --depth 2 --base-filters 8 --max-filters 16 \\
    --batch-size 8 --learning-rate 0.005 --steps-per-epoch 30 --epochs 2 --val-fraction 0.25 --augment light
python -m tools.predict --weights RUN/model.weights.h5 --images DIR --out OUT
python -m tools.evaluate OUT/submission.csv --labels DIR
```"""),
    ("code", SETUP + '''

import os
import shutil
import tempfile

# everything goes into a temporary folder (or NUCLEI_EXAMPLES_OUT)
WORK = Path(os.environ.get("NUCLEI_EXAMPLES_OUT") or tempfile.mkdtemp(prefix="nuclei-example-"))
DATA = WORK / "data"
SMALL = ["0a7d30b252359a10fd298b638b90cb9ada3acced4e0c0e5a3692013f432ee4e9",  # fluorescence 256 x 256
         "309ba76b12ecb5ce28b99f3445b2b5dc54c0564c3c0e24c17e4c89a94a5d0535",  # fluorescence 256 x 256
         "dae976f161fe42dc58dee87d4bf2eb9f65736597cab0114138641b2a39a5c42b",  # fluorescence 256 x 256
         "709e094e39629a9ca21e187f007b331074694e443db40289447c1111f7e267e7",  # histology 256 x 320
         "92f31f591929a30e4309ab75185c96ff4314ce0a7ead2ed2c2171897ad1da0c7"]  # histology 256 x 320
for image_id in SMALL:
    shutil.copytree(SAMPLE / image_id, DATA / image_id, dirs_exist_ok=True)
print(WORK)'''),
    ("markdown", """\
## Train

The engine (`tools.engine.trainer.train`) is what `python -m tools.train` runs: a validation
split stratified by image type (`split.json`), augmented crops drawn by the balanced sampler,
checkpoints, logs, and at the end the exported `model.weights.h5` + `model.json` scored on the
validation images."""),
    ("code", '''\
from tools.engine.tasks import UNetTask
from tools.engine.trainer import TrainOptions, train
from unet.config import UNetConfig

RUN = WORK / "run"
shutil.rmtree(RUN, ignore_errors=True)  # a run folder holds one run (or pass resume=True)
config = UNetConfig(depth=2, base_filters=8, max_filters=16, bottleneck_dilations=(1,), crop_size=64, batch_size=8,
                    learning_rate=0.005)
task = UNetTask(config, steps_per_epoch=30, augment="light")
options = TrainOptions(data=[str(DATA)], val_fraction=0.25, epochs=2)
status = train(task, options, RUN)
assert status == 0 and (RUN / "model.weights.h5").is_file()
print(sorted(path.name for path in RUN.iterdir()))
print((RUN / "log.csv").read_text())'''),
    ("markdown", """\
## Predict and write the submission

`load_model` tells a U-Net from a Mask R-CNN by the JSON beside the weights;
`tools.inference.folder.predict_folder` writes `submission.csv` (Kaggle's `ImageId,EncodedPixels`,
no overlapping nuclei), a 16-bit label image and an overlay per image."""),
    ("code", '''\
from tools.inference import load_model
from tools.inference.folder import predict_folder

counts = predict_folder(load_model(RUN / "model.weights.h5"), DATA, WORK / "tiny")
print("nuclei per image:", counts)
print("\\n".join(line[:100] for line in (WORK / "tiny" / "submission.csv").read_text().splitlines()[:4]))
assert set(counts) == set(SMALL)'''),
    ("markdown", """\
## Score

`tools.kaggle.scoring.evaluate_submission` scores a submission as Kaggle did (mean over IoU
thresholds 0.5 .. 0.95 of TP / (TP + FP + FN)), against a solution CSV or a labelled folder. For
scale, the shipped U-Net on the same five images (it never saw a bundled image in training)."""),
    ("code", '''\
from tools.kaggle.scoring import evaluate_submission, format_report

tiny = evaluate_submission(WORK / "tiny" / "submission.csv", labels_dir=DATA)
print(format_report(tiny, worst=3))
predict_folder(load_model(), DATA, WORK / "shipped")
shipped = evaluate_submission(WORK / "shipped" / "submission.csv", labels_dir=DATA)
print(f"DSB score on the five images: tiny U-Net {tiny['score']:.4f}, shipped U-Net {shipped['score']:.4f}")
assert 0 <= tiny["score"] <= 1 and shipped["score"] > max(0.3, tiny["score"])'''),
    ("code", '''\
from PIL import Image

fig, axes = plt.subplots(1, 2, figsize=(12, 6))
for ax, name in zip(axes, ("tiny", "shipped")):
    ax.imshow(Image.open(WORK / name / "overlays" / f"{SMALL[3]}.png"))
    ax.set_title(f"{name} U-Net: {SMALL[3][:8]}")
    ax.axis("off")
plt.show()'''),
]

NOTEBOOKS = {"inspect_data.ipynb": INSPECT_DATA, "inspect_model.ipynb": INSPECT_MODEL,
             "train_and_submit.ipynb": TRAIN_AND_SUBMIT}


def build(name: str):
    """The notebook ``name`` (a key of NOTEBOOKS) as an nbformat v4 node, without outputs."""
    import nbformat

    cells = []
    for index, (kind, source) in enumerate(NOTEBOOKS[name]):
        cell = (nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell)(source)
        cell["id"] = f"{Path(name).stem}-{index}"  # stable ids: regenerating changes nothing
        cells.append(cell)
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                         "language_info": {"name": "python"}}
    return notebook


def main(folder: Path = HERE) -> list[Path]:
    """Write every notebook into ``folder``; return their paths."""
    import nbformat

    paths = []
    for name in NOTEBOOKS:
        path = folder / name
        nbformat.write(build(name), str(path))
        paths.append(path)
    return paths


if __name__ == "__main__":
    for written in main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(written)
