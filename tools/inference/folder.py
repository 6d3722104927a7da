"""Predict a folder of images: submission CSV, label images, overlays, and a score when labels exist.

A run writes into its output folder OUT::

    OUT/run.json              the run's manifest (tools/kaggle/merge.py): its settings, shard, image ids;
                              written first ("finished": false), rewritten last ("finished": true)
    OUT/.records/<id>.json    each image's nuclei (RLEs) as soon as it is predicted: --resume skips
                              images whose record belongs to a run of the same settings
    OUT/labels/<id>.png       16-bit instance labels (unless --no-labels)
    OUT/overlays/<id>.png     outlines on the image (unless --no-overlays)
    OUT/submission.csv        written once, at the end, from every image's record

Every file is written atomically, and an image's record only after its label image and overlay,
so a run killed at any moment (even kill -9) leaves each file whole or absent, and a run
resumed with ``--resume`` (same settings, refused otherwise, naming the field) writes the same
submission as one never interrupted. A new run removes the submission an earlier run left at
its start: a folder without submission.csv holds no finished run.

``--shard K/N`` predicts every N-th image of the sorted ids (ids k-1, k-1+N, ...), so N machines
split a test set without talking to each other; each shard needs its own OUT, and
``python -m tools.merge_submissions`` joins their submissions.

An output folder holds one run only: outputs an earlier run left there (label PNGs and overlays of
images not in this run, their records, a score and contact sheet this run does not rewrite) are
removed, matched by the names this module writes (:data:`OWN_OUTPUTS`); nothing else in the
folder is touched.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from preprocessing.errors import NucleiError
from tools.kaggle.merge import (RUN_FILE, RUN_KIND, SUBMISSION_FILE, describe_difference, ids_digest,
                                read_manifest, settings_differences)

# what a run writes into OUT, by folder: <id>.png per image; the score report (report_against_truth)
PER_IMAGE_FOLDERS = ("labels", "overlays")
REPORT_FILES = ("score.json", "contact_sheet.html", "contact_sheet.png")
REPORT_FOLDER = "contact"  # contact/<id>.png thumbnails of the contact sheet
RECORDS_FOLDER = ".records"  # <id>.json: one image's result, what --resume and the submission read
OWN_OUTPUTS = (tuple(f"{folder}/<id>.png" for folder in PER_IMAGE_FOLDERS + (REPORT_FOLDER,)) + REPORT_FILES
               + (f"{RECORDS_FOLDER}/<id>.json", RUN_FILE, SUBMISSION_FILE))
RECORD_KIND = "prediction_record"

# predicted images that look unlike every training acquisition (predict_folder's ``reference``)
UNFAMILIAR_FILE = "unfamiliar.json"
# zlib level of the per-image PNGs: 1 is about three times faster than 6 (0.03 s per stage-1 test overlay)
# for files a quarter larger; they are read by people and by --resume, not archived.
PNG_COMPRESSION = 1


class FolderRun(dict):
    """{image id: nucleus count} of every image of a run, sorted by id, plus how it went.

    Attributes:
        skipped: ids ``--resume`` found already done (not predicted again).
        shard: (K, N); (1, 1) for a whole folder.
        unfamiliar: {id: {'domain', 'distance', 'limit'}} of predicted images farther from every
            training domain than any training image (see :func:`unfamiliar_image`).
    """

    def __init__(self, counts: dict[str, int], skipped: list[str], shard: tuple[int, int],
                 unfamiliar: dict[str, dict[str, Any]] | None = None):
        super().__init__(counts)
        self.skipped = skipped
        self.shard = shard
        self.unfamiliar = unfamiliar or {}

    @property
    def predicted(self) -> int:
        """Images this run predicted (not skipped)."""
        return len(self) - len(self.skipped)


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


# --- shards ---------------------------------------------------------------------------------------

def parse_shard(text: str) -> tuple[int, int]:
    """'K/N' -> (K, N) with 1 <= K <= N; NucleiError otherwise."""
    parts = str(text).split("/")
    try:
        index, count = (int(part) for part in parts)
    except ValueError:
        raise NucleiError(f"--shard takes K/N (this machine's share K of N, e.g. 2/4), got {text!r}") from None
    if not 1 <= index <= count:
        raise NucleiError(f"--shard K/N needs 1 <= K <= N, got {text!r}")
    return index, count


def select_shard(items: list[tuple[str, Path]], shard: tuple[int, int] = (1, 1)) -> list[tuple[str, Path]]:
    """Shard K of N of ``items``: every N-th of them sorted by id, starting at the K-th."""
    index, count = shard
    return sorted(items)[index - 1::count]


# --- run settings and per-image records -------------------------------------------------------------

def file_digest(*paths: str | Path) -> str:
    """sha256 (hex, first 16 digits) of the bytes of the existing ``paths`` together."""
    digest = hashlib.sha256()
    for path in paths:
        path = Path(path)
        if path.is_file():
            with open(path, "rb") as file:
                for block in iter(lambda: file.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]


def model_settings(model: str, weights: dict[str, str | Path], params: Any,
                   precision: str = "float32") -> dict[str, Any]:
    """What decides a run's predictions: the model, its weights (by content: the weights file and
    the config JSON beside it, so a copy elsewhere matches), the InferenceParams and the U-Net's
    arithmetic (recorded only when not float32, so runs of earlier versions still resume)."""
    from preprocessing.settings import config_path_for

    settings = {"model": model,
                "weights": {name: file_digest(path, config_path_for(path)) for name, path in sorted(weights.items())},
                "params": params.to_dict()}
    if precision != "float32":
        settings["precision"] = precision
    return settings


def run_settings(settings: dict[str, Any] | None, images_dir: str | Path, shard: tuple[int, int] = (1, 1),
                 overlays: bool = True, label_images: bool = True) -> dict[str, Any]:
    """``settings`` (e.g. :func:`model_settings`) completed with the run's images, shard and
    outputs, in the plain-JSON form they have when read back from run.json."""
    complete = {**(settings or {}), "images": str(Path(images_dir).resolve()), "shard": f"{shard[0]}/{shard[1]}",
                "outputs": {"labels": bool(label_images), "overlays": bool(overlays)}}
    return json.loads(json.dumps(complete, default=str))


def _settings_digest(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def check_out_folder(out_dir: str | Path, settings: dict[str, Any], resume: bool = False) -> dict[str, Any] | None:
    """Refuse what cannot go on in ``out_dir``; return the manifest of the run it holds, if any.

    ``settings``: :func:`run_settings` of the run about to start. With ``resume`` the earlier run
    must have the same settings (NucleiError naming the first field that differs); a folder with
    no run resumes as a fresh start. Without it an earlier run is replaced, except another shard
    of this same prediction (each shard needs its own folder). Cheap: call it before loading a model.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NucleiError("--out is a file, expected a folder", out_dir)
    path = out_dir / RUN_FILE
    if not path.is_file():
        return None
    try:
        earlier = read_manifest(path)
    except NucleiError as error:
        if resume:
            raise NucleiError(f"cannot resume: {error}; run without --resume to start over") from None
        return None  # replaced by this run
    differences = settings_differences(settings, earlier["settings"])
    if resume and differences:
        others = [field for field, _, _ in differences[1:]]
        raise NucleiError("cannot resume: " + describe_difference(differences[0], "now", "in the run there")
                          + (f" (also differs: {', '.join(others)})" if others else "")
                          + "; run without --resume to start over, or use another --out", path)
    if not resume and settings["shard"] != earlier["settings"].get("shard"):
        here, there = parse_shard(settings["shard"]), (earlier["shard"]["index"], earlier["shard"]["count"])
        if here[1] > 1 and there[1] > 1 and not settings_differences(settings, earlier["settings"], ("shard",)):
            raise NucleiError(f"holds shard {there[0]}/{there[1]} of this same prediction; give each shard "
                              f"its own --out (or delete {RUN_FILE} there to replace it)", out_dir)
    return earlier


def read_record(path: Path, run: str) -> tuple[tuple[int, int], list[str]] | None:
    """(shape, RLEs) of an image's record if it belongs to the run ``run`` (a settings digest), else None."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("kind") != RECORD_KIND or record.get("run") != run:
            return None
        height, width = (int(n) for n in record["shape"])
        rles = record["rles"]
        if not all(isinstance(rle, str) for rle in rles):
            return None
        return (height, width), rles
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None  # not there, or not one of ours: predict the image again


def write_record(path: Path, run: str, shape: tuple[int, int], rles: list[str]) -> None:
    """One image's result, atomically: the RLE of each nucleus, the image size, the run's digest."""
    from preprocessing.files import write_text_atomically

    write_text_atomically(path, json.dumps({"kind": RECORD_KIND, "run": run, "shape": list(shape),
                                            "rles": rles}) + "\n")


def _manifest(settings: dict[str, Any], shard: tuple[int, int], ids: list[str], all_ids: list[str],
              results: dict[str, tuple[tuple[int, int], list[str]]] | None = None) -> dict[str, Any]:
    manifest = {"kind": RUN_KIND, "settings": settings, "shard": {"index": shard[0], "count": shard[1]},
                "images_total": len(all_ids), "all_ids_sha256": ids_digest(all_ids), "ids": ids,
                "finished": results is not None}
    if results is not None:
        manifest["nuclei"] = sum(len(rles) for _, rles in results.values())
        manifest["shapes"] = {image_id: list(results[image_id][0]) for image_id in ids}
    return manifest


# --- the run ----------------------------------------------------------------------------------------

def predict_folder(predictor: Any, images_dir: str | Path, out_dir: str | Path, overlays: bool = True,
                   label_images: bool = True, progress: bool = True,
                   keep_labels: dict[str, Any] | None = None, shard: tuple[int, int] | None = None,
                   resume: bool = False, settings: dict[str, Any] | None = None,
                   reference: dict | None = None) -> FolderRun:
    """Predict the images under ``images_dir`` (shard K of N: see :func:`select_shard`); write
    outputs; return {id: nucleus count} as a :class:`FolderRun`.

    Args:
        predictor: anything with ``predict(image) -> (labels, scores)`` (an InferencePipeline).
        keep_labels: optional dict filled with {id: labels} for the ids it already holds as keys
            (for scoring; the caller then writes the score report with :func:`report_against_truth`).
        shard: (K, N); None: every image.
        resume: skip images whose record a run of the same settings left in OUT (and whose label
            image and overlay are there when asked for); refused if OUT's run has other settings.
        settings: what decides the predictions (:func:`model_settings`), stored in run.json and
            compared on ``resume``; None: nothing but the images, shard and outputs.
        reference: the training set's domain reference (preprocessing.domains.domain_reference):
            images unlike every training acquisition are listed in OUT/unfamiliar.json and
            counted in one printed line. None: no check.

    Writes the files of the module docstring, each atomically, with a progress bar (``progress``;
    see :mod:`tools.progress`). Then removes what an earlier run left in OUT
    (:func:`remove_stale_outputs`) and says how many files went.
    """
    from preprocessing.dataset import read_image, write_png
    from preprocessing.files import remove_stale_temporaries, save_json_atomic
    from tools.inference.overlay import draw_outlines
    from tools.kaggle.rle import labels_to_rles
    from tools.kaggle.submission import rles_to_labels, write_rle_submission

    out_dir = Path(out_dir)
    shard = shard or (1, 1)
    items = list_images(images_dir)
    mine = select_shard(items, shard)
    settings = run_settings(settings, images_dir, shard, overlays, label_images)
    earlier = check_out_folder(out_dir, settings, resume)
    records = out_dir / RECORDS_FOLDER
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for sub, wanted in (("labels", label_images), ("overlays", overlays), (RECORDS_FOLDER, True)):
            if wanted:
                if (out_dir / sub).exists() and not (out_dir / sub).is_dir():
                    raise NucleiError(f"is a file, expected the {sub}/ folder of --out", out_dir / sub)
                (out_dir / sub).mkdir(exist_ok=True)
    except OSError as error:
        raise NucleiError(f"cannot create the output folder: {error.strerror or error}", out_dir) from None
    for folder in (out_dir, records, *(out_dir / sub for sub in PER_IMAGE_FOLDERS)):
        remove_stale_temporaries(folder)  # what a run killed mid-write left
    (out_dir / SUBMISSION_FILE).unlink(missing_ok=True)  # an earlier run's: never taken for this one's

    run = _settings_digest(settings)
    results: dict[str, tuple[tuple[int, int], list[str]]] = {}
    if resume:
        for image_id, _ in mine:
            done = read_record(records / f"{image_id}.json", run)
            if done is not None and all((out_dir / sub / f"{image_id}.png").is_file()
                                        for sub, wanted in (("labels", label_images), ("overlays", overlays))
                                        if wanted):
                results[image_id] = done
        print(f"resume: {len(results)} of {len(mine)} images already done in {out_dir}, skipped; "
              f"predicting {len(mine) - len(results)}")
    elif earlier is not None and not earlier["finished"] and not settings_differences(settings, earlier["settings"]):
        print(f"note: {out_dir} holds an unfinished run of these settings; --resume would skip its finished images")
    if shard[1] > 1:
        print(f"shard {shard[0]}/{shard[1]}: {len(mine)} of {len(items)} images")
    skipped = sorted(results)
    ids = [image_id for image_id, _ in mine]
    all_ids = sorted(image_id for image_id, _ in items)
    save_json_atomic(out_dir / RUN_FILE, _manifest(settings, shard, ids, all_ids))

    todo = [(image_id, path) for image_id, path in mine if image_id not in results]
    iterator: Iterable[tuple[str, Path]] = todo
    if progress:
        from tools.progress import progress as progress_bar

        iterator = progress_bar(todo, desc="predicting")
    unfamiliar: dict[str, dict[str, Any]] = {}
    if reference is not None and skipped and (out_dir / UNFAMILIAR_FILE).is_file():
        # the images a resumed run skips were checked when they were predicted
        earlier_list = json.loads((out_dir / UNFAMILIAR_FILE).read_text())
        unfamiliar.update({image_id: earlier_list[image_id] for image_id in skipped if image_id in earlier_list})
    for image_id, path in iterator:
        image = read_image(path)
        if reference is not None:
            far = unfamiliar_image(image, reference)
            if far is not None:
                unfamiliar[image_id] = far
        if reference is not None and getattr(predictor, "reference", None) is reference:
            labels, _ = predictor.predict(image, flagged=far is not None)  # a router: no second check
        else:
            labels, _ = predictor.predict(image)
        if label_images:
            write_png(out_dir / "labels" / f"{image_id}.png", labels.astype(np.uint16), PNG_COMPRESSION)
        if overlays:
            write_png(out_dir / "overlays" / f"{image_id}.png", draw_outlines(image, labels), PNG_COMPRESSION)
        result = (tuple(int(n) for n in labels.shape[:2]), labels_to_rles(labels))
        write_record(records / f"{image_id}.json", run, *result)  # last: the image is done
        results[image_id] = result
        if keep_labels is not None and image_id in keep_labels:
            keep_labels[image_id] = labels
    if keep_labels is not None:
        for image_id in skipped:
            if image_id in keep_labels:
                shape, rles = results[image_id]
                keep_labels[image_id] = rles_to_labels(rles, shape, f"{records / image_id}.json")

    write_rle_submission(out_dir / SUBMISSION_FILE, ((image_id, results[image_id][1]) for image_id in ids))
    save_json_atomic(out_dir / RUN_FILE, _manifest(settings, shard, ids, all_ids, results))
    written = {folder: set(results) if wanted else set()
               for folder, wanted in (("labels", label_images), ("overlays", overlays))}
    removed = remove_stale_outputs(out_dir, written, keep_report=keep_labels is not None,
                                   inputs=[path for _, path in items])
    _remove_stale_records(records, set(results))
    if removed:
        print(f"removed {len(removed)} file{'s' if len(removed) != 1 else ''} an earlier run left in {out_dir}: "
              f"{_describe(removed, out_dir)}")
    (out_dir / UNFAMILIAR_FILE).unlink(missing_ok=True)
    if unfamiliar:
        save_json_atomic(out_dir / UNFAMILIAR_FILE, unfamiliar)
        farthest = max(unfamiliar, key=lambda i: unfamiliar[i]["distance"] or float("inf"))
        row = unfamiliar[farthest]
        example = (f"{row['distance']:.1f} SD, training images at most {row['limit']:.1f}"
                   if row["distance"] is not None else "no training image of its kind")
        print(f"note: {len(unfamiliar)} of {len(ids)} images look unlike every training acquisition (farther "
              f"from the nearest training domain than any training image; e.g. {farthest}: {example}): "
              f"expect lower accuracy there. List: {out_dir / UNFAMILIAR_FILE}")
    return FolderRun({image_id: len(results[image_id][1]) for image_id in ids}, skipped, shard, unfamiliar)


def unfamiliar_image(image: np.ndarray, reference: dict) -> dict[str, Any] | None:
    """{'domain', 'distance', 'limit'} when ``image`` (uint8 [H, W, 3]) lies farther from its
    nearest training domain than the farthest training image of its kind does; else None.

    The limit is the training set's own extreme, not a tuned number: a stain, size or
    intensity no training image came near (the stage-1 test's H&E scans: 14-21 SD, training
    histology at most 5.2)."""
    from preprocessing.domains import image_features, reference_distance

    domain, distance, limit = reference_distance(image_features(image), reference)
    if distance <= limit:
        return None
    return {"domain": domain, "distance": float(distance) if np.isfinite(distance) else None, "limit": limit}


def _remove_stale_records(records: Path, ids: set[str]) -> None:
    """Remove the records of images not in this run (an earlier run's; not counted: internal)."""
    for path in records.glob("*.json"):
        if path.stem not in ids and not path.name.startswith(".") and path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)


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
