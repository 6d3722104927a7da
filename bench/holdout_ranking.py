"""Do test-time extras chosen on seen acquisitions still win on unseen ones? (issue 9)

    python bench/holdout_ranking.py --run /tmp/domain_ablation/stain --out bench/results/holdout_ranking.json
    python bench/holdout_ranking.py --run RUN --rows "single,single tuned"   # a tools.train --holdout-domains run

On the held-out stage-1 test every gain that our validation promised beyond the single pass
reversed (tuned 8-way TTA below the single pass, the ensemble below the Mask R-CNN). The shipped
models trained on every domain, so our validation could not show it. A model (U-Net or Mask
R-CNN) trained with whole domains held out (a run of bench/domain_ablation.py, or of
`tools.train --holdout-domains`: its split.json lists the seen-domain validation images and
every image of the held-out domains) can: four inference pipelines are scored on the
seen-domain validation images and on the unseen domains,

* single pass, the config's thresholds;
* 8-way TTA, the same thresholds;
* single pass, thresholds and post-processing tuned on the seen-domain images (tools.tune's
  domain-balanced search, its leave-one-domain-out check included);
* 8-way TTA, tuned the same way.

If the seen-domain order of these four differs from the unseen-domain order the way the
held-out test's did, the domain hold-out is the validation that predicts held-out results.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from preprocessing.files import save_json_atomic  # noqa: E402


def ablation(pipeline, seen: list, unseen: list, domains: dict[str, str]) -> dict[str, dict[str, float]]:
    """Which tuned post-processing value wins or loses where: {variant: {'seen', 'unseen'}}
    (domain-balanced), each tuned value alone on the defaults ('only NAME'), the tuned setting
    without it ('all but NAME'), and for a detector (scores per nucleus) the tuned setting at
    each minimum score. The network runs once per image; a U-Net's tuned decode thresholds stay."""
    from preprocessing.domains import domain_scores
    from tools.inference.postprocess import PostprocessConfig, postprocess
    from tools.kaggle.metric import image_score

    tuned = pipeline.params.postprocess.to_dict()
    default = PostprocessConfig().to_dict()
    raw = {s.image_id: pipeline.raw(s.image) for s in seen + unseen}
    variants = {"tuned": tuned, "defaults": default}
    for name in (n for n in tuned if tuned[n] != default[n]):
        variants[f"only {name} {tuned[name]}"] = {**default, name: tuned[name]}
        variants[f"all but {name}"] = {**tuned, name: default[name]}
    if any(scores is not None and len(scores) for _, scores in raw.values()):
        for cut in (0.5, 0.6, 0.7, 0.8, 0.9):
            variants.setdefault(f"tuned, min_score {cut}", {**tuned, "min_score": cut})
    truth = {s.image_id: s.labels for s in seen + unseen}
    images = {s.image_id: s.image for s in seen + unseen}
    out = {}
    for variant, post in variants.items():
        config = PostprocessConfig.from_dict(post)
        per_image = {i: float(image_score(truth[i], postprocess(*raw[i], config, images[i])[0])["score"]) for i in raw}
        out[variant] = {part: domain_scores({s.image_id: per_image[s.image_id] for s in items}, domains)["balanced_mean"]
                        for part, items in (("seen", seen), ("unseen", unseen))}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True,
                        help="a run folder with model.weights.h5 and split.json in it or beside it (U-Net or Mask R-CNN)")
    parser.add_argument("--rows", default="single,tta8,single tuned,tta8 tuned",
                        help="which of the four pipelines to score, comma-separated")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "dsb2018" / "stage1_train"))
    parser.add_argument("--domains", default=str(ROOT / "bench" / "results" / "domains.json"))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "holdout_ranking.json"))
    args = parser.parse_args()

    from preprocessing.dataset import load_training_samples
    from preprocessing.domains import domain_scores, load_domains
    from preprocessing.settings import read_json
    from tools.inference.models import build_pipeline, model_of_weights
    from tools.inference.params import InferenceParams
    from tools.inference.tuning import tune
    from tools.kaggle.metric import image_score

    run = Path(args.run)
    domains = load_domains(args.domains)
    split = read_json(run / "split.json" if (run / "split.json").is_file() else run.parent / "split.json")
    if "holdout" not in split and "source" in split:  # a tools.train run keeps the given file's name only
        split = read_json(split["source"])
    held = split["holdout"]
    wanted = set(split["val"])
    samples = [s for s in load_training_samples([args.data], progress=False) if s.image_id in wanted]
    seen = [s for s in samples if domains[s.image_id] not in held]
    unseen = [s for s in samples if domains[s.image_id] in held]
    weights = run / "model.weights.h5"
    model = model_of_weights(weights)
    wanted_rows = [name.strip() for name in args.rows.split(",") if name.strip()]
    print(f"{run}: {len(seen)} seen-domain, {len(unseen)} unseen-domain images ({', '.join(held)})", flush=True)

    def scores_of(pipeline, items):
        return {s.image_id: float(image_score(s.labels, pipeline.predict(s.image)[0])["score"]) for s in items}

    rows = {}
    for name, tta, tuned in (("single", 1, False), ("tta8", 8, False), ("single tuned", 1, True),
                             ("tta8 tuned", 8, True)):
        if name not in wanted_rows:
            continue
        started = time.time()
        pipeline = build_pipeline(model, weights=weights, params=InferenceParams(tta=tta), use_shipped_params=False,
                                  stain_models=False)
        report = None
        if tuned:
            params, report = tune(pipeline, seen, progress=False, domains={s.image_id: domains[s.image_id] for s in seen})
            pipeline = build_pipeline(model, weights=weights, params=params, use_shipped_params=False,
                                      stain_models=False)
        per_image = {**scores_of(pipeline, seen), **scores_of(pipeline, unseen)}
        row = {part: domain_scores({s.image_id: per_image[s.image_id] for s in items}, domains)
               for part, items in (("seen", seen), ("unseen", unseen))}
        row["accepted"] = None if report is None else report["accepted"]
        row["params"] = pipeline.params.to_dict()
        if tuned:
            row["ablation"] = ablation(pipeline, seen, unseen, domains)
        row["seconds"] = time.time() - started
        rows[name] = row
        print(f"{name:13s} seen {row['seen']['mean']:.4f} (balanced {row['seen']['balanced_mean']:.4f})  unseen "
              f"{row['unseen']['mean']:.4f} (balanced {row['unseen']['balanced_mean']:.4f})"
              + ("" if report is None else f"  tuning accepted: {report['accepted']}") + f"  ({row['seconds']:.0f} s)",
              flush=True)
        for variant, scores in row.get("ablation", {}).items():
            print(f"    {variant:28s} seen {scores['seen']:.4f}  unseen {scores['unseen']:.4f} (balanced)", flush=True)
        save_json_atomic(args.out, {"command": "python bench/holdout_ranking.py " + " ".join(sys.argv[1:]),
                                    "run": str(run), "holdout": held, "rows": rows})
    for part in ("seen", "unseen"):
        order = sorted(rows, key=lambda n: -rows[n][part]["balanced_mean"])
        print(f"{part:7s} order (domain-balanced): {' > '.join(order)}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
