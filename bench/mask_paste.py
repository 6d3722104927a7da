"""How the Mask R-CNN's masks become outlines, per IoU threshold (issue 14).

    python bench/mask_paste.py --out bench/results/mask_paste.json
    python bench/mask_paste.py --weights RUN/model.weights.h5 --settings soft:0.5,soft:0.6,soft:0.7 --out m.json

The shipped Mask R-CNN's detections (single pass) on the validation images of
``weights/split.json`` and on the bundled sample are computed once; each (MASK_PASTE,
MASK_THRESHOLD) pair then pastes them (mrcnn.paste.detections_to_labels) and the shipped
post-processing (weights/mrcnn.params.json) runs. Prints, per pair, the DSB score, the
domain-balanced score, the sample score and the precision at IoU 0.5, 0.75, 0.9 and 0.95.
A setting is worth adopting only if it wins on validation *and* on the sample (0.6 did:
weights/mrcnn.params.json carries it).
"""

import argparse
import sys

from per_iou import ROOT, add_data_options, load_sets, report, score_settings

SETTINGS = (("soft", 0.5), ("binary", 0.5), ("soft", 0.4), ("soft", 0.6), ("soft", 0.7), ("soft", 0.8))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_options(parser, "mask_paste.json")
    parser.add_argument("--weights", help="another Mask R-CNN (its config JSON beside it; default: the shipped one)")
    parser.add_argument("--settings", help="MODE:THRESHOLD,... (default: " +
                        ",".join(f"{m}:{t}" for m, t in SETTINGS) + ")")
    args = parser.parse_args()
    settings = SETTINGS
    if args.settings:
        try:
            settings = [(mode, float(value)) for mode, value in
                        (item.split(":") for item in args.settings.split(","))]
        except ValueError:
            parser.error(f"--settings {args.settings!r}: expected MODE:THRESHOLD,... such as soft:0.6")
        from mrcnn.paste import PASTE_MODES

        if any(mode not in PASTE_MODES for mode, _ in settings):
            parser.error(f"--settings {args.settings!r}: MODE is one of {', '.join(PASTE_MODES)}")

    from mrcnn.paste import detections_to_labels
    from tools.inference.models import build_pipeline
    from tools.inference.postprocess import postprocess

    val, domains, sample = load_sets(args)
    # the shipped params (post-processing) whatever the network
    pipeline = build_pipeline("mrcnn", weights=args.weights, params=ROOT / "weights" / "mrcnn.params.json")
    detections = {s.image_id: pipeline.instance.predictor.detect(s.image) for s in val + sample}

    def paster(mode, threshold):
        def labels_of(s):
            d = detections[s.image_id]
            labels, scores, _ = detections_to_labels(d["boxes"], d["scores"], d["masks"], d["image_shape"],
                                                     threshold, mode=mode)
            return postprocess(labels, scores, pipeline.params.postprocess, s.image)[0]

        return labels_of

    results = score_settings({f"{mode} {threshold}": paster(mode, threshold) for mode, threshold in settings},
                             val, domains, sample)
    print(f"{len(val)} validation images ({len(set(domains.values()))} domains), {len(sample)} sample images; "
          f"{args.weights or 'shipped Mask R-CNN'}, shipped post-processing")
    report(results, "paste, threshold", args.out, "python bench/mask_paste.py " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
