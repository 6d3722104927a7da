"""Images unlike the training set decoded with 8-way TTA: the shipped Mask R-CNN with and without
its params' ``unfamiliar`` choices (issue 9)

    python bench/unfamiliar_tta.py --out bench/results/unfamiliar_tta.json

Two pipelines that differ only on the images ``tools.predict`` flags as unlike every training
acquisition (tools.inference.folder.unfamiliar_image): ``build_pipeline('mrcnn')`` as shipped
(flagged images: 8-way TTA with ``mrcnn.tta8.params.json``'s choices; flagged colour images by
the stain network, as before) and ``build_pipeline('mrcnn', unfamiliar_params=False)`` (every
image the single pass of ``mrcnn.params.json``, the shipped pipeline until session 27). Sets:

* ``val``: the 65 validation images of ``weights/split.json`` (none flagged: a check that
  nothing else moved), domain-balanced;
* ``sample``: the bundled sample (12, never trained or tuned on), mean over images;
* ``shifted val``: the validation images moved to new acquisitions, bench/protocols.py's seed 0
  (colour: pink H&E re-stain + 2x, grey: 2x or 0.6x), domain-balanced; the set the choice was
  made on (a first look at its 11 flagged images decided to build the option);
* ``shifted sample sK``: the bundled sample shifted the same way with seeds 1..``--sample-seeds``
  (never looked at before the choice);
* ``stage-1 test``: the 65 unlabelled test images: how many are flagged, nuclei found and
  seconds per image (pipeline only) both ways.

Prints each set's score both ways and the flagged images' own mean.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from preprocessing.files import save_json_atomic  # noqa: E402

WAYS = ("single pass everywhere", "unfamiliar: 8-way TTA")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "dsb2018" / "stage1_train"))
    parser.add_argument("--test", default=str(ROOT.parent / "shared" / "dsb2018" / "stage1_test"))
    parser.add_argument("--sample", default=str(ROOT / "data" / "sample" / "stage1_train"))
    parser.add_argument("--domains", default=str(ROOT / "bench" / "results" / "domains.json"))
    parser.add_argument("--sample-seeds", type=int, default=3)
    parser.add_argument("--test-only", action="store_true",
                        help="time the stage-1 test images again (a quiet CPU), keeping the labelled sets of --out")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "unfamiliar_tta.json"))
    args = parser.parse_args()

    from preprocessing.dataset import load_training_samples, read_image
    from preprocessing.domains import load_reference
    from protocols import shift_sample
    from tools.inference.folder import unfamiliar_image
    from tools.inference.models import build_pipeline
    from tools.inference.tuning import objective, validation_set
    from tools.kaggle.metric import image_score

    reference = load_reference(ROOT / "weights" / "training_domains.json")
    pipelines = dict(zip(WAYS, (build_pipeline("mrcnn", unfamiliar_params=False), build_pipeline("mrcnn"))))
    if args.test_only:
        import json

        results = json.loads(Path(args.out).read_text())
        results["test_command"] = "python bench/unfamiliar_tta.py " + " ".join(sys.argv[1:])
        return time_test(args, pipelines, reference, results)
    val, domains = validation_set([args.data], exclude_roots=(args.sample,), run_dir=ROOT / "weights",
                                  domains=args.domains)
    sample = load_training_samples([args.sample], progress=False)
    rng = np.random.default_rng(0)  # bench/protocols.py's shifts
    sets = {"val": [(s.image_id, s.image, s.labels) for s in val],
            "sample": [(s.image_id, s.image, s.labels) for s in sample],
            "shifted val": [(s.image_id, *shift_sample(s, rng)) for s in val]}
    for seed in range(1, args.sample_seeds + 1):
        rng = np.random.default_rng(seed)
        sets[f"shifted sample s{seed}"] = [(s.image_id, *shift_sample(s, rng)) for s in sample]
    balanced = {"val", "shifted val"}
    results = {"command": "python bench/unfamiliar_tta.py " + " ".join(sys.argv[1:]), "sets": {}}
    for part, items in sets.items():
        flagged = [image_id for image_id, image, _ in items if unfamiliar_image(image, reference) is not None]
        row = {"images": len(items), "flagged": flagged}
        for way, pipeline in pipelines.items():
            scores, found = {}, 0
            for image_id, image, labels in items:
                result = image_score(labels, pipeline.predict(image)[0])
                scores[image_id], found = float(result["score"]), found + result["n_pred"]
            row[way] = {"score": objective(scores, domains if part in balanced else None),
                        "flagged_mean": float(np.mean([scores[i] for i in flagged])) if flagged else None,
                        "found": found, "per_image": scores}
        row["true"] = int(sum(len(np.unique(labels)) - 1 for _, _, labels in items))
        results["sets"][part] = row
        print(f"{part:18s} {len(flagged):2d}/{len(items)} flagged  " + "  ".join(
            f"{way}: {row[way]['score']:.4f} (flagged {row[way]['flagged_mean'] or 0:.4f}, {row[way]['found']} "
            f"of {row['true']})" for way in WAYS), flush=True)
        save_json_atomic(args.out, results)
    return time_test(args, pipelines, reference, results)


def time_test(args: argparse.Namespace, pipelines: dict, reference: dict, results: dict) -> int:
    """The stage-1 test images both ways: flagged images, nuclei found, pipeline seconds per image."""
    from preprocessing.dataset import read_image
    from tools.inference.folder import unfamiliar_image

    test = [(path.parent.parent.name, read_image(path)) for path in sorted(Path(args.test).glob("*/images/*.png"))]
    row = {"images": len(test), "flagged": [i for i, image in test if unfamiliar_image(image, reference) is not None]}
    for way, pipeline in pipelines.items():
        for image_id, image in test:  # warm: the first traces and the stain network's loading are not timed
            if image_id in row["flagged"][:1] or image_id == test[0][0]:
                pipeline.predict(image)
        started, found = time.time(), 0
        for _, image in test:
            found += int(pipeline.predict(image)[0].max())
        row[way] = {"found": found, "seconds_per_image": (time.time() - started) / len(test)}
    results["sets"]["stage-1 test"] = row
    print(f"{'stage-1 test':18s} {len(row['flagged']):2d}/{len(test)} flagged  " + "  ".join(
        f"{way}: {row[way]['found']} nuclei, {row[way]['seconds_per_image']:.2f} s/image" for way in WAYS))
    save_json_atomic(args.out, results)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
