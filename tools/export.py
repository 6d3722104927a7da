"""Export a model as a TensorFlow SavedModel (for TF Serving, TFLite, or ``tf.saved_model.load``).

Usage::

    python -m tools.export --model unet --out exports/unet/1
    python -m tools.export --weights runs/mrcnn/model.weights.h5 --out exports/mrcnn/1

OUT holds the SavedModel (``serve`` signature: the network on normalised float32 images) and,
beside it, model.json (config), params.json (inference parameters) and export.json (what
``serve`` takes and gives). The export is written to a temporary folder and renamed into place;
an earlier export at OUT is replaced. See :mod:`tools.inference.export`.
"""

import argparse
import sys

from tools.cli import run_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("unet", "mrcnn"), default=None,
                        help="which shipped model (default: told by the config beside --weights, else unet)")
    parser.add_argument("--weights", help="weights file (its config JSON beside it); default: weights/<model>")
    parser.add_argument("--out", required=True, help="output folder (TF Serving: end it with a version, e.g. /1)")
    parser.add_argument("--params", help="inference parameters JSON to write beside it (default: the tuned "
                                         "file shipped beside the weights)")
    parser.add_argument("--no-params", action="store_true", help="write the default parameters instead")
    return parser


def export(args: argparse.Namespace) -> int:
    from preprocessing.errors import NucleiError
    from tools.inference.export import export_model
    from tools.inference.models import model_of_weights

    model = args.model or "unet"
    if args.weights:
        model = model_of_weights(args.weights)
        if args.model and args.model != model:
            raise NucleiError(f"--model {args.model} but the config beside the weights is a {model}", args.weights)
    document = export_model(model, args.out, args.weights, args.params, use_shipped_params=not args.no_params)
    print(f"{model} SavedModel: {args.out}  (signature 'serve'; model.json, params.json, export.json beside it)")
    for name, text in document["inputs"].items():
        print(f"  in  {name}: {text}")
    for name, text in document["outputs"].items():
        print(f"  out {name}: {text}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser, export, argv)


if __name__ == "__main__":
    sys.exit(main())
