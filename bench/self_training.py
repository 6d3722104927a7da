"""Self-training on a folder of unlabelled images from a new acquisition: does a Mask R-CNN
fine-tuned on its own (test-time-augmented) predictions for those images segment them better?
(issue 9: unseen stains and sizes; no labels of the target images are used in training.)

    python bench/self_training.py --minutes 20 --out bench/results/self_training.json

The target folder is the ``shifted`` protocol of bench/protocols.py: the 65 validation images of
``weights/split.json`` moved to acquisitions the training set lacks (colour images re-stained as
pink H&E and magnified 2x, grey ones magnified 2x or shrunk to 0.6x; seed 0), whose true masks
are known, so the adaptation can be scored. Steps:

1. the teacher, the shipped Mask R-CNN pipeline with 8-way TTA and its params
   (weights/mrcnn.tta8.params.json, routed to the stain model as shipped), labels every target
   image; the labels are written as a training folder (WORK/pseudo_labels, the labels layout);
2. ``tools.train mrcnn`` fine-tunes the shipped weights for ``--minutes``, heads only, on
   * ``single``: the shipped training split (the control: as much training, no target images);
   * ``pseudo``: the 65 pseudo-labelled target images plus ``--anchor`` images drawn from the
     shipped training split (about half the crops come from the target images);
   * ``pseudo-4+``: the same, training the backbone's stages 4 and 5 as well (``--layers 4+``);
   a run WORK already holds is scored without training again;
3. the shipped pipeline and each run, single pass with the shipped params, are scored on the
   target images (the figure self-training is for), on the validation images (the pseudo run saw
   shifted copies of them, so that figure is not clean) and on the bundled sample (clean).

Budgets are CPU time: run nothing else meanwhile.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from per_iou import ROOT, add_data_options, load_sets, score_settings, train_variants
from protocols import shift_sample

SHIPPED = ROOT / "weights" / "mrcnn.weights.h5"


def target_images(val: list, seed: int = 0) -> list:
    """The validation samples moved to unseen acquisitions (protocols.shift_sample), ids unchanged."""
    from preprocessing.dataset import Sample
    from preprocessing.image_types import classify_image

    rng = np.random.default_rng(seed)
    moved = []
    for sample in val:
        image, labels = shift_sample(sample, rng)
        moved.append(Sample(sample.image_id, image, labels, classify_image(image), sample.path))
    return moved


def write_pseudo_labels(targets: list, folder: Path, teacher) -> int:
    """Write each target image with the teacher's labels (ids suffixed '-pseudo') as a labels-layout
    training folder; the number of nuclei written."""
    from preprocessing.dataset import Sample, save_labels_layout

    pseudo = [Sample(f"{s.image_id}-pseudo", s.image, teacher.predict(s.image)[0].astype(np.int32),
                     s.image_type, s.path) for s in targets]
    save_labels_layout(pseudo, folder)
    return sum(int(s.labels.max()) for s in pseudo)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_options(parser, "self_training.json")
    parser.add_argument("--minutes", type=float, default=20.0, help="training budget of each run")
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--augment", default="light", help="the shipped model's own (weights/mrcnn.json)")
    parser.add_argument("--anchor", type=int, default=130, help="real training images beside the target ones")
    parser.add_argument("--work", default="/tmp/self_training")
    parser.add_argument("--variants", default="single,pseudo")
    parser.add_argument("--score-only", action="store_true", help="train nothing; score the runs --work holds")
    args = parser.parse_args()

    from preprocessing.files import save_json_atomic
    from preprocessing.settings import read_json
    from preprocessing.split import read_split, save_split
    from tools.inference.models import build_pipeline
    from tools.inference.tuning import objective
    from tools.kaggle.metric import dataset_score

    work = Path(args.work)
    val, domains, sample = load_sets(args)
    targets = target_images(val)
    pseudo_folder = work / "pseudo_labels"  # not a variant name: WORK/NAME is that run's folder
    teacher_file = pseudo_folder / "teacher.json"
    if not teacher_file.is_file():  # the teacher's labels are made once per WORK
        teacher = build_pipeline("mrcnn", params=ROOT / "weights" / "mrcnn.tta8.params.json")
        save_json_atomic(teacher_file, {"nuclei": write_pseudo_labels(targets, pseudo_folder, teacher)})
    found = read_json(teacher_file)["nuclei"]
    print(f"teacher: {found} nuclei on {len(targets)} target images "
          f"({sum(int(s.labels.max()) for s in targets)} true)", flush=True)
    train_ids, val_ids = read_split(ROOT / "weights" / "split.json")
    anchor = list(np.random.default_rng(0).choice(sorted(train_ids), size=args.anchor, replace=False))
    pseudo_ids = [f"{s.image_id}-pseudo" for s in targets]
    save_split(work / "split_pseudo.json", anchor + pseudo_ids, val_ids,
               {"rule": "bench/self_training.py: pseudo-labelled target images + anchor training images"})

    command = [sys.executable, "-m", "tools.train", "mrcnn", "--data", args.data, "--exclude", args.sample,
               "--config", str(ROOT / "weights" / "mrcnn.json"), "--warm-start", str(SHIPPED),
               "--layers", "heads", "--augment", args.augment, "--learning-rate", str(args.learning_rate),
               "--time-limit", str(int(args.minutes * 60)), "--epochs", "10000", "--no-val-score", "--export", "last"]
    on_pseudo = ["--data", str(pseudo_folder), "--split", str(work / "split_pseudo.json")]
    options = {"single": ["--split", str(ROOT / "weights" / "split.json")],
               "pseudo": on_pseudo,
               "pseudo-4+": [*on_pseudo, "--layers", "4+"]}  # also the backbone's last stages
    names = args.variants.split(",")
    # a run WORK already holds is scored, not trained again (e.g. a control copied from another bench)
    untrained = {name: options[name] for name in names if not (work / name / "model.weights.h5").is_file()}
    train_variants(work, {} if args.score_only else untrained, command)
    runs = {name: work / name / "model.weights.h5" for name in names}

    params = ROOT / "weights" / "mrcnn.params.json"
    results = {}
    # the shipped weights come with their stain model, so "shipped" is routed as shipped; the runs
    # have none beside them and are one network each (bench/adabn_study.py scores that for the shipped)
    for name, weights in [("shipped", SHIPPED), *runs.items()]:
        pipeline = build_pipeline("mrcnn", weights=weights, params=params)
        predicted = {s.image_id: pipeline.predict(s.image)[0] for s in val + sample}
        row = score_settings({name: lambda s, predicted=predicted: predicted[s.image_id]}, val, domains, sample)[name]
        on_targets = dataset_score([(s.image_id, s.labels, pipeline.predict(s.image)[0]) for s in targets])
        row["target"] = on_targets["score"]
        row["target_balanced"] = objective({r["id"]: r["score"] for r in on_targets["per_image"]}, domains)
        row["target_per_iou"] = [float(v) for v in on_targets["per_threshold"]]
        row["target_found"] = int(sum(r["n_pred"] for r in on_targets["per_image"]))
        results[name] = row
        print(f"{name:10s} target {row['target']:.4f} (balanced {row['target_balanced']:.4f}, "
              f"{row['target_found']} nuclei)  val {row['val']:.4f} (balanced {row['val_balanced']:.4f})  "
              f"sample {row['sample']:.4f}", flush=True)
    save_json_atomic(args.out, {"command": "python bench/self_training.py " + " ".join(sys.argv[1:]),
                                "teacher_nuclei": found, "true_nuclei": sum(int(s.labels.max()) for s in targets),
                                "results": results})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
