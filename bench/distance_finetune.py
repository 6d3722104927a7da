"""The U-Net's distance head against none, both fine-tuned from the shipped U-Net on the CPU (issue 14).

    python bench/distance_finetune.py --minutes 15 --out bench/results/distance_finetune.json

Two runs of ``tools.train unet`` from the shipped weights, the same minutes, data, split
(``weights/split.json``), augmentation, learning rate and seed:

* ``control``: the shipped architecture (``--warm-start weights/unet.weights.h5``), which
  separates the effect of more training from the effect of the head;
* ``distance``: ``--distance-head`` (every other layer warm-started, the head fresh).

Each run's maps of the validation images of ``weights/split.json`` and of the bundled sample
are computed once and decoded with the shipped params (weights/unet.params.json); the distance
model also with its seeds from the distance map (``seed_source='distance'``, at each
``--distance-seeds`` threshold) and with seeds growing over the predicted distance
(``watershed_surface='predicted_distance'``). Prints the DSB score, the domain-balanced score,
the sample score and the precision at IoU 0.5 / 0.75 / 0.9 / 0.95 of each (bench/per_iou.py).
The head is worth a GPU run if, decoded as it will be shipped, it beats ``control`` on
validation and on the sample, which no threshold here was chosen on. Budgets are CPU time: run
nothing else meanwhile.
"""

import argparse
import sys
from pathlib import Path

from per_iou import ROOT, add_data_options, load_sets, report, score_settings, train_variants

VARIANTS = {
    "control": [],
    "distance": ["--distance-head"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_options(parser, "distance_finetune.json")
    parser.add_argument("--minutes", type=float, default=15.0, help="training budget of each run")
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--augment", default="heavy", help="the shipped U-Net's own (bench/RESULTS.md)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0, help="training seed of both runs")
    parser.add_argument("--distance-seeds", default="0.4,0.5,0.6,0.7",
                        help="seed thresholds on the distance map to decode the distance model with")
    parser.add_argument("--work", default="/tmp/distance_finetune")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--score-only", action="store_true", help="score the runs --work already holds")
    args = parser.parse_args()

    from tools.inference.models import build_pipeline
    from tools.inference.postprocess import postprocess

    params = ROOT / "weights" / "unet.params.json"
    command = [sys.executable, "-m", "tools.train", "unet", "--data", args.data, "--exclude", args.sample,
               "--split", str(ROOT / "weights" / "split.json"), "--config", str(ROOT / "weights" / "unet.json"),
               "--warm-start", str(ROOT / "weights" / "unet.weights.h5"), "--augment", args.augment,
               "--learning-rate", str(args.learning_rate), "--batch-size", str(args.batch_size),
               "--seed", str(args.seed), "--time-limit", str(int(args.minutes * 60)), "--epochs", "10000",
               "--steps-per-epoch", "50", "--no-val-score", "--export", "last"]
    variants = {name: VARIANTS[name] for name in args.variants.split(",")}
    runs = train_variants(Path(args.work), variants, command, args.score_only)

    val, domains, sample = load_sets(args)
    settings = {}
    for name, weights in [("shipped", ROOT / "weights" / "unet.weights.h5"), *runs.items()]:
        pipeline = build_pipeline("unet", weights=weights, params=params)
        maps = {s.image_id: pipeline.probabilities(s.image) for s in val + sample}
        decodes = {name: {}}
        if pipeline.dense.predictor.config.distance_head:
            for threshold in args.distance_seeds.split(","):
                decodes[f"{name}, distance seeds {threshold}"] = {"seed_source": "distance",
                                                                   "seed_threshold": float(threshold)}
            decodes[f"{name}, grown over the distance"] = {"watershed_surface": "predicted_distance"}
        for label, changes in decodes.items():
            thresholds = {**pipeline.params.thresholds, **changes}

            def labels_of(s, maps=maps, thresholds=thresholds, pipeline=pipeline):
                labels, scores = pipeline.dense.decode(maps[s.image_id], thresholds)
                return postprocess(labels, scores, pipeline.params.postprocess, s.image)[0]

            settings[label] = labels_of
    results = score_settings(settings, val, domains, sample)
    print(f"{len(val)} validation images, {len(sample)} sample images; shipped params ({params.name})")
    report(results, "model", args.out, "python bench/distance_finetune.py " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
