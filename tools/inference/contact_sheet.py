"""Contact sheet of a validation run: where the model finds nuclei, invents them, misses them.

For each image with true labels, at IoU > 0.5 (the first DSB threshold):
    green outline   predicted nucleus that matches a true one (true positive)
    red fill+edge   predicted nucleus that matches none (false positive)
    yellow fill     true nucleus no prediction matches (miss)

Writes OUTDIR/contact/<id>.png (full size), OUTDIR/contact_sheet.png (thumbnails in a
grid, worst images first) and OUTDIR/contact_sheet.html (the per-image pictures with
their scores and counts).
"""

import html

import numpy as np
from PIL import Image, ImageDraw
from skimage.segmentation import find_boundaries

from preprocessing.dataset import write_png
from tools.kaggle.metric import image_score, iou_matrix

TP_COLOUR = np.array([0, 230, 0], np.uint8)
FP_COLOUR = np.array([255, 40, 40], np.uint8)
MISS_COLOUR = np.array([255, 220, 0], np.uint8)
MATCH_IOU = 0.5


def classify_instances(true_labels, pred_labels, iou=MATCH_IOU):
    """Which nuclei match at IoU > ``iou``.

    Returns (pred_matched bool [max pred id + 1], true_matched bool [max true id + 1]),
    indexed by label id (index 0 unused).
    """
    true_ids = np.unique(true_labels)
    true_ids = true_ids[true_ids > 0]
    pred_ids = np.unique(pred_labels)
    pred_ids = pred_ids[pred_ids > 0]
    matrix = iou_matrix(true_labels, pred_labels) if true_ids.size and pred_ids.size else \
        np.zeros((true_ids.size, pred_ids.size))
    pred_matched = np.zeros(int(pred_labels.max()) + 1, bool)
    true_matched = np.zeros(int(true_labels.max()) + 1, bool)
    pred_matched[pred_ids[(matrix > iou).any(axis=0)]] = True
    true_matched[true_ids[(matrix > iou).any(axis=1)]] = True
    return pred_matched, true_matched


def render_errors(image, true_labels, pred_labels):
    """uint8 [H, W, 3] picture: TP outlines green, FP red, misses yellow (see module docstring)."""
    pred_matched, true_matched = classify_instances(true_labels, pred_labels)
    out = image.astype(np.float32)
    missed = (true_labels > 0) & ~true_matched[true_labels]
    false_pos = (pred_labels > 0) & ~pred_matched[pred_labels]
    out[missed] = 0.5 * out[missed] + 0.5 * MISS_COLOUR
    out[false_pos] = 0.6 * out[false_pos] + 0.4 * FP_COLOUR
    out = out.astype(np.uint8)
    edges = find_boundaries(pred_labels, mode="inner")
    tp_edges = edges & pred_matched[pred_labels]
    out[tp_edges] = TP_COLOUR
    out[edges & ~tp_edges] = FP_COLOUR
    return out


def _thumbnail(picture, size, caption):
    thumb = Image.fromarray(picture)
    thumb.thumbnail((size, size))
    cell = Image.new("RGB", (size, size + 14), (32, 32, 32))
    cell.paste(thumb, ((size - thumb.width) // 2, 14 + (size - thumb.height) // 2))
    ImageDraw.Draw(cell).text((2, 1), caption, fill=(255, 255, 255))
    return cell


def write_contact_sheet(out_dir, samples, predictions, max_images=24, thumb_size=192, columns=6):
    """Write the contact sheet for ``samples`` (with .image, .labels, .image_id) and their predictions.

    Args:
        out_dir: pathlib.Path output folder.
        samples: list of preprocessing.dataset.Sample with labels.
        predictions: dict image_id -> predicted labels int [H, W].
        max_images: the worst-scoring this many images are shown.

    Returns:
        list of (image_id, score) shown, worst first.
    """
    rows = []
    for sample in samples:
        pred = predictions[sample.image_id]
        result = image_score(sample.labels, pred)
        rows.append((result["score"], sample, pred, result))
    rows.sort(key=lambda row: (row[0], row[1].image_id))
    rows = rows[:max_images]
    (out_dir / "contact").mkdir(parents=True, exist_ok=True)
    cells, entries = [], []
    for score, sample, pred, result in rows:
        picture = render_errors(sample.image, sample.labels, pred)
        write_png(out_dir / "contact" / f"{sample.image_id}.png", picture)
        tp, fp, fn = int(result["tp"][0]), int(result["fp"][0]), int(result["fn"][0])
        cells.append(_thumbnail(picture, thumb_size, f"{score:.3f} {sample.image_id[:10]}"))
        entries.append(
            f'<figure><img src="contact/{html.escape(sample.image_id)}.png" loading="lazy">'
            f"<figcaption>{html.escape(sample.image_id)}<br>score {score:.4f} &middot; {sample.image_type}"
            f" &middot; TP {tp} FP {fp} missed {fn} (IoU&gt;0.5)</figcaption></figure>")
    if cells:
        n_rows = -(-len(cells) // columns)
        sheet = Image.new("RGB", (columns * thumb_size, n_rows * (thumb_size + 14)), (0, 0, 0))
        for k, cell in enumerate(cells):
            sheet.paste(cell, ((k % columns) * thumb_size, (k // columns) * (thumb_size + 14)))
        write_png(out_dir / "contact_sheet.png", np.asarray(sheet))
    page = ("<!doctype html><meta charset=utf-8><title>contact sheet</title>"
            "<style>body{background:#222;color:#ddd;font:13px sans-serif}"
            "figure{display:inline-block;margin:6px;vertical-align:top;max-width:420px}"
            "img{max-width:420px;image-rendering:pixelated}</style>"
            "<h1>Validation images, worst first</h1><p>"
            '<span style="color:#0e0">green outline</span>: true positive; '
            '<span style="color:#f44">red</span>: false positive; '
            '<span style="color:#fd0">yellow</span>: missed nucleus (IoU &gt; 0.5).</p>'
            + "\n".join(entries) + "\n")
    from preprocessing.files import write_text_atomically

    write_text_atomically(out_dir / "contact_sheet.html", page)
    return [(row[1].image_id, row[0]) for row in rows]
