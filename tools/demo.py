"""The main job on the bundled sample: predict with the shipped weights, write a submission,
score it against the sample's labels, and say where the overlays are.

``python -m tools.demo [--model unet|mrcnn|ensemble|all] [--out out/demo]`` (``make demo`` runs it;
``all``: each model alone, then their ensemble).
The bundled images were left out of the shipped models' training, so the score is honest.
"""

import argparse
import sys
import warnings
from pathlib import Path

from preprocessing.errors import NucleiError

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample" / "stage1_train"


def run_model(model, out_dir):
    """Predict the sample with the shipped weights (and their tuned parameters), then score it."""
    from tools.evaluate import evaluate_submission, format_report
    from tools.predict import build_parser, build_pipeline, predict_folder

    selection = ["--ensemble"] if model == "ensemble" else ["--model", model]
    args = build_parser().parse_args(selection + ["--images", str(SAMPLE), "--out", str(out_dir)])
    counts = predict_folder(build_pipeline(args), SAMPLE, out_dir)
    result = evaluate_submission(out_dir / "submission.csv", labels_dir=SAMPLE)
    print(format_report(result))
    print(f"[{model}] {len(counts)} images, {sum(counts.values())} nuclei predicted")
    print(f"[{model}] submission: {out_dir / 'submission.csv'}")
    print(f"[{model}] overlays:   {out_dir / 'overlays'}/  (outlines drawn on each image)")
    print(f"[{model}] score: {result['score']:.4f}")
    return result["score"]


def main(argv=None):
    warnings.filterwarnings("ignore", category=FutureWarning)
    parser = argparse.ArgumentParser(prog="python -m tools.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("unet", "mrcnn", "ensemble", "all"), default="all")
    parser.add_argument("--out", default="out/demo")
    args = parser.parse_args(argv)
    from tools.predict import DEFAULT_WEIGHTS

    models = ["unet", "mrcnn", "ensemble"] if args.model == "all" else [args.model]
    scores = {}
    try:
        for model in models:
            needed = [DEFAULT_WEIGHTS[m] for m in (("unet", "mrcnn") if model == "ensemble" else (model,))]
            missing = [str(path) for path in needed if not path.is_file()]
            if args.model == "all" and missing:
                print(f"[{model}] no shipped weights at {', '.join(missing)}; skipped")
                continue
            scores[model] = run_model(model, Path(args.out) / model)
    except NucleiError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not scores:
        print("error: no shipped weights found in weights/", file=sys.stderr)
        return 2
    print("summary: " + ", ".join(f"{m} {s:.4f}" for m, s in scores.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
