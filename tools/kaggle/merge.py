"""Merge the submissions of prediction shards into one (``python -m tools.merge_submissions``).

``python -m tools.predict --shard K/N`` predicts every N-th image of the sorted ids and writes,
in its ``--out``, ``submission.csv`` (its images only) and ``run.json``, the run's manifest::

    {"kind": "prediction_run",
     "settings": {"model": ..., "weights": {...}, "params": {...}, ...},   # what decides the results
     "shard": {"index": K, "count": N},
     "images_total": 65, "all_ids_sha256": "...",  # the whole image set the shards split
     "ids": ["...", ...],                           # this shard's images, sorted
     "finished": true,                              # false while the run is under way (or was killed)
     "shapes": {"<id>": [H, W], ...}}               # once finished

:func:`merge_submissions` reads shard folders (``submission.csv`` + ``run.json``) or bare CSV files
and checks, before writing anything, that every image is in exactly one shard and that no two
nuclei of an image share a pixel (the RLEs are decoded). With manifests it also checks that the
shards are shards 1..N of one split, each finished, of the same image set and settings, and that
each CSV holds exactly its manifest's images, so no image can go missing. An image with no
nucleus keeps its one row with empty EncodedPixels. The merged file is written atomically.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterable, NamedTuple

from preprocessing.errors import NucleiError
from preprocessing.settings import read_json
from tools.kaggle.rle import parse_runs
from tools.kaggle.submission import read_submission, rles_to_labels, write_rle_submission

RUN_FILE = "run.json"
SUBMISSION_FILE = "submission.csv"
RUN_KIND = "prediction_run"
# settings that may differ between the shards of one prediction (each machine has its own
# image folder and output choices); everything else in "settings" must agree
SHARD_LOCAL_SETTINGS = ("images", "shard", "outputs")
_NO_LIMIT = 2 ** 62  # image size bound for RLEs of an image whose size is not known


class Shard(NamedTuple):
    """One input of a merge: where it came from, its CSV, its images' RLEs, its manifest (or None)."""

    source: Path
    csv: Path
    images: dict[str, list[str]]
    manifest: dict[str, Any] | None


class MergeReport(NamedTuple):
    """What a merge wrote: images, nuclei, inputs, and whether manifests proved completeness."""

    images: int
    nuclei: int
    shards: int
    manifests: bool


def ids_digest(ids: Iterable[str]) -> str:
    """sha256 (hex) of a set of image ids: the same for every shard of one image set."""
    return hashlib.sha256("\n".join(sorted(ids)).encode("utf-8")).hexdigest()


def flatten_settings(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'params': {'tta': 1}} -> {'params.tta': 1}: nested settings as dotted field names."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten_settings(value, name + "."))
        else:
            flat[name] = value
    return flat


def settings_differences(here: dict[str, Any], there: dict[str, Any],
                         ignore: Iterable[str] = ()) -> list[tuple[str, Any, Any]]:
    """(field, value here, value there) for every dotted field that differs, sorted by field.

    ``ignore``: top-level fields left out of the comparison. A field one side lacks is None there.
    """
    ignored = tuple(ignore)
    flat_here, flat_there = flatten_settings(here), flatten_settings(there)
    fields = sorted(set(flat_here) | set(flat_there))
    return [(field, flat_here.get(field), flat_there.get(field)) for field in fields
            if field.split(".")[0] not in ignored and flat_here.get(field) != flat_there.get(field)]


def describe_difference(difference: tuple[str, Any, Any], here: str, there: str) -> str:
    """'params.tta is 2 in <here> but 1 in <there>' (values shortened to 40 characters)."""
    field, mine, theirs = difference

    def short(value: Any) -> str:
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "..."

    return f"{field} is {short(mine)} {here} but {short(theirs)} {there}"


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Read and check a shard's run.json; a malformed one raises NucleiError naming it."""
    path = Path(path)
    document = read_json(path)
    if not isinstance(document, dict) or document.get("kind") != RUN_KIND:
        raise NucleiError(f"not a prediction run manifest (kind must be {RUN_KIND!r})", path)
    shard = document.get("shard")
    ok = (isinstance(shard, dict) and all(isinstance(shard.get(k), int) for k in ("index", "count"))
          and 1 <= shard["index"] <= shard["count"]
          and isinstance(document.get("ids"), list) and all(isinstance(i, str) for i in document["ids"])
          and isinstance(document.get("images_total"), int) and isinstance(document.get("all_ids_sha256"), str)
          and isinstance(document.get("finished"), bool) and isinstance(document.get("settings"), dict)
          and isinstance(document.get("shapes", {}), dict))
    if not ok:
        raise NucleiError("malformed prediction run manifest (shard, ids, images_total, all_ids_sha256, "
                          "finished and settings are required)", path)
    return document


def read_shard(source: str | Path) -> Shard:
    """A shard folder (its submission.csv, and run.json when there) or a CSV file.

    A CSV named submission.csv with a run.json beside it is read with that manifest.
    """
    source = Path(source)
    if source.is_dir():
        csv = source / SUBMISSION_FILE
        if not csv.is_file():
            raise NucleiError(f"holds no {SUBMISSION_FILE} (has the shard's prediction finished?)", source)
    elif source.is_file():
        csv = source
    else:
        raise NucleiError("no such file or folder", source)
    manifest_path = csv.with_name(RUN_FILE)
    manifest = read_manifest(manifest_path) if csv.name == SUBMISSION_FILE and manifest_path.is_file() else None
    return Shard(source, csv, read_submission(csv), manifest)


def check_manifests(shards: list[Shard]) -> None:
    """Shards 1..N of one split, each finished, of one image set and settings, each CSV its ids."""
    first = shards[0]
    count = first.manifest["shard"]["count"]
    by_index: dict[int, Shard] = {}
    for shard in shards:
        manifest, path = shard.manifest, shard.csv.with_name(RUN_FILE)
        index, its_count = manifest["shard"]["index"], manifest["shard"]["count"]
        if its_count != count:
            raise NucleiError(f"is shard {index}/{its_count} but {first.source} is shard "
                              f"{first.manifest['shard']['index']}/{count}; the shards of one submission "
                              "split the images the same way", path)
        if not manifest["finished"]:
            raise NucleiError(f"shard {index}/{count} has not finished; run its predict again with --resume", path)
        if (manifest["images_total"], manifest["all_ids_sha256"]) != (first.manifest["images_total"],
                                                                      first.manifest["all_ids_sha256"]):
            raise NucleiError(f"shard {index}/{count} split another image set ({manifest['images_total']} images) "
                              f"than {first.source} ({first.manifest['images_total']} images)", path)
        differences = settings_differences(manifest["settings"], first.manifest["settings"], SHARD_LOCAL_SETTINGS)
        if differences:
            raise NucleiError(describe_difference(differences[0], "here", f"in {first.source}")
                              + "; the shards of one submission need the same model, weights and parameters", path)
        if index in by_index:
            raise NucleiError(f"shard {index}/{count} is given twice: {by_index[index].source} and {shard.source}")
        by_index[index] = shard
        listed = set(manifest["ids"])
        extra = sorted(set(shard.images) - listed)
        if extra:
            raise NucleiError(f"image {extra[0]} is in {shard.csv.name} but not in {RUN_FILE} "
                              f"of shard {index}/{count}", shard.csv)
        lacking = sorted(listed - set(shard.images))
        if lacking:
            raise NucleiError(f"image {lacking[0]} of shard {index}/{count} has no row"
                              + (f" ({len(lacking)} images have none)" if len(lacking) > 1 else ""), shard.csv)
    missing = [index for index in range(1, count + 1) if index not in by_index]
    if missing:
        given = ", ".join(f"{index}/{count}" for index in sorted(by_index))
        names = ", ".join(f"{index}/{count}" for index in missing)
        raise NucleiError(f"shard{'s' if len(missing) > 1 else ''} {names} {'are' if len(missing) > 1 else 'is'} missing (given: {given}); "
                          "every shard of the split is needed")


def image_extent(rles: list[str], source: str) -> int:
    """1 + the last pixel any of ``rles`` covers (a size for checking an image of unknown shape)."""
    end = 1
    for number, rle in enumerate(rles, start=1):
        starts, lengths = parse_runs(rle, (_NO_LIMIT, 1), f"{source}: nucleus {number}")
        if starts.size:
            end = max(end, int(starts[-1] + lengths[-1]))
    return end


def check_no_overlap(rles: list[str], shape: tuple[int, int] | None, source: str) -> None:
    """Decode one image's nuclei; raise NucleiError naming ``source`` if two share a pixel.

    ``shape`` (H, W) also checks that every run lies inside the image; None: only overlaps.
    """
    if len(rles) < 2 and shape is None:
        if rles:
            image_extent(rles, source)  # still a well-formed RLE
        return
    rles_to_labels(rles, shape if shape is not None else (image_extent(rles, source), 1), source, overlap="error")


def merge_submissions(out_path: str | Path, sources: Iterable[str | Path]) -> MergeReport:
    """Merge shard outputs into one submission at ``out_path`` (atomically), images sorted by id.

    Args:
        out_path: the merged CSV.
        sources: shard folders (submission.csv + run.json) or CSV files; either all with a
            manifest or none (then nothing proves that no image is missing).

    Raises:
        NucleiError: an unreadable input, a shard missing or given twice, an unfinished shard,
            shards of other images or settings, an image in two inputs, or overlapping nuclei;
            the output is then left as it was.
    """
    shards = [read_shard(source) for source in sources]
    if not shards:
        raise NucleiError("no shard to merge")
    with_manifest = [shard for shard in shards if shard.manifest is not None]
    if with_manifest and len(with_manifest) < len(shards):
        bare = next(shard for shard in shards if shard.manifest is None)
        raise NucleiError(f"has no {RUN_FILE} beside it but {with_manifest[0].source} has one; "
                          "merge shard folders only, or bare CSV files only", bare.source)
    if with_manifest:
        check_manifests(shards)
    owner: dict[str, Shard] = {}
    for shard in shards:
        for image_id in shard.images:
            if image_id in owner:
                raise NucleiError(f"image {image_id} is also in {owner[image_id].csv}; "
                                  "every image must be in one shard only", shard.csv)
            owner[image_id] = shard
    for image_id in sorted(owner):
        shard = owner[image_id]
        shape = (shard.manifest or {}).get("shapes", {}).get(image_id)
        check_no_overlap(shard.images[image_id], tuple(shape) if shape else None, f"{shard.csv}, image {image_id}")
    n_images, n_nuclei = write_rle_submission(out_path, ((image_id, owner[image_id].images[image_id])
                                                         for image_id in sorted(owner)))
    return MergeReport(n_images, n_nuclei, len(shards), bool(with_manifest))
