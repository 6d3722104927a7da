"""The main job on the bundled sample: predict with the shipped weights, write a submission,
score it against the sample's labels, and say where the overlays and the contact sheet are.

``python -m tools.demo [--model unet|mrcnn|ensemble|all] [--out out/demo]`` (``make demo`` runs it;
``all``: each model alone, then their ensemble).
The bundled images were left out of the shipped models' training, so the score is honest.
"""

import argparse
import sys
from pathlib import Path

from tools.cli import run_command

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample" / "stage1_train"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("unet", "mrcnn", "ensemble", "all"), default="all")
    parser.add_argument("--out", default="out/demo")
    return parser


def run_model(model: str, out_dir: Path) -> float:
    """Predict the sample with the shipped weights (and their tuned parameters), then score it."""
    from preprocessing.dataset import load_dataset
    from tools.inference.folder import predict_folder, report_against_truth
    from tools.inference.models import build_pipeline
    from tools.kaggle.scoring import evaluate_submission, format_report

    truth = {s.image_id: s for s in load_dataset(SAMPLE, progress=False).samples if s.labels is not None}
    keep = dict.fromkeys(truth)
    counts = predict_folder(build_pipeline(model), SAMPLE, out_dir, keep_labels=keep)
    report_against_truth(truth, keep, out_dir)
    result = evaluate_submission(out_dir / "submission.csv", labels_dir=SAMPLE)
    print(format_report(result))
    print(f"[{model}] {len(counts)} images, {sum(counts.values())} nuclei predicted")
    print(f"[{model}] submission:    {out_dir / 'submission.csv'}")
    print(f"[{model}] overlays:      {out_dir / 'overlays'}/  (outlines drawn on each image)")
    print(f"[{model}] contact sheet: {out_dir / 'contact_sheet.png'}  (green: found, red: invented, "
          f"yellow: missed; {out_dir / 'contact_sheet.html'})")
    print(f"[{model}] score: {result['score']:.4f}")
    return result["score"]


def demo(args: argparse.Namespace) -> int:
    from tools.inference.models import DEFAULT_WEIGHTS

    models = ["unet", "mrcnn", "ensemble"] if args.model == "all" else [args.model]
    scores = {}
    for model in models:
        needed = [DEFAULT_WEIGHTS[m] for m in (("unet", "mrcnn") if model == "ensemble" else (model,))]
        missing = [str(path) for path in needed if not path.is_file()]
        if args.model == "all" and missing:
            print(f"[{model}] no shipped weights at {', '.join(missing)}; skipped")
            continue
        scores[model] = run_model(model, Path(args.out) / model)
    if not scores:
        print("error: no shipped weights found in weights/", file=sys.stderr)
        return 2
    print("summary: " + ", ".join(f"{m} {s:.4f}" for m, s in scores.items()))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser, demo, argv)


if __name__ == "__main__":
    sys.exit(main())
