"""This project and StarDist on the same images, the same CPU, in one run (issue 10).

    bash bench/setup_stardist.sh        # once: StarDist in .venv-stardist (TensorFlow 2.15)
    python bench/side_by_side.py --minutes 10 --out bench/results/side_by_side.json

Prints, for each contender, prediction seconds per image on ``--images`` (the stage-1 test
images: read and decoded beforehand, then normalisation, network and post-processing), training
crops per second, and the DSB score on the validation split of ``--split`` and on the bundled
sample after ``--minutes`` of training from scratch (ImageNet encoders allowed) on the same
training ids. StarDist runs in its own process (bench/stardist_peer.py) on .npz copies of
the same images; both are scored here with tools.kaggle.metric, both at their default
thresholds (no tuning). The ratios are the compass: every figure comes from the same
machine in the same hour.

Contenders: the shipped U-Net and Mask R-CNN, each in float32 and ``--precision bfloat16``,
for speed only (they trained on a GPU), StarDist, and each ``--ours NAME=TRAIN-OPTIONS``
(options of ``python -m tools.train unet``; default: the ``cpu`` preset).

    python bench/side_by_side.py --speed-only --out bench/results/side_by_side_speed.json

times the shipped pipelines and StarDist only (StarDist is trained first, as above, unless
``--work`` holds its model: its post-processing time depends on what a trained model finds).
"""

import argparse
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from preprocessing.files import save_json_atomic  # noqa: E402

PEER_PYTHON = ROOT / ".venv-stardist" / "bin" / "python"
OURS_DEFAULT = ["cpu=--preset cpu"]


def export(samples, folder: Path, with_labels: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for sample in samples:
        arrays = {"image": sample.image}
        if with_labels:
            arrays["labels"] = sample.labels.astype(np.int32)
        np.savez(folder / f"{sample.image_id}.npz", **arrays)


def score(samples, predictions: dict) -> float:
    from tools.kaggle.metric import dataset_score

    return float(dataset_score([(s.image_id, s.labels, predictions[s.image_id]) for s in samples])["score"])


def time_pipeline(pipeline, images) -> tuple[float, dict]:
    """Mean seconds of pipeline.predict per image (after one warm-up) and {id: labels}."""
    pipeline.predict(images[0][1])
    seconds, labels = [], {}
    for image_id, image in images:
        begun = time.perf_counter()
        labels[image_id] = pipeline.predict(image)[0]
        seconds.append(time.perf_counter() - begun)
    return float(np.mean(seconds)), labels


def run_peer(*arguments: str) -> dict:
    done = subprocess.run([str(PEER_PYTHON), str(ROOT / "bench" / "stardist_peer.py"), *arguments],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"StarDist failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def peer_labels(folder: Path) -> dict:
    return {path.stem: np.load(path)["labels"] for path in folder.glob("*.npz")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "dsb2018" / "stage1_train"))
    parser.add_argument("--split", default=str(ROOT / "weights" / "split.json"))
    parser.add_argument("--sample", default=str(ROOT / "data" / "sample" / "stage1_train"))
    parser.add_argument("--images", default=str(ROOT.parent / "shared" / "dsb2018" / "stage1_test"))
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget of each contender")
    parser.add_argument("--ours", action="append", metavar="NAME=OPTIONS",
                        help=f"a training recipe of this project (repeatable; default {OURS_DEFAULT[0]!r})")
    parser.add_argument("--no-stardist", action="store_true")
    parser.add_argument("--speed-only", action="store_true",
                        help="time the shipped pipelines and StarDist; train none of ours")
    parser.add_argument("--work", default="/tmp/side_by_side")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "side_by_side.json"))
    parser.add_argument("--resume", action="store_true",
                        help="keep the trained contenders --out already holds (it is rewritten after each)")
    args = parser.parse_args()
    if not args.no_stardist and not PEER_PYTHON.is_file():
        raise SystemExit(f"no StarDist environment at {PEER_PYTHON.parent.parent}: run bash bench/setup_stardist.sh")

    from preprocessing.dataset import load_training_samples, read_image
    from preprocessing.split import read_split
    from tools.inference.folder import list_images
    from tools.inference.models import build_pipeline

    work = Path(args.work)
    train_ids, val_ids = read_split(args.split)
    sample = load_training_samples([args.sample], progress=False)
    labelled = load_training_samples([args.data], exclude_roots=[args.sample], progress=False)
    train = [s for s in labelled if s.image_id in set(train_ids)]
    val = [s for s in labelled if s.image_id in set(val_ids)]
    test = [(image_id, read_image(path)) for image_id, path in list_images(args.images)]
    seconds = args.minutes * 60
    rows = {}
    if args.resume and Path(args.out).is_file():
        earlier = json.loads(Path(args.out).read_text())
        if earlier.get("minutes") != args.minutes:
            raise SystemExit(f"{args.out} holds a run of {earlier.get('minutes')} minutes, not {args.minutes:g}")
        rows = {name: row for name, row in earlier["rows"].items() if "train_crops" in row}

    def save():
        save_json_atomic(args.out, {"command": "python bench/side_by_side.py " + " ".join(sys.argv[1:]),
                                    "minutes": args.minutes, "rows": rows})
    print(f"{len(train)} training, {len(val)} validation, {len(sample)} sample, {len(test)} test images; "
          f"budget {args.minutes:g} min each")

    for name, model, options in (("U-Net (shipped)", "unet", {}),
                                 ("U-Net bf16 (shipped)", "unet", {"precision": "bfloat16"}),
                                 ("Mask R-CNN (shipped)", "mrcnn", {}),
                                 ("Mask R-CNN bf16 (shipped)", "mrcnn", {"precision": "bfloat16"})):
        rows[name] = {"predict_s_per_image": time_pipeline(build_pipeline(model, **options), test)[0]}
        print(f"{name}: {rows[name]['predict_s_per_image']:.3f} s/image")

    if not args.no_stardist and "StarDist" not in rows:
        for folder, items in (("train", train), ("val", val), ("sample", sample)):
            export(items, work / folder)
        test_folder = work / "test"
        test_folder.mkdir(parents=True, exist_ok=True)
        for image_id, image in test:
            np.savez(test_folder / f"{image_id}.npz", image=image)
        row = {}
        if not (args.speed_only and (work / "stardist_model").is_dir()):
            trained = run_peer("train", "--data", str(work / "train"), "--val", str(work / "val"),
                               "--seconds", str(seconds), "--out", str(work / "stardist_model"))
            row = {"train_crops": trained["crops"], "train_crops_per_s": trained["crops_per_s"], "train_crop": 256}
        for folder, items in (("val", val), ("sample", sample)):
            run_peer("predict", "--model", str(work / "stardist_model"), "--images", str(work / folder),
                     "--out", str(work / f"stardist_{folder}"))
            row[f"{folder}_score"] = score(items, peer_labels(work / f"stardist_{folder}"))
        row["predict_s_per_image"] = run_peer("predict", "--model", str(work / "stardist_model"), "--images",
                                              str(test_folder), "--out", str(work / "stardist_test"))["seconds_per_image"]
        rows["StarDist"] = row
        print(f"StarDist: {json.dumps(row)}")
        save()

    for recipe in [] if args.speed_only else args.ours or OURS_DEFAULT:
        name, _, options = recipe.partition("=")
        if f"ours: {name}" in rows and rows[f"ours: {name}"]["options"] == options:
            continue
        run_dir = work / f"ours_{name}"
        command = [str(ROOT / ".venv" / "bin" / "python"), "-m", "tools.train", "unet", "--data", args.data,
                   "--exclude", args.sample, "--split", args.split, "--out", str(run_dir), "--time-limit",
                   str(int(seconds)), "--no-val-score", *shlex.split(options)]
        shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run, not a resumed one
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
        found = re.search(r"trained (\d+) crops in (\d+) s \(([\d.]+) crops/s\)", done.stdout)
        row = {"options": options, "train_crops": int(found.group(1)), "train_crops_per_s": float(found.group(3)),
               "train_crop": json.loads((run_dir / "config.json").read_text())["config"]["crop_size"]}
        pipeline = build_pipeline("unet", weights=run_dir / "model.weights.h5", use_shipped_params=False)
        for label, items in (("val", val), ("sample", sample)):
            row[f"{label}_score"] = score(items, {s.image_id: pipeline.predict(s.image)[0] for s in items})
        row["predict_s_per_image"] = time_pipeline(pipeline, test)[0]
        rows[f"ours: {name}"] = row
        print(f"ours {name}: {json.dumps(row)}")
        save()

    print(f"\n{'contender':24s} {'predict s/img':>13s} {'train crops/s':>13s} {'crop':>5s} {'val':>7s} {'sample':>7s}")
    for name, row in rows.items():
        cells = [f"{row['predict_s_per_image']:13.3f}",
                 f"{row['train_crops_per_s']:13.2f}" if "train_crops_per_s" in row else f"{'-':>13s}",
                 f"{row.get('train_crop') or '-':>5}",
                 f"{row['val_score']:7.4f}" if "val_score" in row else f"{'-':>7s}",
                 f"{row['sample_score']:7.4f}" if "sample_score" in row else f"{'-':>7s}"]
        print(f"{name:24s} " + " ".join(cells))
    save()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
