"""Shared by the per-IoU benchmarks (bench/watershed_growth.py, bench/mask_paste.py): the same
validation split and sample, one score row per setting, one table.

Validation: the ids of ``weights/split.json`` (the shipped models' held-out images) with their
acquisition domains as tools.tune groups them; sample: the bundled images, never tuned on.
"""

import argparse
import sys
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from preprocessing.files import save_json_atomic  # noqa: E402

SHOWN_IOUS = (0.5, 0.75, 0.9, 0.95)


def add_data_options(parser: argparse.ArgumentParser, out_name: str) -> None:
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "dsb2018" / "stage1_train"))
    parser.add_argument("--sample", default=str(ROOT / "data" / "sample" / "stage1_train"))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / out_name))


def train_variants(work: Path, variants: dict[str, list[str]], command: list[str], score_only: bool = False
                   ) -> dict[str, Path]:
    """Run ``command + variants[name]`` (a tools.train command line without --out) for each variant
    into WORK/NAME, one after the other, logs in WORK/NAME.log; {name: WORK/NAME/model.weights.h5}.
    ``score_only``: train nothing, return the runs WORK already holds."""
    import shutil
    import subprocess

    runs = {}
    for name, options in variants.items():
        run_dir = work / name
        runs[name] = run_dir / "model.weights.h5"
        if score_only:
            continue
        shutil.rmtree(run_dir, ignore_errors=True)
        done = subprocess.run([*command, "--out", str(run_dir), *options], cwd=ROOT, capture_output=True, text=True)
        (work / f"{name}.log").write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
        print(f"{name}: " + (done.stdout.strip().splitlines() or [""])[-2], flush=True)
    return runs


def load_sets(args: argparse.Namespace) -> tuple[list, dict, list]:
    """(validation samples, {id: domain}, sample samples)."""
    from preprocessing.dataset import load_training_samples
    from tools.inference.tuning import validation_set

    val, domains = validation_set([args.data], exclude_roots=(args.sample,), run_dir=ROOT / "weights")
    return val, domains, load_training_samples([args.sample], progress=False)


def score_settings(settings: dict[str, Callable], val: list, domains: dict, sample: list) -> dict:
    """{setting: {'val', 'val_balanced', 'sample', 'val_per_iou', 'sample_per_iou'}}; each setting
    is a function sample -> predicted labels int [H, W]."""
    from tools.inference.tuning import objective
    from tools.kaggle.metric import dataset_score

    results = {}
    for name, labels_of in settings.items():
        row = {}
        for part, items in (("val", val), ("sample", sample)):
            result = dataset_score([(s.image_id, s.labels, labels_of(s)) for s in items])
            row[part] = result["score"]
            row[f"{part}_per_iou"] = [float(v) for v in result["per_threshold"]]
            if part == "val":
                row["val_balanced"] = objective({r["id"]: r["score"] for r in result["per_image"]}, domains)
        results[name] = row
    return results


def report(results: dict, first_column: str, out: str, command: str) -> None:
    """Print the table (precision per IoU on validation) and write the JSON."""
    from tools.kaggle.metric import THRESHOLDS

    columns = [int(np.argmin(np.abs(np.asarray(THRESHOLDS) - t))) for t in SHOWN_IOUS]
    print(f"{first_column:18s} {'val':>7s} {'balanced':>8s} {'sample':>7s} "
          + " ".join(f"{'AP@' + str(t):>8s}" for t in SHOWN_IOUS) + "  (validation)")
    for setting, row in results.items():
        print(f"{setting:18s} {row['val']:7.4f} {row['val_balanced']:8.4f} {row['sample']:7.4f} "
              + " ".join(f"{row['val_per_iou'][k]:8.3f}" for k in columns))
    save_json_atomic(out, {"command": command, "thresholds": [float(t) for t in THRESHOLDS], "results": results})
    print(f"wrote {out}")
