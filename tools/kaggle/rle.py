"""Kaggle's run-length encoding of nucleus masks (DSB 2018 submission format).

An RLE string is space-separated pairs ``start length``: ``start`` is 1-indexed and
pixels are numbered top to bottom, then left to right (column-major, numpy
``order='F'``). Example for a 3x3 mask whose middle column is set::

    [[0, 1, 0],
     [0, 1, 0],   ->  "4 3"   (pixels 4, 5, 6 in column-major order)
     [0, 1, 0]]

Everything here is pure numpy and vectorised: no Python loop over pixels or runs.
Malformed strings raise :class:`NucleiError` saying which run is wrong and why.
"""

import re

import numpy as np

from preprocessing.errors import NucleiError

# A plain decimal integer, optionally signed (ASCII digits only, no '1_000' or '1.0').
_INTEGER = re.compile(r"[+-]?[0-9]+")
_RLE_TEXT = re.compile(r"\s*[+-]?[0-9]+(?:\s+[+-]?[0-9]+)*\s*")


def _where(source):
    """Prefix for messages: where the RLE came from (a file and image), if known."""
    return f"{source}: " if source else ""


def mask_runs(mask):
    """Runs of a boolean mask in column-major order.

    Args:
        mask: bool [H, W] (anything numpy can read as true/false).

    Returns:
        (starts, lengths): int64 [R] each; ``starts`` are 1-indexed pixel numbers.
    """
    mask = np.asarray(mask, dtype=bool)
    # Pad with False on both sides so every run has a rising and a falling edge.
    padded = np.zeros(mask.size + 2, dtype=bool)
    padded[1:-1] = mask.ravel(order="F")
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    starts = edges[0::2]
    lengths = edges[1::2] - starts
    return starts.astype(np.int64) + 1, lengths.astype(np.int64)


def runs_to_string(starts, lengths):
    """int [R] starts (1-indexed), int [R] lengths -> "s1 l1 s2 l2 ..."."""
    pairs = np.empty(2 * len(starts), dtype=np.int64)
    pairs[0::2] = starts
    pairs[1::2] = lengths
    return " ".join(map(str, pairs.tolist()))


def encode(mask):
    """mask: bool [H, W] -> Kaggle RLE string ("" for an empty mask)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise NucleiError(f"mask must be 2-D [H, W], got shape {mask.shape}")
    return runs_to_string(*mask_runs(mask))


def labels_to_rles(labels):
    """One RLE string per nucleus of a label image, in increasing label-id order.

    Args:
        labels: int [H, W], 0 = background, one positive id per nucleus. Ids need
            not be consecutive; ids with no pixel produce no string.

    Returns:
        list[str], one per id present, ordered by id.

    One pass over the column-major flattened image finds every run of every id;
    a stable sort by id then groups each nucleus' runs, already in pixel order.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise NucleiError(f"label image must be 2-D [H, W], got shape {labels.shape}")
    if labels.size == 0:
        return []
    flat = labels.ravel(order="F")
    run_starts = np.concatenate(([0], np.flatnonzero(flat[1:] != flat[:-1]) + 1))
    run_lengths = np.diff(np.concatenate((run_starts, [flat.size])))
    run_ids = flat[run_starts]
    foreground = run_ids > 0
    run_starts, run_lengths, run_ids = run_starts[foreground], run_lengths[foreground], run_ids[foreground]
    if run_ids.size == 0:
        return []
    order = np.argsort(run_ids, kind="stable")  # stable: keeps runs in pixel order within an id
    run_starts, run_lengths, run_ids = run_starts[order], run_lengths[order], run_ids[order]
    # Turn every number into text once, then cut the token list per nucleus.
    pairs = np.empty(2 * run_ids.size, dtype=np.int64)
    pairs[0::2] = run_starts + 1
    pairs[1::2] = run_lengths
    tokens = list(map(str, pairs.tolist()))
    bounds = 2 * np.concatenate(([0], np.flatnonzero(np.diff(run_ids)) + 1, [run_ids.size]))
    return [" ".join(tokens[a:b]) for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist())]


def parse_runs(rle, shape, source=None):
    """Parse and check one RLE string against an image shape.

    Args:
        rle: "start length start length ..." (1-indexed, column-major); "" means empty.
        shape: (H, W) of the image the runs belong to.
        source: optional text naming where the string came from (file, image id),
            put at the front of error messages.

    Returns:
        (starts, lengths): int64 [R] each, ``starts`` 0-indexed, runs in increasing order.

    Raises:
        NucleiError: odd count of numbers, non-integers, start < 1, length < 1, a run
            past the last pixel (H*W), or runs that decrease or overlap.
    """
    height, width = (int(n) for n in shape)
    size = height * width
    where = _where(source)
    if not isinstance(rle, str):
        raise NucleiError(f"{where}RLE must be a string, got {type(rle).__name__}")
    tokens = rle.split()
    if not tokens:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if len(tokens) % 2:
        raise NucleiError(f"{where}RLE has an odd count of numbers ({len(tokens)}); expected 'start length' pairs")
    if not _RLE_TEXT.fullmatch(rle):
        bad = next((t for t in tokens if not _INTEGER.fullmatch(t)), None)
        what = f"holds {bad!r}, which is not an integer" if bad else "is not space-separated integers"
        raise NucleiError(f"{where}RLE {what}")
    try:
        numbers = np.array(tokens, dtype=np.int64)
    except OverflowError:
        raise NucleiError(f"{where}RLE holds a number too large for any image") from None
    starts, lengths = numbers[0::2], numbers[1::2]
    checks = (
        (starts < 1, "starts at {s}; pixel numbers start at 1"),
        (lengths < 1, "has length {n}; lengths must be positive"),
        # Written as a difference so huge numbers cannot overflow int64.
        (lengths > size + 1 - starts,
         "(start {s}, length {n}) runs past the last pixel {size} of a {h}x{w} image"),
    )
    for bad, text in checks:
        if bad.any():
            i = int(np.argmax(bad))
            detail = text.format(s=starts[i], n=lengths[i], size=size, h=height, w=width)
            raise NucleiError(f"{where}RLE run {i + 1} {detail}")
    ends = starts + lengths - 1  # last pixel of each run, 1-indexed
    # Each run must begin after the previous one ends (touching is allowed).
    bad = starts[1:] <= ends[:-1]
    if bad.any():
        i = int(np.argmax(bad)) + 1
        problem = "overlaps" if starts[i] >= starts[i - 1] else "comes before"
        raise NucleiError(
            f"{where}RLE run {i + 1} (start {starts[i]}) {problem} run {i} "
            f"(pixels {starts[i - 1]}..{ends[i - 1]}); runs must be increasing and not overlap")
    return starts - 1, lengths


def run_pixels(starts, lengths):
    """Every pixel of some runs: int [R] 0-indexed starts, int [R] lengths -> int64 [sum(lengths)]."""
    starts = np.asarray(starts, np.int64)
    lengths = np.asarray(lengths, np.int64)
    # Each pixel = its run's start + its position within the run.
    run_first = np.cumsum(lengths) - lengths  # index of each run's first pixel in the output
    return np.repeat(starts - run_first, lengths) + np.arange(int(lengths.sum()))


def runs_to_mask(starts, lengths, shape):
    """0-indexed column-major runs (int [R] each) -> bool [H, W].

    Costs time in proportion to the run pixels, not the image (plus a zeroed array).
    """
    height, width = shape
    flat = np.zeros(height * width, dtype=bool)
    flat[run_pixels(starts, lengths)] = True
    return flat.reshape((height, width), order="F")


def decode(rle, shape, source=None):
    """Kaggle RLE string -> bool [H, W] mask of the given shape.

    Raises NucleiError for malformed strings (see :func:`parse_runs`).
    """
    starts, lengths = parse_runs(rle, shape, source)
    return runs_to_mask(starts, lengths, (int(shape[0]), int(shape[1])))
