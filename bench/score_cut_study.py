"""Is the Mask R-CNN's score cut (min score 0.8, tuned on seen acquisitions) too strict on new ones?

    python bench/score_cut_study.py --data ../shared/dsb2018/stage1_train --exclude data/sample/stage1_train \
        --domains bench/results/domains.json --test ../shared/dsb2018/stage1_test \
        --out bench/results/score_cut_study.json
    python bench/score_cut_study.py ... --params weights/mrcnn.tta8.params.json --cuts 0,0.6,0.8   # 8-way TTA

A model is less sure of nuclei in an acquisition it never saw (bench/RESULTS.md, "Do test-time
extras chosen on seen domains win on unseen ones?"): a cut learnt where it is sure may remove
true nuclei where it is not, one cause of the held-out under-count. Each image is predicted once
by the shipped Mask R-CNN as `tools.predict` does (unfamiliar stained images by the stain model),
without post-processing; the shipped post-processing then runs at each minimum score. Sets: the
65 validation images, their seeded shifted copies (bench/protocols.py), the bundled sample, and,
unlabelled, the stage-1 test images (counts only: nuclei kept per cut, and how sure the network
is there). Each set is split by `unfamiliar_image` (the flag `tools.predict` prints).

Reports per set and subset: the DSB score (mean over images and domain-balanced where domains
are known) and the nuclei found per cut, and the share of raw detections >= 0.5 that reach 0.8.
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


def raw_predictions(pipelines: dict, reference: dict, pairs) -> dict[str, dict]:
    """{image_id: {'labels', 'scores', 'unfamiliar', 'colour', 'true'}} for (image_id, image, labels|None)."""
    from preprocessing.image_types import classify_image
    from tools.inference.folder import unfamiliar_image

    out = {}
    for image_id, image, labels in pairs:
        colour = classify_image(image) == "histology"
        unfamiliar = unfamiliar_image(image, reference) is not None
        pipeline = pipelines["stain"] if (colour and unfamiliar) else pipelines["shipped"]
        predicted, scores = pipeline.raw(image)
        out[image_id] = {"labels": predicted, "scores": np.asarray(scores if scores is not None else []),
                         "unfamiliar": unfamiliar, "colour": colour, "true": labels, "image": image}
    return out


def cut_scores(raw: dict[str, dict], post: dict, cuts: list[float]) -> dict[float, dict[str, dict]]:
    """{cut: {image_id: {'score' (None unlabelled), 'found'}}} after the post-processing ``post`` at each cut."""
    from tools.inference.postprocess import PostprocessConfig, postprocess
    from tools.kaggle.metric import image_score

    table = {}
    for cut in cuts:
        config = PostprocessConfig.from_dict({**post, "min_score": cut})
        rows = {}
        for image_id, item in raw.items():
            labels, _ = postprocess(item["labels"], item["scores"], config, item["image"])
            found = int(labels.max()) if labels.size else 0
            score = (float(image_score(item["true"], labels)["score"]) if item["true"] is not None else None)
            rows[image_id] = {"score": score, "found": found}
        table[cut] = rows
    return table


def summarise(raw: dict, table: dict, domains: dict | None, ids: list[str]) -> dict:
    from tools.inference.tuning import objective

    summary = {"images": len(ids)}
    if not ids:
        return summary
    sure = [float(np.mean(raw[i]["scores"] >= 0.8)) for i in ids if len(raw[i]["scores"])]
    summary["share_sure"] = float(np.mean(sure)) if sure else None
    labelled = raw[ids[0]]["true"] is not None
    if labelled:
        summary["true"] = int(sum(int(raw[i]["true"].max()) for i in ids))
    for cut, rows in table.items():
        entry = {"found": int(sum(rows[i]["found"] for i in ids))}
        if labelled:
            per_image = {i: rows[i]["score"] for i in ids}
            entry["mean"] = objective(per_image)
            if domains:
                entry["domain_balanced"] = objective(per_image, {i: domains[i] for i in ids})
        summary[f"{cut:g}"] = entry
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", action="append", required=True)
    parser.add_argument("--exclude", action="append", default=[])
    parser.add_argument("--domains", required=True)
    parser.add_argument("--test", default=None, help="unlabelled folder (the stage-1 test): counts only")
    parser.add_argument("--sample", default=str(ROOT / "data" / "sample" / "stage1_train"))
    parser.add_argument("--weights", default=str(ROOT / "weights" / "mrcnn.weights.h5"))
    parser.add_argument("--params", default=None, help="inference params (default: the tuned file beside --weights)")
    parser.add_argument("--tta", type=int, default=None, help="test-time augmentation (default: the params')")
    parser.add_argument("--cuts", default="0.5,0.6,0.7,0.8,0.9", help="minimum scores (0 = no cut)")
    parser.add_argument("--max-images", type=int, default=None)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "score_cut_study.json"))
    args = parser.parse_args()

    from preprocessing.dataset import iter_images, load_training_samples, read_image
    from protocols import shift_sample
    from tools.inference.models import build_pipeline, training_domains_for
    from tools.inference.routing import stain_weights_for
    from tools.inference.tuning import validation_set

    cuts = [float(c) for c in args.cuts.split(",")]
    reference = training_domains_for([Path(args.weights)])
    if reference is None:  # the unfamiliar flag needs the training set's domains
        parser.error(f"--weights {args.weights}: no training_domains.json beside it (weights/ ships one; "
                     "bench/domains.py --reference writes one)")
    started = time.time()
    shipped = build_pipeline("mrcnn", weights=args.weights, params=args.params, tta=args.tta, stain_models=False)
    stain_file = stain_weights_for(args.weights)
    stain = (build_pipeline("mrcnn", weights=stain_file, params=shipped.params, stain_models=False)
             if stain_file else shipped)
    post = shipped.params.postprocess.to_dict()
    samples, domains = validation_set(args.data, 0.1, 0, args.max_images, args.exclude, domains=args.domains)
    rng = np.random.default_rng(0)  # the same shifts as bench/protocols.py
    sets = {"validation": [(s.image_id, s.image, s.labels) for s in samples],
            "shifted": [(s.image_id, *shift_sample(s, rng)) for s in samples]}
    if args.sample:
        sets["sample"] = [(s.image_id, s.image, s.labels) for s in load_training_samples([args.sample], progress=False)]
    if args.test:
        found = sorted(iter_images(args.test))[: args.max_images]
        sets["test"] = [(image_id, read_image(path), None) for image_id, path in found]
    pipelines = {"shipped": shipped, "stain": stain}
    results = {}
    for name, pairs in sets.items():
        raw = raw_predictions(pipelines, reference, pairs)
        table = cut_scores(raw, post, cuts)
        set_domains = domains if name in ("validation", "shifted") else None
        flagged = [i for i in raw if raw[i]["unfamiliar"]]
        results[name] = {
            "all": summarise(raw, table, set_domains, list(raw)),
            "familiar": summarise(raw, table, set_domains, [i for i in raw if not raw[i]["unfamiliar"]]),
            "unfamiliar": summarise(raw, table, set_domains, flagged),
            "unfamiliar_grey": summarise(raw, table, set_domains, [i for i in flagged if not raw[i]["colour"]]),
            "unfamiliar_colour": summarise(raw, table, set_domains, [i for i in flagged if raw[i]["colour"]]),
            "per_image": {i: {"unfamiliar": raw[i]["unfamiliar"], "colour": raw[i]["colour"],
                              **{f"{c:g}": table[c][i] for c in cuts}} for i in raw}}
        for subset in ("all", "familiar", "unfamiliar", "unfamiliar_grey", "unfamiliar_colour"):
            row = results[name][subset]
            if not row["images"]:
                continue
            cells = []
            for cut in cuts:
                entry = row[f"{cut:g}"]
                value = entry.get("domain_balanced", entry.get("mean"))
                cells.append(f"{cut:g}: " + (f"{value:.4f} " if value is not None else "") + f"({entry['found']})")
            true = f" of {row['true']}" if "true" in row else ""
            print(f"{name:10s} {subset:17s} {row['images']:3d} images, sure {row['share_sure'] or 0:.2f}{true}  "
                  + "  ".join(cells), flush=True)
    save_json_atomic(args.out, {"command": "python bench/score_cut_study.py " + " ".join(sys.argv[1:]),
                                "cuts": cuts, "postprocess": post, "results": results,
                                "seconds": time.time() - started})
    print(f"wrote {args.out} ({time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
