"""Score a Kaggle DSB 2018 submission against the answers, as Kaggle did.

Usage::

    python -m tools.evaluate SUBMISSION.csv --solution SOLUTION.csv [--json OUT.json]
    python -m tools.evaluate SUBMISSION.csv --labels DIR [--json OUT.json]

``--solution`` is Kaggle's answer key (``ImageId,EncodedPixels,Height,Width[,Usage]``);
``--labels`` is a data folder in Kaggle's layout (``<id>/images``, ``<id>/masks``) read
with preprocessing.dataset.load_dataset, which also gives per-type means.

Prints the per-threshold table, the worst images, per-type means, and last the line
``score: 0.xxxx``. Rules: an image id in the submission but not in the answers is an
error; an image in the answers but not in the submission scores 0 (with a warning);
malformed RLE, runs outside the image and overlapping predicted nuclei are errors.
User errors exit with status 2 and a one-line message on stderr.

Other tools (training's validation score, tuning) call :func:`evaluate_labels` with
label images directly.
"""

import argparse
import json
import sys
from pathlib import Path

from preprocessing.errors import NucleiError
from tools.kaggle.metric import THRESHOLDS, dataset_score
from tools.kaggle.submission import read_solution, read_submission, rles_to_labels, write_text_atomically

WORST_IMAGES_SHOWN = 10


def _check_known_ids(pred_ids, true_ids, source=None):
    """Raise if predictions name images the answers do not hold."""
    unknown = sorted(set(pred_ids) - set(true_ids))
    if unknown:
        shown = ", ".join(unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        where = f"{source}: " if source else ""
        raise NucleiError(f"{where}{len(unknown)} image id(s) are not in the answers: {shown}")


def evaluate_labels(pred, true, types=None):
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


def score_predictor(predictor, samples):
    """DSB score of ``predictor.predict(image) -> (labels, scores)`` on labelled samples
    (full images); the dict of tools.kaggle.metric.dataset_score with per-type means."""
    pairs = [(sample.image_id, sample.labels, predictor.predict(sample.image)[0]) for sample in samples]
    return dataset_score(pairs, image_types={s.image_id: s.image_type for s in samples})


def _solution_truth(solution_path):
    """Yield (image_id, true labels int32 [H, W]) from a Kaggle solution CSV, and warnings."""
    solution = read_solution(solution_path)
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

    return shapes, labels(), None, warnings


def _folder_truth(labels_dir):
    """(shapes, (image_id, labels) iterable, types, warnings) from a Kaggle-layout folder."""
    from preprocessing.dataset import load_dataset  # imports PIL; only this path needs it

    dataset = load_dataset(labels_dir)
    samples = [s for s in dataset.samples if s.labels is not None]
    if not samples:
        raise NucleiError("no image has masks/ or labels/, so there is nothing to score against", labels_dir)
    shapes = {s.image_id: s.labels.shape for s in samples}
    types = {s.image_id: s.image_type for s in samples}
    return shapes, ((s.image_id, s.labels) for s in samples), types, []


def evaluate_submission(submission_path, solution_path=None, labels_dir=None):
    """Score a submission CSV against a solution CSV or a labelled data folder.

    Returns the dict of :func:`tools.kaggle.metric.dataset_score` plus 'warnings' (list of
    text). Raises NucleiError for every problem with the files.
    """
    if (solution_path is None) == (labels_dir is None):
        raise NucleiError("give exactly one of a solution CSV or a labels folder")
    submission = read_submission(submission_path)
    if solution_path is not None:
        shapes, truth, types, warnings = _solution_truth(solution_path)
        answers = solution_path
    else:
        shapes, truth, types, warnings = _folder_truth(labels_dir)
        answers = labels_dir
    _check_known_ids(submission, shapes, f"{submission_path} (answers: {answers})")

    def triples():
        for image_id, true_labels in truth:
            rles = submission.get(image_id)
            pred_labels = None if rles is None else rles_to_labels(
                rles, true_labels.shape, f"{submission_path}, image {image_id}")
            yield image_id, true_labels, pred_labels

    result = dataset_score(triples(), types)
    if result["missing"]:
        missing = result["missing"]
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        warnings.append(f"{len(missing)} image(s) in the answers are missing from {submission_path} "
                        f"and score 0: {shown}")
    result["warnings"] = warnings
    return result


def format_report(result, worst=WORST_IMAGES_SHOWN):
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
    lines += ["", f"score: {result['score']:.4f}"]
    return "\n".join(lines)


def result_json(result):
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
        "warnings": result.get("warnings", []),
    }
    return json.dumps(document, indent=2) + "\n"


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m tools.evaluate",
        description="Score a DSB 2018 submission CSV with Kaggle's metric "
                    "(mean over IoU thresholds 0.50..0.95 of TP/(TP+FP+FN)).")
    parser.add_argument("submission", type=Path, help="submission CSV: ImageId,EncodedPixels")
    answers = parser.add_mutually_exclusive_group(required=True)
    answers.add_argument("--solution", type=Path,
                         help="Kaggle solution CSV: ImageId,EncodedPixels,Height,Width[,Usage]")
    answers.add_argument("--labels", type=Path, metavar="DIR",
                         help="data folder in Kaggle's layout (<id>/images, <id>/masks)")
    parser.add_argument("--json", type=Path, metavar="OUT.json", help="also write the scores as JSON")
    parser.add_argument("--worst", type=int, default=WORST_IMAGES_SHOWN, metavar="N",
                        help=f"how many of the lowest-scoring images to list (default {WORST_IMAGES_SHOWN})")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        result = evaluate_submission(args.submission, args.solution, args.labels)
        for warning in result["warnings"]:
            print(f"warning: {warning}", file=sys.stderr)
        if args.json is not None:
            write_text_atomically(args.json, result_json(result))
        print(format_report(result, max(args.worst, 0)))
    except NucleiError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # unreadable or unwritable file
        print(f"error: {error.filename or ''}: {error.strerror or error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
