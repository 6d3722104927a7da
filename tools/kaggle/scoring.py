"""Scoring as Kaggle scored DSB 2018: submissions against answers, predictions against labels.

:func:`evaluate_submission` reads a submission CSV and a solution CSV (Kaggle's answer key)
or a labelled folder; :func:`evaluate_labels` scores label images directly;
:func:`score_pipeline` runs a predictor over labelled samples and scores it (training's
validation, tuning). Rules: an image id in the submission but not in the answers is an
error; an image in the answers but not in the submission scores 0 (with a warning);
malformed RLE, runs outside the image and overlapping predicted nuclei are errors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from preprocessing.errors import NucleiError
from tools.kaggle.metric import THRESHOLDS, dataset_score
from tools.kaggle.submission import read_solution, read_submission, rles_to_labels

WORST_IMAGES_SHOWN = 10


def _check_known_ids(pred_ids: Iterable[str], true_ids: Iterable[str], source: str | None = None) -> None:
    """Raise if predictions name images the answers do not hold."""
    unknown = sorted(set(pred_ids) - set(true_ids))
    if unknown:
        shown = ", ".join(unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        where = f"{source}: " if source else ""
        raise NucleiError(f"{where}{len(unknown)} image id(s) are not in the answers: {shown}")


def evaluate_labels(pred: dict, true: dict, types: dict | None = None) -> dict[str, Any]:
    """Score predicted label images against true ones (Kaggle's DSB 2018 metric).

    Args:
        pred: dict image_id -> int [H, W] predicted labels (0 = background).
        true: dict image_id -> int [H, W] true labels, same shapes as in ``pred``.
        types: optional dict image_id -> image type, for per-type means.

    Returns:
        the dict of :func:`tools.kaggle.metric.dataset_score` (score, per_threshold,
        per_image, per_type, tp/fp/fn, missing), images in the order of ``true``.
        Images in ``true`` but not in ``pred`` score 0 and are listed in 'missing'.

    Raises:
        NucleiError: an id in ``pred`` that ``true`` lacks, or mismatched shapes.
    """
    _check_known_ids(pred, true)
    return dataset_score(((image_id, labels, pred.get(image_id)) for image_id, labels in true.items()),
                         types)


def score_pipeline(predictor: Any, samples: Iterable, progress: bool = False) -> dict[str, Any]:
    """DSB score of ``predictor.predict(image) -> (labels, scores)`` on labelled samples
    (full images); the dict of :func:`tools.kaggle.metric.dataset_score` with per-type means."""
    from tools.progress import progress as progress_bar

    samples = list(samples)
    iterator = progress_bar(samples, desc="scoring") if progress else samples
    pairs = [(sample.image_id, sample.labels, predictor.predict(sample.image)[0]) for sample in iterator]
    return dataset_score(pairs, image_types={s.image_id: s.image_type for s in samples})


def _solution_truth(solution_path):
    """Yield (image_id, true labels int32 [H, W]) from a Kaggle solution CSV, and warnings."""
    ignored: set[str] = set()
    solution = read_solution(solution_path, ignored)
    shapes = {image_id: entry.shape for image_id, entry in solution.items()}
    warnings = []

    def labels():
        for image_id, entry in solution.items():
            source = f"{solution_path}, image {image_id}"
            try:
                yield image_id, rles_to_labels(entry.rles, entry.shape, source)
            except NucleiError as error:
                if "overlap" not in str(error):
                    raise
                # Some answer keys have masks overlapping by a pixel or two: the
                # earlier mask keeps the pixel, as preprocessing.dataset does.
                warnings.append(f"{source}: true masks overlap; shared pixels kept by the earlier mask")
                yield image_id, rles_to_labels(entry.rles, entry.shape, source, overlap="first")

    return shapes, labels(), None, warnings, ignored


def _folder_truth(labels_dir):
    """(shapes, (image_id, labels) iterable, types, warnings) from a Kaggle-layout folder."""
    from preprocessing.dataset import load_dataset  # imports PIL; only this path needs it

    dataset = load_dataset(labels_dir)
    samples = [s for s in dataset.samples if s.labels is not None]
    if not samples:
        raise NucleiError("no image has masks/ or labels/, so there is nothing to score against", labels_dir)
    shapes = {s.image_id: s.labels.shape for s in samples}
    types = {s.image_id: s.image_type for s in samples}
    return shapes, ((s.image_id, s.labels) for s in samples), types, [], set()


def evaluate_submission(submission_path: str | Path, solution_path: str | Path | None = None,
                        labels_dir: str | Path | None = None) -> dict[str, Any]:
    """Score a submission CSV against a solution CSV or a labelled data folder.

    Returns the dict of :func:`tools.kaggle.metric.dataset_score` plus 'warnings' (list of
    text). Raises NucleiError for every problem with the files.
    """
    if (solution_path is None) == (labels_dir is None):
        raise NucleiError("give exactly one of a solution CSV or a labels folder")
    submission = read_submission(submission_path)
    if solution_path is not None:
        shapes, truth, types, warnings, ignored = _solution_truth(solution_path)
        answers = solution_path
    else:
        shapes, truth, types, warnings, ignored = _folder_truth(labels_dir)
        answers = labels_dir
    # Kaggle's scorer skips the images its answer key marks Usage=Ignored (stage 2's decoys)
    submission = {image_id: rles for image_id, rles in submission.items() if image_id not in ignored}
    _check_known_ids(submission, shapes, f"{submission_path} (answers: {answers})")

    def triples():
        for image_id, true_labels in truth:
            rles = submission.get(image_id)
            pred_labels = None if rles is None else rles_to_labels(
                rles, true_labels.shape, f"{submission_path}, image {image_id}")
            yield image_id, true_labels, pred_labels

    from tools.progress import progress as progress_bar

    result = dataset_score(progress_bar(triples(), desc="scoring", total=len(shapes)), types)
    if result["missing"]:
        missing = result["missing"]
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        warnings.append(f"{len(missing)} image(s) in the answers are missing from {submission_path} "
                        f"and score 0: {shown}")
    result["warnings"] = warnings
    return result


def add_domains(result: dict[str, Any], domains: dict[str, str]) -> dict[str, Any]:
    """Add per-domain figures to a dataset_score result (in place, and returned).

    Args:
        result: dict of :func:`tools.kaggle.metric.dataset_score`.
        domains: {image_id: acquisition domain} (preprocessing.domains); images it lacks
            count under 'unassigned'.

    Adds 'per_domain': {domain: {'images', 'score', 'n_true', 'n_pred'}} (sorted by name)
    and 'balanced_score': the mean of the per-domain scores, each domain weighing the same.
    """
    rows: dict[str, dict[str, Any]] = {}
    for row in result["per_image"]:
        name = domains.get(str(row["id"]), "unassigned")
        entry = rows.setdefault(name, {"images": 0, "scores": [], "n_true": 0, "n_pred": 0})
        entry["images"] += 1
        entry["scores"].append(row["score"])
        entry["n_true"] += int(row["n_true"])
        entry["n_pred"] += int(row["n_pred"])
    per_domain = {name: {"images": e["images"], "score": sum(e["scores"]) / len(e["scores"]),
                         "n_true": e["n_true"], "n_pred": e["n_pred"]} for name, e in sorted(rows.items())}
    result["per_domain"] = per_domain
    result["balanced_score"] = (sum(r["score"] for r in per_domain.values()) / len(per_domain)) if per_domain else 0.0
    return result


def format_report(result: dict[str, Any], worst: int = WORST_IMAGES_SHOWN) -> str:
    """The printed report (text) of a dataset_score result; its last line is 'score: x.xxxx'."""
    per_image = result["per_image"]
    lines = [f"images: {len(per_image)} ({len(result['missing'])} missing from the submission), "
             f"true nuclei: {sum(r['n_true'] for r in per_image)}, "
             f"predicted nuclei: {sum(r['n_pred'] for r in per_image)}",
             "",
             "threshold  precision       TP       FP       FN"]
    for k, threshold in enumerate(THRESHOLDS):
        lines.append(f"     {threshold:.2f}     {result['per_threshold'][k]:.4f}  {result['tp'][k]:7d}  "
                     f"{result['fp'][k]:7d}  {result['fn'][k]:7d}")
    ranked = sorted(per_image, key=lambda r: (r["score"], str(r["id"])))[:worst]
    lines += ["", f"worst {len(ranked)} images:", "   score  n_true  n_pred  type          id"]
    for row in ranked:
        lines.append(f"  {row['score']:.4f}  {row['n_true']:6d}  {row['n_pred']:6d}  "
                     f"{str(row['type'] or '-'):12s}  {row['id']}")
    if result["per_type"]:
        lines += ["", "per type:"]
        for image_type, score in result["per_type"].items():
            count = sum(1 for r in per_image if r["type"] == image_type)
            lines.append(f"  {image_type:12s}  {count:4d} images  {score:.4f}")
    if result.get("per_domain"):
        lines += ["", "per domain:                  images   score  true nuclei  predicted"]
        for name, row in result["per_domain"].items():
            lines.append(f"  {name:26s} {row['images']:6d}  {row['score']:.4f}  {row['n_true']:11d}  {row['n_pred']:9d}")
        lines.append(f"domain-balanced score: {result['balanced_score']:.4f}")
    lines += ["", f"score: {result['score']:.4f}"]
    return "\n".join(lines)


def result_json(result: dict[str, Any]) -> str:
    """The JSON document written by --json (text)."""
    document = {
        "score": result["score"],
        "per_threshold": result["per_threshold"],
        "thresholds": THRESHOLDS.tolist(),
        "tp": result["tp"],
        "fp": result["fp"],
        "fn": result["fn"],
        "per_image": result["per_image"],
        "per_type": result["per_type"],
        "missing": result["missing"],
        "per_domain": result.get("per_domain"),
        "balanced_score": result.get("balanced_score"),
        "warnings": result.get("warnings", []),
    }
    return json.dumps(document, indent=2) + "\n"
