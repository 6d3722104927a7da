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

``--variant-tta N`` (repeatable; N = 1 keeps the unfamiliar set's score cut without TTA) scores
the unfamiliar set with N transforms instead of 8, everything else as shipped, on the flagged
images alone (every other image is predicted as by the single pass: the router sends it there)
and times it on the stage-1 test; the two shipped ways are read from ``--out``:

    python bench/unfamiliar_tta.py --variant-tta 1 --variant-tta 2 --variant-tta 4
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


def balanced(part: str) -> bool:
    """Whether set ``part`` is scored domain-balanced (the validation sets) or as a mean over images."""
    return part == "val" or part.startswith("shifted val")


def shifts(args: argparse.Namespace) -> dict:
    """The shift choices that make the labelled sets (stored in --out, checked by --variant-tta)."""
    return {"val_seed": args.val_seed, "first_sample_seed": args.first_sample_seed,
            "sample_seeds": args.sample_seeds, "vary_colour": args.vary_colour}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "dsb2018" / "stage1_train"))
    parser.add_argument("--test", default=str(ROOT.parent / "shared" / "dsb2018" / "stage1_test"))
    parser.add_argument("--sample", default=str(ROOT / "data" / "sample" / "stage1_train"))
    parser.add_argument("--domains", default=str(ROOT / "bench" / "results" / "domains.json"))
    parser.add_argument("--sample-seeds", type=int, default=3, help="shifted sample seeds, from --first-sample-seed on")
    parser.add_argument("--first-sample-seed", type=int, default=1)
    parser.add_argument("--val-seed", type=int, default=0, help="the shifted validation's seed")
    parser.add_argument("--vary-colour", action="store_true",
                        help="shift colour images by a stain and magnification drawn per seed (protocols.shift_sample)")
    parser.add_argument("--skip-test", action="store_true", help="no stage-1 test timing")
    parser.add_argument("--test-only", action="store_true",
                        help="time the stage-1 test images again (a quiet CPU), keeping the labelled sets of --out")
    parser.add_argument("--variant-tta", type=int, action="append", default=[], metavar="N",
                        help="also score the unfamiliar set with N-way TTA (flagged images only; "
                             "keeps the two shipped ways of --out)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "unfamiliar_tta.json"))
    args = parser.parse_args()

    from preprocessing.domains import load_reference
    from tools.inference.folder import unfamiliar_image
    from tools.inference.models import build_pipeline
    from tools.inference.tuning import objective
    from tools.kaggle.metric import image_score

    reference = load_reference(ROOT / "weights" / "training_domains.json")
    pipelines = dict(zip(WAYS, (build_pipeline("mrcnn", unfamiliar_params=False), build_pipeline("mrcnn"))))
    if args.test_only:
        import json

        results = json.loads(Path(args.out).read_text())
        results["test_command"] = "python bench/unfamiliar_tta.py " + " ".join(sys.argv[1:])
        return time_test(args, pipelines, reference, results)
    sets, domains = labelled_sets(args)
    if args.variant_tta:
        return score_variants(args, sets, domains, reference, pipelines)
    results = {"command": "python bench/unfamiliar_tta.py " + " ".join(sys.argv[1:]), "shifts": shifts(args),
               "sets": {}}
    for part, items in sets.items():
        flagged = [image_id for image_id, image, _ in items if unfamiliar_image(image, reference) is not None]
        row = {"images": len(items), "flagged": flagged}
        for way, pipeline in pipelines.items():
            scores, found = {}, 0
            for image_id, image, labels in items:
                result = image_score(labels, pipeline.predict(image)[0])
                scores[image_id], found = float(result["score"]), found + result["n_pred"]
            row[way] = {"score": objective(scores, domains if balanced(part) else None),
                        "flagged_mean": float(np.mean([scores[i] for i in flagged])) if flagged else None,
                        "found": found, "per_image": scores}
        row["true"] = int(sum(len(np.unique(labels)) - 1 for _, _, labels in items))
        results["sets"][part] = row
        print(f"{part:18s} {len(flagged):2d}/{len(items)} flagged  " + "  ".join(
            f"{way}: {row[way]['score']:.4f} (flagged {row[way]['flagged_mean'] or 0:.4f}, {row[way]['found']} "
            f"of {row['true']})" for way in WAYS), flush=True)
        save_json_atomic(args.out, results)
    return time_test(args, pipelines, reference, results)


def labelled_sets(args: argparse.Namespace) -> tuple[dict[str, list], dict]:
    """{set name: [(id, image, labels)]} and the validation's domains (bench/protocols.py's shifts)."""
    from preprocessing.dataset import load_training_samples
    from protocols import shift_sample
    from tools.inference.tuning import validation_set

    val, domains = validation_set([args.data], exclude_roots=(args.sample,), run_dir=ROOT / "weights",
                                  domains=args.domains)
    sample = load_training_samples([args.sample], progress=False)
    rng = np.random.default_rng(args.val_seed)  # bench/protocols.py's shifts (seed 0 there)
    shifted_val = "shifted val" + (f" s{args.val_seed}" if args.val_seed else "")
    sets = {"val": [(s.image_id, s.image, s.labels) for s in val],
            "sample": [(s.image_id, s.image, s.labels) for s in sample],
            shifted_val: [(s.image_id, *shift_sample(s, rng, args.vary_colour)) for s in val]}
    for seed in range(args.first_sample_seed, args.first_sample_seed + args.sample_seeds):
        rng = np.random.default_rng(seed)
        sets[f"shifted sample s{seed}"] = [(s.image_id, *shift_sample(s, rng, args.vary_colour)) for s in sample]
    return sets, domains


def score_variants(args: argparse.Namespace, sets: dict[str, list], domains: dict, reference: dict,
                   pipelines: dict) -> int:
    """The unfamiliar set with each ``--variant-tta`` N on the flagged images, the rest as --out has it."""
    import json

    from tools.inference.folder import unfamiliar_image
    from tools.inference.models import build_pipeline, resolve_params
    from tools.inference.tuning import objective
    from tools.kaggle.metric import image_score

    if not Path(args.out).is_file():
        raise SystemExit(f"{args.out}: not found; run without --variant-tta first (same shift options)")
    results = json.loads(Path(args.out).read_text())
    if results.get("shifts") != shifts(args) or set(sets) - set(results["sets"]):
        raise SystemExit(f"{args.out} was made with other shifts ({results.get('shifts')}) or lacks sets of "
                         f"these ({shifts(args)}); run without --variant-tta first, with the same options")
    results["variant_command"] = "python bench/unfamiliar_tta.py " + " ".join(sys.argv[1:])
    shipped, _ = resolve_params("mrcnn", None, None)
    single = pipelines[WAYS[0]]
    variants = {}
    for ways in args.variant_tta:
        params = shipped.replace(unfamiliar=shipped.unfamiliar.replace(tta=ways))
        variants[f"unfamiliar: {ways}-way TTA"] = build_pipeline("mrcnn", params=params)
    for part, items in sets.items():
        row = results["sets"][part]
        flagged = [image_id for image_id, image, _ in items if unfamiliar_image(image, reference) is not None]
        if flagged != row["flagged"]:
            raise SystemExit(f"{part}: flagged images differ from {args.out}'s; run without --variant-tta first")
        on_flagged = [(image, labels) for image_id, image, labels in items if image_id in flagged]
        # unflagged images: the single pass, as routed; nuclei found = the single pass's less its flagged ones'
        single_flagged = sum(int(single.predict(image)[0].max()) for image, _ in on_flagged)
        for way, pipeline in variants.items():
            scores = dict(row[WAYS[0]]["per_image"])
            found = row[WAYS[0]]["found"] - single_flagged
            for image_id, image, labels in items:
                if image_id in flagged:
                    result = image_score(labels, pipeline.predict(image)[0])
                    found += result["n_pred"]
                    scores[image_id] = float(result["score"])
            row[way] = {"score": objective(scores, domains if balanced(part) else None),
                        "flagged_mean": float(np.mean([scores[i] for i in flagged])) if flagged else None,
                        "found": int(found), "per_image": scores}
        print(f"{part:18s} {len(flagged):2d}/{len(items)} flagged  " + "  ".join(
            f"{way}: {row[way]['score']:.4f} (flagged {row[way]['flagged_mean'] or 0:.4f}, {row[way]['found']})"
            for way in (*WAYS, *variants)), flush=True)
        save_json_atomic(args.out, results)
    return time_test(args, {**pipelines, **variants}, reference, results)


def time_test(args: argparse.Namespace, pipelines: dict, reference: dict, results: dict) -> int:
    """The stage-1 test images each way (in one run, so the timings compare): flagged images, nuclei
    found, pipeline seconds per image."""
    from preprocessing.dataset import read_image
    from tools.inference.folder import unfamiliar_image

    if args.skip_test:
        return 0
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
        f"{way}: {row[way]['found']} nuclei, {row[way]['seconds_per_image']:.2f} s/image" for way in pipelines))
    save_json_atomic(args.out, results)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
