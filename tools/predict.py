"""Predict nuclei: ``python -m tools.predict --model unet --weights FILE --images DIR --out OUTDIR``.

Writes:
    OUTDIR/submission.csv        Kaggle's ImageId,EncodedPixels (atomic, no overlapping nuclei)
    OUTDIR/labels/<id>.png       16-bit instance label image per input
    OUTDIR/overlays/<id>.png     nucleus outlines drawn on the image (unless --no-overlays)

    OUTDIR/contact_sheet.html    with --labels: true positives, false positives and misses per image
    OUTDIR/contact_sheet.png     (the same as one picture) and OUTDIR/score.json

    OUTDIR/run.json              the run's settings and image ids ("finished" once done)
    OUTDIR/.records/<id>.json    each image's nuclei, written as soon as it is predicted

``--images`` takes Kaggle's layout (<id>/images/<id>.png) or a flat folder of images.
Without ``--weights`` the shipped weights in weights/ are used.

Several machines: ``--shard K/N`` predicts every N-th image of the sorted ids (starting at the
K-th), each shard into its own --out; ``python -m tools.merge_submissions OUT.csv DIR...`` joins
them. ``--resume`` skips the images a killed run of the same settings finished (refused, naming
the setting, when they differ) and writes the same submission as an uninterrupted run.

Test time: ``--tta N`` averages N of the 15 transforms of tools/inference/tta.py (``--tta 15``: all);
``--ensemble`` combines the U-Net and Mask R-CNN (tools/inference/ensemble.py); ``--dilate``,
``--fill-holes``, ``--closing``, ``--min-size``, ``--max-count``, ``--drop-inverted`` post-process every
image (tools/inference/postprocess.py); ``--params`` reads the choices made by ``python -m tools.tune``
(flags given on the command line win). ``--preset fast``: the Mask R-CNN in bfloat16 (where the
CPU computes it natively), one pass for every image (``--no-unfamiliar-params``), the fastest
pipeline at the shipped quality.
"""

import argparse
import sys
import time
from pathlib import Path

from preprocessing.precision import PRECISION_CHOICES, resolve_precision
from tools.cli import run_command


# --preset NAME: choices for a kind of use; options given on the command line override them.
# fast: auto = bfloat16 where the CPU has it; one pass for every image, flagged ones included
PREDICT_PRESETS = {"fast": {"model": "mrcnn", "precision": "auto", "no_unfamiliar_params": True}}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("unet", "mrcnn"), default=None,
                        help="default: the model of --weights (its config), else the preset's, else unet")
    parser.add_argument("--preset", choices=sorted(PREDICT_PRESETS),
                        help="'fast': the Mask R-CNN in bfloat16 where the CPU computes it natively (faster than "
                             "StarDist on the same CPU at the shipped quality, bench/RESULTS.md); options given "
                             "explicitly override it")
    parser.add_argument("--weights", help="weights file (its config JSON beside it); default: weights/<model>")
    parser.add_argument("--images", required=True, help="folder in Kaggle's layout or a flat folder of images")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--no-overlays", action="store_true", help="do not write overlay PNGs")
    parser.add_argument("--no-labels", action="store_true", help="do not write label PNGs")
    parser.add_argument("--shard", type=_shard, metavar="K/N",
                        help="predict only shard K of N: every N-th image of the sorted ids, from the K-th "
                             "(N machines, each its own --out; merge with python -m tools.merge_submissions)")
    parser.add_argument("--resume", action="store_true",
                        help="skip images a run of the same settings already finished in --out (refused if the "
                             "settings differ); without it every image is predicted again")
    tta = parser.add_argument_group("test time")
    tta.add_argument("--tta", type=int, default=None, metavar="N",
                     help="test-time transforms, 1..15 (1 = single pass; 15 = all of tools/inference/tta.py)")
    tta.add_argument("--ensemble", action="store_true",
                     help="combine the U-Net and Mask R-CNN (Mask R-CNN instances refined and completed by "
                          "the U-Net's maps); weights from --unet-weights / --mrcnn-weights or weights/")
    tta.add_argument("--unet-weights", help="U-Net weights for --ensemble (default: --weights if --model unet)")
    tta.add_argument("--mrcnn-weights", help="Mask R-CNN weights for --ensemble (default: --weights if --model mrcnn)")
    tta.add_argument("--params", help="JSON written by python -m tools.tune (post-processing, thresholds); "
                                      "default: X.params.json beside the weights X.weights.h5, when present")
    tta.add_argument("--no-params", action="store_true", help="ignore tuned parameters shipped beside the weights")
    tta.add_argument("--no-stain-models", action="store_true",
                     help="predict unfamiliar stained images with the model itself, not with the stain-trained "
                          "X.stain.weights.h5 beside its weights (tools/inference/routing.py)")
    tta.add_argument("--no-unfamiliar-params", action="store_true",
                     help="decode images unlike every training acquisition with the same params as the rest, "
                          "not with the params' 'unfamiliar' choices (the shipped Mask R-CNN's: 8-way TTA; "
                          "tools/inference/params.py)")
    tta.add_argument("--max-memory", type=int, default=None, metavar="MB",
                     help="peak memory to aim at (default 3000): larger images are cut into tiles that fit")
    tta.add_argument("--precision", choices=PRECISION_CHOICES, default=None,
                     help="the networks' arithmetic: bfloat16 is the fast preset, about 25%% faster on CPUs "
                          "with AVX512-BF16 or AMX at the same validation score (bench/RESULTS.md), emulated and "
                          "slower elsewhere; auto: bfloat16 where the CPU computes it natively, else float32; the "
                          "Mask R-CNN keeps its anchors, proposals and boxes in float32; default float32")
    post = parser.add_argument_group("post-processing (each off unless given)")
    post.add_argument("--dilate", type=int, default=None, metavar="PIXELS",
                      help="grow each nucleus by this many pixels, never into a neighbour")
    post.add_argument("--fill-holes", action="store_true", default=None, help="fill holes inside each nucleus")
    post.add_argument("--closing", type=int, default=None, metavar="RADIUS", help="closing of each nucleus")
    post.add_argument("--min-size", type=int, default=None, metavar="PIXELS", help="drop smaller nuclei")
    post.add_argument("--max-count", type=int, default=None, metavar="N", help="keep the N best-scoring nuclei")
    post.add_argument("--min-score", type=float, default=None, metavar="S",
                      help="drop nuclei scoring below S (detection confidence; U-Net: mean foreground)")
    post.add_argument("--drop-inverted", action=argparse.BooleanOptionalAction, default=None,
                      help="drop nuclei lighter than their surroundings in stained images, darker in "
                           "fluorescence ones (--no-drop-inverted keeps them)")
    parser.add_argument("--labels", metavar="DIR",
                        help="true masks for these images (Kaggle layout): print the DSB score and write a "
                             "contact sheet of true positives, false positives and misses")
    parser.add_argument("--sheet-images", type=int, default=24, metavar="N",
                        help="images on the contact sheet, worst first (default 24)")
    return parser


POSTPROCESS_FLAGS = ("dilate", "fill_holes", "closing", "min_size", "max_count", "min_score", "drop_inverted")


def apply_preset(args: argparse.Namespace) -> argparse.Namespace:
    """Fill --model and --precision from --preset where they were not given, then the defaults
    (unet, float32); the fast preset also sets --no-unfamiliar-params. The fast preset's bfloat16 applies only where the CPU computes it natively
    (elsewhere it is emulated and slower): float32 there, with a note."""
    preset = dict(PREDICT_PRESETS.get(args.preset) or {})
    if preset.get("precision") == "auto" and args.precision is None:
        preset["precision"] = resolve_precision("auto")
        if preset["precision"] == "float32":
            print("note: this CPU has no native bfloat16 (AVX512-BF16 or AMX): the fast preset runs in float32")
    args.model = args.model or _model_of_weights(args.weights) or preset.get("model", "unet")
    args.precision = resolve_precision(args.precision or preset.get("precision", "float32"))
    args.no_unfamiliar_params = bool(getattr(args, "no_unfamiliar_params", False) or preset.get("no_unfamiliar_params"))
    return args


def _model_of_weights(weights: str | None) -> str | None:
    """'unet' or 'mrcnn' as the config beside ``weights`` says (its "kind"), or None: --weights
    without --model picks its own model, whatever a preset's model is."""
    import json

    from preprocessing.settings import config_path_for

    if not weights:
        return None
    try:
        kind = json.loads(config_path_for(weights).read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        return None  # loading the weights reports what is wrong with them
    return kind if kind in ("unet", "mrcnn") else None


def _shard(text: str) -> tuple[int, int]:
    """argparse type of --shard: 'K/N' -> (K, N)."""
    from preprocessing.errors import NucleiError
    from tools.inference.folder import parse_shard

    try:
        return parse_shard(text)
    except NucleiError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def weights_for(args: argparse.Namespace) -> dict[str, Path]:
    """{'unet' and/or 'mrcnn': weights file} the run loads: --unet-weights / --mrcnn-weights,
    else --weights for the --model, else the shipped file in weights/."""
    from tools.inference.models import DEFAULT_WEIGHTS

    models = ("unet", "mrcnn") if args.ensemble else (args.model,)
    given = {"unet": args.unet_weights, "mrcnn": args.mrcnn_weights}
    return {name: Path(given[name] or (args.weights if name == args.model else None) or DEFAULT_WEIGHTS[name])
            for name in models}


def predict(args: argparse.Namespace) -> int:
    from tools.inference.folder import (check_out_folder, list_images, model_settings, predict_folder,
                                        report_against_truth, run_settings)
    from tools.inference.models import (build_pipeline, load_predictor, resolve_params, stain_weights,
                                        training_domains_for)

    apply_preset(args)
    list_images(args.images)  # bad ids fail before any model loads
    model = "ensemble" if args.ensemble else args.model
    weights = weights_for(args)
    for name, path in weights.items():
        if not path.is_file():
            load_predictor(name, path)  # its error: the file is missing
    params, _ = resolve_params(model, weights["mrcnn" if model == "mrcnn" else "unet"], args.params,
                               use_shipped=not args.no_params)
    params = params.with_overrides(tta=args.tta, postprocess={name: getattr(args, name) for name in POSTPROCESS_FLAGS},
                                   max_memory=args.max_memory)
    if args.no_unfamiliar_params:
        params = params.replace(unfamiliar=None)
    precision = args.precision
    if precision == "bfloat16":
        from preprocessing.precision import cpu_has_bfloat16

        if not cpu_has_bfloat16():
            print("note: this CPU has no native bfloat16 (AVX512-BF16 or AMX): --precision bfloat16 is emulated "
                  "here and likely slower than float32")
    stained = {} if args.no_stain_models else stain_weights(model, weights.get("unet"), weights.get("mrcnn"))
    settings = model_settings(model, {**weights, **{f"{name}_stain": path for name, path in stained.items()}},
                              params, precision)
    # a --resume of other settings, or another shard's folder, is refused before any model loads
    check_out_folder(args.out, run_settings(settings, args.images, args.shard or (1, 1), not args.no_overlays,
                                            not args.no_labels), args.resume)
    pipeline = build_pipeline(model, unet_weights=weights.get("unet"), mrcnn_weights=weights.get("mrcnn"),
                              params=params, precision=precision, stain_models=not args.no_stain_models,
                              unfamiliar_params=not args.no_unfamiliar_params)
    truth = keep = None
    if args.labels:
        from preprocessing.dataset import load_dataset

        truth = {s.image_id: s for s in load_dataset(args.labels).samples if s.labels is not None}
        keep = dict.fromkeys(truth)
    started = time.time()
    counts = predict_folder(pipeline, args.images, args.out, not args.no_overlays, not args.no_labels,
                            progress=True, keep_labels=keep, shard=args.shard, resume=args.resume, settings=settings,
                            # the router's own reference, so that it takes the folder's check of each image
                            reference=getattr(pipeline, "reference", None) or training_domains_for(weights.values()))
    elapsed = time.time() - started
    if getattr(pipeline, "routed", 0):
        print(f"{pipeline.routed} unfamiliar stained image{'s' if pipeline.routed != 1 else ''} predicted by the "
              f"stain-trained model{'s' if len(stained) > 1 else ''} ({', '.join(p.name for p in stained.values())}; "
              "--no-stain-models: the shipped model alone)")
    if getattr(pipeline, "unfamiliar_count", 0) and params.unfamiliar is not None:
        print(f"{pipeline.unfamiliar_count} unfamiliar image{'s' if pipeline.unfamiliar_count != 1 else ''} decoded "
              f"with the params' unfamiliar choices ({params.unfamiliar.tta}-way TTA, minimum score "
              f"{params.unfamiliar.postprocess.min_score}; --no-unfamiliar-params: the same params for every image)")
    out = Path(args.out)
    if truth is not None:
        result = report_against_truth(truth, keep, out, args.sheet_images)
        print(f"DSB score on {len(result['per_image'])} labelled images: {result['score']:.4f}")
        print(f"contact sheet: {out / 'contact_sheet.html'}")
    done_earlier = f" ({len(counts.skipped)} done earlier, skipped)" if counts.skipped else ""
    per_image = f"{elapsed / counts.predicted:.2f} s/image" if counts.predicted else "nothing to predict"
    print(f"{len(counts)} images{done_earlier}, {sum(counts.values())} nuclei in {elapsed:.1f} s ({per_image})")
    print(f"submission: {out / 'submission.csv'}")
    if not args.no_overlays:
        print(f"overlays:   {out / 'overlays'}/")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser, predict, argv)


if __name__ == "__main__":
    sys.exit(main())
