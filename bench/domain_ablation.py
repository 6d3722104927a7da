"""Training options ranked under the domain hold-out, with small CPU runs (issue 9).

    python bench/domain_ablation.py --minutes 10 --out bench/results/domain_ablation.json
    python bench/domain_ablation.py --variant light= --variant stain="--augment stain"   # choose
    python bench/domain_ablation.py --split-only --work W   # W/split.json only: train any model on it

Every variant trains ``tools.train unet --preset cpu`` (ImageNet MobileNetV2 encoder) from the
same start for the same minutes on one split: the training part of ``weights/split.json`` less
every image of the held-out domains (``--holdout``, default the protocol's own choice,
preprocessing.domains.default_holdout: one colour and one grey domain). Each is then scored,
at the config's default thresholds (no tuning), on

* ``unseen domains``: every image of the held-out domains (acquisitions training never saw:
  what the stage-1 test's new scans are to the shipped models), per domain and balanced;
* ``seen domains``: the validation images of ``weights/split.json`` from the other domains;
* ``sample``: the bundled sample.

A variant's ``--data DIR`` trains on DIR instead of ``--data`` (e.g. the community-fixed masks,
``python3 ../shared/dsb2018/make_fixed.py /tmp/fixed``; the same split ids, scored on the same
original labels as every other variant).

``--score-only --labels DIR`` scores the runs ``--work`` already holds against DIR's labels
instead (e.g. the fixed masks, the better yardstick; ids DIR lacks are left out), into ``--out``.

A training option worth taking to the GPU wins on unseen domains without losing on seen ones.
Budgets are CPU time: run nothing else meanwhile. One seed per variant; the differences that
matter are the large ones.
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

VARIANTS = {
    "light": "",
    "heavy": "--augment heavy",
    "stain": "--augment stain",
    "clahe": "--normalization clahe",
    "invert": "--invert-light-background",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "dsb2018" / "stage1_train"))
    parser.add_argument("--sample", default=str(ROOT / "data" / "sample" / "stage1_train"))
    parser.add_argument("--domains", default=str(ROOT / "bench" / "results" / "domains.json"))
    parser.add_argument("--holdout", default="auto", help="'auto' or domain names, comma-separated")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--variant", action="append", metavar="NAME=OPTIONS",
                        help="options of tools.train unet added to --preset cpu (default: " + ", ".join(VARIANTS) + ")")
    parser.add_argument("--work", default="/tmp/domain_ablation")
    parser.add_argument("--score-only", action="store_true", help="score the runs in --work; train nothing")
    parser.add_argument("--split-only", action="store_true",
                        help="write --work/split.json and stop (for a run of another model on the same split)")
    parser.add_argument("--labels", help="with --score-only: score against this data root's labels")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "domain_ablation.json"))
    args = parser.parse_args()

    from preprocessing.dataset import load_training_samples
    from preprocessing.domains import default_holdout, domain_scores, load_domains
    from preprocessing.split import read_split, save_split
    from tools.inference.models import build_pipeline
    from tools.kaggle.metric import image_score

    domains = load_domains(args.domains)
    held = default_holdout(domains) if args.holdout == "auto" else args.holdout.split(",")
    train_ids, val_ids = read_split(ROOT / "weights" / "split.json")
    labelled = {s.image_id: s for s in load_training_samples([args.data], exclude_roots=[args.sample], progress=False)}
    if args.score_only and args.labels:  # the same ids, other labels (those the other root has)
        labelled = {s.image_id: s for s in load_training_samples([args.labels], exclude_roots=[args.sample],
                                                                 progress=False) if s.image_id in labelled}
    unseen = sorted(i for i in labelled if domains.get(i) in held)
    seen = sorted(i for i in val_ids if i in labelled and domains.get(i) not in held)
    train = sorted(i for i in train_ids if i in labelled and domains.get(i) not in held)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    split_file = work / "split.json"
    if not args.score_only:
        save_split(split_file, train, seen + unseen, {"holdout": held})
    if args.split_only:
        print(f"wrote {split_file}: held out {', '.join(held)}; {len(train)} training, {len(seen)} seen-domain "
              f"validation, {len(unseen)} unseen-domain images")
        return 0
    sample = load_training_samples([args.sample], progress=False)
    print(f"held out {', '.join(held)}: {len(train)} training, {len(seen)} seen-domain validation, "
          f"{len(unseen)} unseen-domain, {len(sample)} sample images; {args.minutes:g} min each", flush=True)

    variants = dict(v.partition("=")[::2] for v in args.variant) if args.variant else VARIANTS
    out = Path(args.out)
    rows = json.loads(out.read_text())["rows"] if out.is_file() else {}
    for name, options in variants.items():
        run_dir = work / name
        extra, data = shlex.split(options), args.data
        if "--data" in extra:  # this variant's own training data replaces the default
            at = extra.index("--data")
            data = extra[at + 1]
            del extra[at:at + 2]
        command = [str(ROOT / ".venv" / "bin" / "python"), "-m", "tools.train", "unet", "--preset", "cpu",
                   "--data", data, "--exclude", args.sample, "--split", str(split_file), "--out", str(run_dir),
                   "--time-limit", str(int(args.minutes * 60)), "--no-val-score", *extra]
        started, found = time.time(), None
        if not args.score_only:
            shutil.rmtree(run_dir, ignore_errors=True)
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
            found = re.search(r"trained (\d+) crops in (\d+) s", done.stdout)
        pipeline = build_pipeline("unet", weights=run_dir / "model.weights.h5", use_shipped_params=False)
        scores = {}
        for ids in (seen, unseen):
            scores.update({i: float(image_score(labelled[i].labels, pipeline.predict(labelled[i].image)[0])["score"])
                           for i in ids})
        sample_score = float(np.mean([image_score(s.labels, pipeline.predict(s.image)[0])["score"] for s in sample]))
        per_unseen = domain_scores({i: scores[i] for i in unseen}, domains)
        per_seen = domain_scores({i: scores[i] for i in seen}, domains)
        rows[name] = {"options": options, "crops": int(found.group(1)) if found else None,
                      "unseen_balanced": per_unseen["balanced_mean"], "unseen_per_domain": per_unseen["per_domain"],
                      "seen": float(np.mean([scores[i] for i in seen])), "seen_balanced": per_seen["balanced_mean"],
                      "sample": sample_score, "seconds": time.time() - started}
        print(f"{name:8s} crops {rows[name]['crops']}  unseen domains {rows[name]['unseen_balanced']:.4f} ("
              + ", ".join(f"{d} {v:.3f}" for d, v in per_unseen["per_domain"].items())
              + f")  seen {rows[name]['seen']:.4f} (balanced {rows[name]['seen_balanced']:.4f})  sample "
              f"{sample_score:.4f}", flush=True)
        save_json_atomic(out, {"command": "python bench/domain_ablation.py " + " ".join(sys.argv[1:]),
                               "holdout": held, "minutes": args.minutes, "rows": rows})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
