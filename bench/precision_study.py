"""Does bfloat16 arithmetic cost quality? Each shipped pipeline in float32 and bfloat16 (issue 10's fast preset).

    python bench/precision_study.py --out bench/results/precision_study.json

The shipped weights and params, single pass, on the validation images of ``weights/split.json``
and on the bundled sample, per IoU threshold (bench/per_iou.py); also the number of nuclei
each finds there. bfloat16 (``tools.predict --precision bfloat16``) is worth shipping as the
fast preset of a pipeline only if it loses nothing that matters on either set. Speed is
bench/bench_predict_stages.py's (``--models mrcnn,mrcnn-bf16``).
"""

import argparse
import sys

import numpy as np

from per_iou import add_data_options, load_sets, report, score_settings

PIPELINES = ("unet", "mrcnn", "ensemble")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_options(parser, "precision_study.json")
    parser.add_argument("--pipelines", default=",".join(PIPELINES), help="comma-separated, of " + ", ".join(PIPELINES))
    args = parser.parse_args()

    from tools.inference.models import build_pipeline

    val, domains, sample = load_sets(args)
    def nuclei(labels) -> int:  # ids need not be consecutive after post-processing
        return int(np.count_nonzero(np.unique(labels)))

    settings, counts = {}, {}
    for model in args.pipelines.split(","):
        for precision in ("float32", "bfloat16"):
            pipeline = build_pipeline(model, precision=precision)
            name = f"{model} {precision}"
            predicted = {s.image_id: pipeline.predict(s.image)[0] for s in val + sample}
            counts[name] = {"val": sum(nuclei(predicted[s.image_id]) for s in val),
                            "sample": sum(nuclei(predicted[s.image_id]) for s in sample)}
            settings[name] = lambda s, predicted=predicted: predicted[s.image_id]
            print(f"{name}: {counts[name]['val']} nuclei on validation, {counts[name]['sample']} on the sample",
                  flush=True)
    results = score_settings(settings, val, domains, sample)
    for name, row in results.items():
        row["nuclei"] = counts[name]
    print(f"{len(val)} validation images ({len(set(domains.values()))} domains), {len(sample)} sample images "
          f"(true nuclei: {sum(nuclei(s.labels) for s in val)} / {sum(nuclei(s.labels) for s in sample)})")
    report(results, "pipeline", args.out, "python bench/precision_study.py " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
