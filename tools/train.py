"""Training entry point: ``python -m tools.train {unet,mrcnn} [options]``.

Each model has its own options; ``python -m tools.train unet --help`` lists them.
"""

import sys

MODELS = {"unet": "tools.train_unet", "mrcnn": "tools.train_mrcnn"}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in MODELS:
        print(__doc__.strip(), file=sys.stderr)
        print(f"\nerror: first argument must be one of: {', '.join(MODELS)}", file=sys.stderr)
        return 2
    import importlib

    return importlib.import_module(MODELS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
