"""Group the training images into acquisition domains and show where unlabelled images fall.

    python bench/domains.py --data ../shared/dsb2018/stage1_train --out bench/results/domains.json
    python bench/domains.py --data ../shared/dsb2018/stage1_train --test ../shared/dsb2018/stage1_test \
        --out bench/results/domains.json
    python bench/domains.py --data ../shared/dsb2018/stage1_train --max-images 100   # quick look

Reads every labelled image (a minute or two for stage1_train), computes
preprocessing.domains.image_features, assigns domains, prints one row per domain (images,
colour share, mean size, median nucleus area, image types) and the default hold-out. With
--test, places each unlabelled image in its nearest training domain (image-only features)
and prints the counts, the colour images one by one, and how far each lies from its
domain's centroid next to the training images' own distances. Writes JSON: the assignment
(loadable with preprocessing.domains.load_domains), the summary, the hold-out, the features
and, with --test, the test assignment.
"""

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from preprocessing.dataset import load_dataset, load_training_samples  # noqa: E402
from preprocessing.domains import (N_DOMAINS, assign_domains, default_holdout, domain_distances,  # noqa: E402
                                   domain_reference, save_reference,
                                   image_features, kind_of, save_domains)


def summarise(domains, features, image_types):
    """One dict per domain, sorted by name: images, colour share, sizes, nuclei, types."""
    rows = []
    for name in sorted(set(domains.values())):
        ids = [i for i in sorted(domains) if domains[i] == name]
        sizes = Counter(f"{int(features[i]['height'])}x{int(features[i]['width'])}" for i in ids)
        rows.append({
            "domain": name,
            "images": len(ids),
            "colour_share": float(np.mean([features[i]["is_colour"] for i in ids])),
            "mean_height": float(np.mean([features[i]["height"] for i in ids])),
            "mean_width": float(np.mean([features[i]["width"] for i in ids])),
            "sizes": dict(sizes.most_common()),
            "median_nucleus_area": float(np.median([features[i]["median_nucleus_area"] for i in ids])),
            "median_nuclei_per_megapixel": float(np.median([features[i]["nuclei_per_megapixel"] for i in ids])),
            "image_types": dict(Counter(image_types[i] for i in ids).most_common()),
        })
    return rows


def print_table(rows, holdout):
    print(f"\n{'domain':22s} {'images':>6s} {'colour':>6s} {'mean size':>10s} {'nucleus px':>10s}  image types")
    for row in rows:
        size = f"{row['mean_height']:.0f}x{row['mean_width']:.0f}"
        types = ", ".join(f"{t} {n}" for t, n in row["image_types"].items())
        mark = "  (held out)" if row["domain"] in holdout else ""
        print(f"{row['domain']:22s} {row['images']:6d} {row['colour_share']:6.2f} {size:>10s} "
              f"{row['median_nucleus_area']:10.0f}  {types}{mark}")
    held = sum(row["images"] for row in rows if row["domain"] in holdout)
    print(f"\ndefault hold-out: {', '.join(holdout)} ({held} of {sum(r['images'] for r in rows)} images)")


def place_test_images(test_root, features, domains):
    """{image_id: {'domain', 'distance', 'kind', 'size'}} for the unlabelled images of test_root."""
    placed = {}
    for sample in load_dataset(test_root, progress=True).samples:
        test_features = image_features(sample.image)
        distances = domain_distances(test_features, features, domains)
        name = min(distances, key=lambda d: (distances[d], d))  # = nearest_domain
        placed[sample.image_id] = {"domain": name, "distance": distances[name], "kind": kind_of(test_features),
                                   "size": f"{sample.image.shape[0]}x{sample.image.shape[1]}",
                                   "features": test_features}
    return placed


def print_test(placed, features, domains):
    own = {}  # training images' distance to their own domain centroid, for scale
    for image_id, name in domains.items():
        own.setdefault(name, []).append(domain_distances(features[image_id], features, domains)[name])
    counts = Counter(p["domain"] for p in placed.values())
    print(f"\n{len(placed)} test images by nearest training domain "
          "(distance: test median / training median, in standard deviations):")
    for name in sorted(counts):
        test_distance = np.median([p["distance"] for p in placed.values() if p["domain"] == name])
        sizes = Counter(p["size"] for p in placed.values() if p["domain"] == name)
        print(f"  {name:22s} {counts[name]:3d}   {test_distance:5.2f} / {np.median(own[name]):4.2f}   "
              + ", ".join(f"{s} {n}" for s, n in sizes.most_common()))
    colour = {i: p for i, p in placed.items() if p["kind"] == "histo"}
    print(f"\n{len(colour)} colour test images:")
    for image_id, p in sorted(colour.items(), key=lambda item: (item[1]["size"], item[0])):
        f = p["features"]
        print(f"  {image_id[:12]}  {p['size']:>8s} -> {p['domain']:22s} distance {p['distance']:5.2f}  "
              f"hue {f['hue']:3.0f}  red-blue {f['red_minus_blue']:+.3f}  background {f['background_lightness']:.2f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, nargs="+", required=True, help="labelled data folders")
    parser.add_argument("--exclude", type=Path, nargs="*", default=[], help="folders whose ids are left out")
    parser.add_argument("--test", type=Path, help="unlabelled images to place in the nearest domain")
    parser.add_argument("--max-images", type=int, help="use at most this many training images (quick runs)")
    parser.add_argument("--n-domains", type=int, default=N_DOMAINS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "domains.json")
    parser.add_argument("--reference", type=Path,
                        help="also write the compact domain reference tools.predict uses to flag unfamiliar "
                             "images (weights/training_domains.json for the shipped models)")
    args = parser.parse_args(argv)

    samples = load_training_samples(args.data, args.exclude, args.max_images, args.seed)
    features = {s.image_id: image_features(s.image, s.labels) for s in samples}
    image_types = {s.image_id: s.image_type for s in samples}
    domains = assign_domains(features, args.n_domains, args.seed)
    holdout = default_holdout(domains)
    rows = summarise(domains, features, image_types)
    print_table(rows, holdout)

    extra = {
        "command": "python bench/domains.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "n_domains": args.n_domains,
        "seed": args.seed,
        "holdout": holdout,
        "summary": rows,
        "features": features,
    }
    if args.test:
        placed = place_test_images(args.test, features, domains)
        print_test(placed, features, domains)
        extra["test_domains"] = {i: p["domain"] for i, p in sorted(placed.items())}
        extra["test_distances"] = {i: p["distance"] for i, p in sorted(placed.items())}
    save_domains(args.out, domains, extra)
    print(f"\nwrote {args.out}")
    if args.reference:
        reference = domain_reference(features, domains)
        reference["command"] = extra["command"]
        save_reference(args.reference, reference)
        print(f"wrote {args.reference}")


if __name__ == "__main__":
    main()
