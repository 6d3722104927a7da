"""How the U-Net's seeds grow, per IoU threshold (issue 14): watershed surfaces on the same maps.

    python bench/watershed_growth.py --out bench/results/watershed_growth.json

The shipped U-Net's probability maps (single pass) of the validation images of
``weights/split.json`` and of the bundled sample are computed once; each growth surface of
``unet.config.WATERSHED_SURFACES`` then decodes them with the shipped parameters
(weights/unet.params.json: thresholds and post-processing). Prints, per surface, the DSB
score, the domain-balanced score (domains grouped as tools.tune does), the sample score and the
precision at IoU 0.5, 0.75, 0.9 and 0.95. A surface is worth adopting only if it wins on
validation *and* on the sample, which it was not chosen on.
"""

import argparse
import sys

from per_iou import add_data_options, load_sets, report, score_settings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_options(parser, "watershed_growth.json")
    args = parser.parse_args()

    from tools.inference.models import build_pipeline
    from tools.inference.postprocess import postprocess
    from unet.config import WATERSHED_SURFACES

    val, domains, sample = load_sets(args)
    pipeline = build_pipeline("unet")
    maps = {s.image_id: pipeline.probabilities(s.image) for s in val + sample}

    def decoder(surface):
        thresholds = {**pipeline.params.thresholds, "watershed_surface": surface}

        def labels_of(s):
            labels, scores = pipeline.dense.decode(maps[s.image_id], thresholds)
            return postprocess(labels, scores, pipeline.params.postprocess, s.image)[0]

        return labels_of

    results = score_settings({surface: decoder(surface) for surface in WATERSHED_SURFACES}, val, domains, sample)
    print(f"{len(val)} validation images ({len(set(domains.values()))} domains), {len(sample)} sample images; "
          "shipped U-Net and params")
    report(results, "surface", args.out, "python bench/watershed_growth.py " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
