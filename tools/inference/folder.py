"""Predict a folder of images: submission CSV, label images, overlays, and a score when labels exist."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from preprocessing.errors import NucleiError


def list_images(images_dir: str | Path) -> list[tuple[str, Path]]:
    """(image id, path) of every image under ``images_dir``, ids checked before any prediction."""
    from preprocessing.dataset import iter_images

    items = list(iter_images(images_dir))
    if not items:
        raise NucleiError("no images found", images_dir)
    seen: dict[str, Path] = {}
    for image_id, path in items:
        if image_id in seen:
            raise NucleiError(f"two images have the id {image_id!r}: {seen[image_id]} and {path}", images_dir)
        if "," in image_id or "\n" in image_id or '"' in image_id:
            raise NucleiError("an image id with a comma, quote or newline cannot go into a submission CSV", path)
        seen[image_id] = path
    return items


def predict_folder(predictor: Any, images_dir: str | Path, out_dir: str | Path, overlays: bool = True,
                   label_images: bool = True, progress: bool = True,
                   keep_labels: dict[str, Any] | None = None) -> dict[str, int]:
    """Predict every image under ``images_dir``; write outputs; return {id: nucleus count}.

    ``predictor`` is anything with ``predict(image) -> (labels, scores)`` (an
    InferencePipeline). ``keep_labels``: optional dict filled with {id: labels} for the
    ids it already holds as keys (for scoring). Writes OUT/submission.csv, OUT/labels/<id>.png
    (16-bit), OUT/overlays/<id>.png, each atomically.
    """
    from preprocessing.dataset import read_image, write_png
    from tools.inference.overlay import draw_outlines
    from tools.kaggle.submission import write_submission

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NucleiError("--out is a file, expected a folder", out_dir)
    items = list_images(images_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for sub, wanted in (("labels", label_images), ("overlays", overlays)):
            if wanted:
                (out_dir / sub).mkdir(exist_ok=True)
    except OSError as error:
        raise NucleiError(f"cannot create the output folder: {error.strerror or error}", out_dir) from None
    counts: dict[str, int] = {}
    iterator = items
    if progress:
        from tqdm import tqdm

        iterator = tqdm(items, desc="predicting", unit="img", disable=None)

    def predictions():
        for image_id, path in iterator:
            image = read_image(path)
            labels, _ = predictor.predict(image)
            counts[image_id] = int(labels.max())
            if keep_labels is not None and image_id in keep_labels:
                keep_labels[image_id] = labels
            if label_images:
                write_png(out_dir / "labels" / f"{image_id}.png", labels.astype(np.uint16))
            if overlays:
                write_png(out_dir / "overlays" / f"{image_id}.png", draw_outlines(image, labels))
            yield image_id, labels

    write_submission(out_dir / "submission.csv", predictions())
    return counts


def report_against_truth(truth: dict[str, Any], predicted: dict[str, Any], out_dir: str | Path,
                         sheet_images: int = 24) -> dict[str, Any]:
    """Score the predicted images that have true masks; write score.json and the contact sheet."""
    from preprocessing.files import save_json_atomic
    from tools.inference.contact_sheet import write_contact_sheet
    from tools.kaggle.scoring import evaluate_labels

    out_dir = Path(out_dir)
    scored = {image_id: labels for image_id, labels in predicted.items() if labels is not None}
    if not scored:
        raise NucleiError("none of the predicted images has true masks in --labels")
    true = {image_id: truth[image_id].labels for image_id in scored}
    result = evaluate_labels(scored, true, {image_id: truth[image_id].image_type for image_id in scored})
    save_json_atomic(out_dir / "score.json", {"score": result["score"], "per_type": result["per_type"],
                                              "per_image": result["per_image"]})
    samples = [truth[image_id] for image_id in scored]
    write_contact_sheet(out_dir, samples, scored, max_images=sheet_images)
    return result
