"""Pick post-processing (and U-Net watershed / ensemble thresholds) on the validation split only.

Usage::

    python -m tools.tune --model unet --weights W --data DIR --out params.json [--tta N]
    python -m tools.tune --model mrcnn --weights W --data DIR --out params.json
    python -m tools.tune --ensemble --unet-weights U --mrcnn-weights M --data DIR --out params.json

The validation images are the ones training held out: the ids of ``--run RUN_DIR/split.json``,
or the same ``preprocessing.split.stratified_split`` over ``--data`` with the same
``--val-fraction`` and ``--seed`` as ``python -m tools.train`` (defaults 0.1 and 0).
Training images are never scored.

Validation images are grouped into acquisition domains (``--domains auto``: computed from
every labelled image of ``--data`` with preprocessing.domains; or a file from
bench/domains.py). The search maximises the domain-balanced mean (each domain weighs the
same), then a leave-one-domain-out check tunes on all domains but one and scores the one
left out, for each domain: a tuned setting that does not beat the defaults there is not
written — the defaults are (``--keep-tuned`` writes it anyway). The search is
:mod:`tools.inference.tuning`'s; the result is a parameters file that
``python -m tools.predict --params params.json`` reads.
"""

import argparse
import sys
import time

from tools.cli import run_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.tune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("unet", "mrcnn"), default="unet")
    parser.add_argument("--weights", help="weights file (config JSON beside it); default: weights/<model>")
    parser.add_argument("--ensemble", action="store_true", help="tune the U-Net + Mask R-CNN ensemble")
    parser.add_argument("--unet-weights")
    parser.add_argument("--mrcnn-weights")
    parser.add_argument("--data", action="append", required=True, help="data root training used (repeatable)")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="as given to tools.train (default 0.1)")
    parser.add_argument("--seed", type=int, default=0, help="as given to tools.train (default 0)")
    parser.add_argument("--exclude", action="append", default=[],
                        help="as given to tools.train: folder whose image ids training left out (repeatable)")
    parser.add_argument("--max-images", type=int, default=None, help="tune on at most this many validation images")
    parser.add_argument("--tta", type=int, default=1, metavar="N", help="test-time transforms (1..15)")
    parser.add_argument("--mask-threshold", type=float, default=None, metavar="P",
                        help="Mask R-CNN: paste masks at this probability while tuning, and write it "
                             "(the shipped params use 0.6, chosen by bench/mask_paste.py); default: the config's")
    parser.add_argument("--rounds", type=int, default=2, help="coordinate-descent passes (default 2)")
    parser.add_argument("--run", metavar="RUN_DIR",
                        help="training run folder: score exactly the validation ids of its split.json")
    parser.add_argument("--domains", default="auto", metavar="FILE|auto|none",
                        help="acquisition domains of the images: 'auto' (default), a file from "
                             "bench/domains.py, or 'none' (plain mean, no cross-domain check)")
    parser.add_argument("--space", choices=("small", "full"), default="small",
                        help="parameters searched: 'small' (few: main thresholds, min size, min score, "
                             "closing; default) or 'full' (every knob)")
    parser.add_argument("--keep-tuned", action="store_true",
                        help="write the tuned setting even when it loses to the defaults on held-out domains")
    parser.add_argument("--out", required=True, help="parameters JSON for tools.predict --params")
    return parser


def run_tuning(args: argparse.Namespace) -> int:
    from preprocessing.errors import NucleiError
    from tools.inference.models import build_pipeline
    from tools.inference.params import InferenceParams, save_params
    from tools.inference.tuning import tune, validation_set

    model = "ensemble" if args.ensemble else args.model
    if args.mask_threshold is not None and model != "mrcnn":
        raise NucleiError("--mask-threshold is for --model mrcnn (the ensemble uses the config's)")
    mask_threshold = {"mask_threshold": args.mask_threshold} if args.mask_threshold is not None else {}
    pipeline = build_pipeline(model, weights=args.weights, unet_weights=args.unet_weights,
                              mrcnn_weights=args.mrcnn_weights,
                              params=InferenceParams(tta=args.tta, thresholds=mask_threshold),
                              stain_models=False)  # params are tuned for the shipped networks
    domain_source = None if args.domains == "none" else args.domains
    samples, domains = validation_set(args.data, args.val_fraction, args.seed, args.max_images, args.exclude,
                                      args.run, domains=domain_source)
    named = f", {len(set(domains.values()))} domains" if domains else ""
    print(f"tuning on {len(samples)} validation images{named} (val_fraction={args.val_fraction}, seed={args.seed})")
    started = time.time()
    params, report = tune(pipeline, samples, args.rounds, domains=domains, space=args.space,
                          keep_tuned=args.keep_tuned)
    kept_anyway = args.keep_tuned and not report["accepted"]
    report.update(model=model, val_ids=[s.image_id for s in samples], seconds=time.time() - started,
                  domains=domains, command="python -m tools.tune " + " ".join(sys.argv[1:]))
    save_params(params, args.out, report)
    print(_summary(report, kept_anyway))
    if params.thresholds:
        print("thresholds: " + ", ".join(f"{k}={v}" for k, v in params.thresholds.items()))
    if model == "ensemble":
        print("ensemble: " + ", ".join(f"{k}={v}" for k, v in params.ensemble.to_dict().items()))
    print("postprocess: " + ", ".join(f"{k}={v}" for k, v in params.postprocess.to_dict().items()))
    print(f"parameters: {args.out} (use: python -m tools.predict --params {args.out} ...)")
    return 0


def _summary(report: dict, kept_anyway: bool) -> str:
    """The lines that say what was found and whether it held on unseen domains."""
    lines = [f"validation {report['objective']}: {report['baseline_score']:.4f} with defaults -> "
             f"{report['tuned_score']:.4f} tuned ({report['evaluations']} settings tried, space {report['space']})"]
    cross = report["cross_domain"]
    if cross is not None:
        lines.append(f"held-out domains (leave one domain out, {cross['folds']} folds): "
                     f"tuned {cross['tuned']:.4f} vs defaults {cross['default']:.4f}")
        for name, row in cross["per_domain"].items():
            lines.append(f"  {name:24s} {row['images']:4d} images  tuned {row['tuned']:.4f}  default {row['default']:.4f}")
        if kept_anyway:
            lines.append("the tuned setting loses to the defaults on held-out domains; written anyway (--keep-tuned)")
        elif not report["accepted"]:
            lines.append("the tuned setting loses to the defaults on held-out domains: writing the defaults")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser, run_tuning, argv)


if __name__ == "__main__":
    sys.exit(main())
