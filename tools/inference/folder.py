"""Predict a folder of images: submission CSV, label images, overlays, and a score when labels exist.

An output folder holds one run only: outputs an earlier run left there (label PNGs and overlays of
images not predicted now, a score and contact sheet this run does not rewrite) are removed,
matched by the names this module writes (:data:`OWN_OUTPUTS`); nothing else in the folder is touched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np

from preprocessing.errors import NucleiError

# what a run writes into OUT, by folder: <id>.png per image; the score report (report_against_truth)
PER_IMAGE_FOLDERS = ("labels", "overlays")
REPORT_FILES = ("score.json", "contact_sheet.html", "contact_sheet.png")
REPORT_FOLDER = "contact"  # contact/<id>.png thumbnails of the contact sheet
OWN_OUTPUTS = tuple(f"{folder}/<id>.png" for folder in PER_IMAGE_FOLDERS + (REPORT_FOLDER,)) + REPORT_FILES


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
    ids it already holds as keys (for scoring; the caller then writes the score report with
    :func:`report_against_truth`). Writes OUT/submission.csv, OUT/labels/<id>.png (16-bit),
    OUT/overlays/<id>.png, each atomically, with a progress bar (``progress``; see
    :mod:`tools.progress`). Then removes what an earlier run left in OUT
    (:func:`remove_stale_outputs`) and says how many files went.
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
                if (out_dir / sub).exists() and not (out_dir / sub).is_dir():
                    raise NucleiError(f"is a file, expected the {sub}/ folder of --out", out_dir / sub)
                (out_dir / sub).mkdir(exist_ok=True)
    except OSError as error:
        raise NucleiError(f"cannot create the output folder: {error.strerror or error}", out_dir) from None
    counts: dict[str, int] = {}
    iterator = items
    if progress:
        from tools.progress import progress as progress_bar

        iterator = progress_bar(items, desc="predicting")

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
    written = {folder: set(counts) if wanted else set()
               for folder, wanted in (("labels", label_images), ("overlays", overlays))}
    removed = remove_stale_outputs(out_dir, written, keep_report=keep_labels is not None,
                                   inputs=[path for _, path in items])
    if removed:
        print(f"removed {len(removed)} file{'s' if len(removed) != 1 else ''} an earlier run left in {out_dir}: "
              f"{_describe(removed, out_dir)}")
    return counts


def _describe(paths: list[Path], out_dir: Path) -> str:
    """'labels/ 2, overlays/ 2, score report 3': where removed files were."""
    where: dict[str, int] = {}
    for path in paths:
        folder = path.parent.relative_to(out_dir).as_posix()
        key = f"{folder}/" if folder in PER_IMAGE_FOLDERS else "score report"
        where[key] = where.get(key, 0) + 1
    return ", ".join(f"{key} {count}" for key, count in where.items())


def remove_stale_outputs(out_dir: str | Path, written: dict[str, set[str]], keep_report: bool = False,
                         inputs: Iterable[Path] = ()) -> list[Path]:
    """Remove this module's outputs in ``out_dir`` that the run just made did not write; return them.

    Args:
        written: {folder in PER_IMAGE_FOLDERS: ids this run wrote there}; every other ``<id>.png``
            directly in that folder is an earlier run's (a folder left out is left alone).
        keep_report: the score report (REPORT_FILES, contact/) is about to be rewritten: keep it
            for :func:`report_against_truth`; otherwise it describes an earlier run and goes.
        inputs: image paths of this run, never removed (an --out that overlaps --images).

    Only files named as this module names them go: ``<folder>/<id>.png``, the report's files;
    other files, sub-folders and hidden files stay.
    """
    out_dir = Path(out_dir)
    protected = {Path(path).resolve() for path in inputs}
    stale = []
    for folder, ids in written.items():
        stale += [path for path in _own_pngs(out_dir / folder) if path.stem not in ids]
    if not keep_report:
        stale += [out_dir / name for name in REPORT_FILES if (out_dir / name).is_file()]
        stale += _own_pngs(out_dir / REPORT_FOLDER)
    removed = []
    for path in stale:
        if path.resolve() in protected:
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as error:
            raise NucleiError(f"cannot remove an earlier run's output: {error.strerror or error}", path) from None
        removed.append(path)
    return removed


def _own_pngs(folder: Path) -> list[Path]:
    """``<id>.png`` files directly in ``folder`` (not hidden, not links), sorted; [] if no folder."""
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir()
                  if path.suffix == ".png" and not path.name.startswith(".") and path.is_file()
                  and not path.is_symlink())


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
    for path in _own_pngs(out_dir / REPORT_FOLDER):  # the sheet is rewritten whole: no thumbnail of an earlier run
        path.unlink(missing_ok=True)
    write_contact_sheet(out_dir, samples, scored, max_images=sheet_images)
    return result
