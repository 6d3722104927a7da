"""Kaggle DSB 2018 CSV files: submissions (``ImageId,EncodedPixels``) and solutions.

* Submission: one row per predicted nucleus, ``ImageId,EncodedPixels`` with the
  nucleus as a Kaggle RLE string (see tools/rle.py). An image with no nuclei still
  gets one row, with EncodedPixels empty. Predicted nuclei must not overlap.
* Solution (Kaggle's answer key): ``ImageId,EncodedPixels,Height,Width[,Usage]``,
  one row per true nucleus; rows whose Usage is ``Ignored`` are not scored.

Files are written atomically (a temp file in the same folder, then ``os.replace``),
so a reader never sees half a file. Every problem a user can cause raises
:class:`NucleiError` naming the file, the line or image, and what is wrong.
"""

import csv
import os
import re
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from preprocessing.errors import NucleiError
from preprocessing.files import write_text_atomically
from tools.kaggle.rle import labels_to_rles, parse_runs, run_pixels

SUBMISSION_COLUMNS = ("ImageId", "EncodedPixels")
SOLUTION_COLUMNS = ("ImageId", "EncodedPixels", "Height", "Width")
_RLE_ROW = re.compile(r" *[0-9][0-9 ]*")  # what an EncodedPixels cell of a nucleus may hold


class SolutionImage(NamedTuple):
    """One image of a solution file: its (H, W) and one RLE string per true nucleus."""

    shape: tuple
    rles: list


def write_submission(path, items):
    """Write a Kaggle submission CSV.

    Args:
        path: output file (written atomically).
        items: iterable of (image_id, labels) with labels int [H, W], 0 = background,
            one id per nucleus (a label image cannot hold overlapping nuclei).

    Returns:
        (n_images, n_nuclei) written.

    Raises:
        NucleiError: an image id given twice, an empty id or one containing a comma,
            or labels that are not a 2-D integer image.
    """
    def encoded():
        for image_id, labels in items:
            labels = np.asarray(labels)
            if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
                raise NucleiError(f"image {image_id}: labels must be an integer [H, W] image, "
                                  f"got {labels.dtype} {labels.shape}", path)
            yield image_id, labels_to_rles(labels)

    return write_rle_submission(path, encoded())


def write_rle_submission(path, items):
    """Write a Kaggle submission CSV from nuclei already run-length encoded.

    Args:
        path: output file (written atomically: a reader sees the old file or the whole new one).
        items: iterable of (image_id, [RLE string, ...]), one string per nucleus, in the
            order to write; an image with no nucleus (empty list) gets one row with empty
            EncodedPixels, as Kaggle wants every image listed.

    Returns:
        (n_images, n_nuclei) written.

    Raises:
        NucleiError: an image id given twice, an empty id or one with a comma, quote or
            newline, or an RLE string that is empty or holds anything but digits and spaces.
    """
    lines = [",".join(SUBMISSION_COLUMNS)]
    seen = set()
    n_nuclei = 0
    for image_id, rles in items:
        image_id = str(image_id)
        if not image_id or any(c in image_id for c in ',"\r\n'):
            raise NucleiError(f"image id {image_id!r} cannot be written in a CSV row", path)
        if image_id in seen:
            raise NucleiError(f"image {image_id} is given twice", path)
        seen.add(image_id)
        rles = list(rles)
        for rle in rles:
            if not isinstance(rle, str) or not _RLE_ROW.fullmatch(rle):
                raise NucleiError(f"image {image_id}: {rle!r} is not an RLE string of a nucleus", path)
        n_nuclei += len(rles)
        lines.extend(f"{image_id},{rle}" for rle in rles or [""])
    write_text_atomically(path, "\n".join(lines) + "\n")
    return len(seen), n_nuclei


def _read_rows(path, expected, optional=()):
    """Yield (line_number, dict column -> text) from a CSV with a checked header."""
    path = Path(path)
    if not path.is_file():
        raise NucleiError("file not found", path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as file:  # -sig: tolerate a BOM
            reader = csv.reader(file)
            header = next(reader, None)
            if header is None:
                raise NucleiError("file is empty; expected a header line " + ",".join(expected), path)
            header = [name.strip() for name in header]
            allowed = (list(expected), list(expected) + list(optional))
            if header not in allowed:
                raise NucleiError(f"header is {','.join(header)!r}; expected {','.join(expected)!r}"
                                  + (f" (optionally followed by {','.join(optional)})" if optional else ""),
                                  path)
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank line
                if len(row) != len(header):
                    raise NucleiError(f"line {reader.line_num} has {len(row)} columns, the header has "
                                      f"{len(header)} ({','.join(header)})", path)
                yield reader.line_num, dict(zip(header, (value.strip() for value in row)))
    except UnicodeDecodeError as error:
        raise NucleiError(f"not a UTF-8 text file ({error.reason})", path) from None
    except csv.Error as error:
        raise NucleiError(f"not a readable CSV file ({error})", path) from None


def read_submission(path):
    """Read a Kaggle submission CSV.

    Args:
        path: a file with header ``ImageId,EncodedPixels``.

    Returns:
        dict image_id -> list of RLE strings (one per nucleus, file order); an image
        listed only with an empty EncodedPixels maps to []. The strings are checked
        when decoded (see :func:`rles_to_labels`), since that needs the image size.
    """
    submission = {}
    for line, row in _read_rows(path, SUBMISSION_COLUMNS):
        image_id = row["ImageId"]
        if not image_id:
            raise NucleiError(f"line {line} has an empty ImageId", path)
        rles = submission.setdefault(image_id, [])
        if row["EncodedPixels"]:
            rles.append(row["EncodedPixels"])
    return submission


def read_solution(path, ignored=None):
    """Read a Kaggle solution CSV (the answer key).

    Args:
        path: a file with header ``ImageId,EncodedPixels,Height,Width`` and optionally
            ``Usage``; rows with Usage ``Ignored`` are skipped (an image whose rows are
            all ignored is left out).
        ignored: optional set, filled with the ids of images whose rows are all ignored
            (a submission's rows for them are skipped, as Kaggle's scorer does).

    Returns:
        dict image_id -> SolutionImage(shape=(H, W), rles=[str, ...]); rles is empty
        for an image listed with an empty EncodedPixels (no nuclei).
    """
    solution = {}
    skipped = set()
    for line, row in _read_rows(path, SOLUTION_COLUMNS, optional=("Usage",)):
        if row.get("Usage", "").lower() == "ignored":
            skipped.add(row["ImageId"])
            continue
        image_id = row["ImageId"]
        if not image_id:
            raise NucleiError(f"line {line} has an empty ImageId", path)
        try:
            shape = (int(row["Height"]), int(row["Width"]))
        except ValueError:
            raise NucleiError(f"line {line}: Height {row['Height']!r} and Width {row['Width']!r} "
                              "must be integers", path) from None
        if min(shape) < 1:
            raise NucleiError(f"line {line}: image {image_id} has size {shape}; sizes must be positive", path)
        entry = solution.setdefault(image_id, SolutionImage(shape, []))
        if entry.shape != shape:
            raise NucleiError(f"line {line}: image {image_id} is {shape[0]}x{shape[1]} here but "
                              f"{entry.shape[0]}x{entry.shape[1]} on an earlier line", path)
        if row["EncodedPixels"]:
            entry.rles.append(row["EncodedPixels"])
    if ignored is not None:
        ignored |= skipped - set(solution)
    return solution


def rles_to_labels(rles, shape, source=None, overlap="error"):
    """Decode one image's nuclei into a label image.

    Args:
        rles: list of RLE strings, one per nucleus; nucleus i gets id i + 1.
            Empty strings are skipped (they hold no nucleus).
        shape: (H, W).
        source: text naming the file and image, e.g. "sub.csv, image 0a7d...",
            put at the front of error messages.
        overlap: 'error' (predictions: nuclei must not overlap) or 'first' (answer
            keys: a pixel claimed twice stays with the earlier nucleus; a nucleus
            left with no pixel is dropped).

    Returns:
        int32 [H, W], 0 = background, ids 1..N in the order of ``rles``.

    Raises:
        NucleiError: a malformed RLE (naming the nucleus) or, with overlap='error',
            two nuclei sharing pixels (naming both and the pixel count).
    """
    height, width = int(shape[0]), int(shape[1])
    where = f"{source}: " if source else ""
    runs = []
    for number, rle in enumerate(r for r in rles if r.strip()):
        starts, lengths = parse_runs(rle, (height, width), f"{where}nucleus {number + 1}")
        runs.append((starts, lengths))
    if not runs:
        return np.zeros((height, width), np.int32)
    starts = np.concatenate([s for s, _ in runs])
    lengths = np.concatenate([n for _, n in runs])
    ids = np.repeat(np.arange(1, len(runs) + 1, dtype=np.int32), [s.size for s, _ in runs])
    order = np.argsort(starts, kind="stable")
    starts, lengths, ids = starts[order], lengths[order], ids[order]
    ends = starts + lengths  # exclusive
    # Sorted by start, a run overlaps an earlier one iff it starts before the
    # furthest end seen so far.
    clash = starts[1:] < np.maximum.accumulate(ends)[:-1]
    if clash.any():
        if overlap == "error":
            raise NucleiError(where + _describe_overlap(runs, (height, width)))
        return _paint_first(runs, (height, width))
    flat = np.zeros(height * width, np.int32)
    flat[run_pixels(starts, lengths)] = np.repeat(ids, lengths)
    return flat.reshape((height, width), order="F")


def _describe_overlap(runs, shape):
    """The first pair of nuclei that share pixels, as text (slow path, errors only)."""
    owner = np.zeros(shape[0] * shape[1], np.int32)
    for number, (starts, lengths) in enumerate(runs, start=1):
        pixels = run_pixels(starts, lengths)
        taken = owner[pixels] > 0
        if taken.any():
            other = int(np.bincount(owner[pixels][taken]).argmax())
            shared = int(np.count_nonzero(owner[pixels] == other))
            return (f"predicted nuclei {other} and {number} overlap ({shared} shared pixels); "
                    "each pixel may belong to one nucleus only")
        owner[pixels] = number
    raise AssertionError("runs clash but no pixel is shared")


def _paint_first(runs, shape):
    """Label image where each pixel keeps the first nucleus that claims it."""
    flat = np.zeros(shape[0] * shape[1], np.int32)
    next_id = 1
    for starts, lengths in runs:
        pixels = run_pixels(starts, lengths)
        pixels = pixels[flat[pixels] == 0]
        if pixels.size:
            flat[pixels] = next_id
            next_id += 1
    return flat.reshape(shape, order="F")
