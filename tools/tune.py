"""Pick post-processing (and U-Net watershed / ensemble thresholds) on the validation split only.

Usage::

    python -m tools.tune --model unet --weights W --data DIR --out params.json [--tta N]
    python -m tools.tune --model mrcnn --weights W --data DIR --out params.json
    python -m tools.tune --ensemble --unet-weights U --mrcnn-weights M --data DIR --out params.json

The validation images are the ones training held out: the same
``preprocessing.split.stratified_split`` over ``--data`` with the same
``--val-fraction`` and ``--seed`` as ``python -m tools.train`` (defaults 0.1 and 0).
Training images are never scored.

The network runs once per validation image (with the chosen TTA); its outputs are kept
and every candidate setting is scored from them with the DSB metric. The search is
coordinate descent: each parameter in turn takes the value that scores best with the
others held, over its list of candidates, for ``--rounds`` rounds. The result is a JSON
that ``python -m tools.predict --params params.json`` reads.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from preprocessing.errors import NucleiError
from tools.inference.postprocess import PostprocessConfig, postprocess

THRESHOLD_CANDIDATES = {
    "foreground_threshold": [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
    "seed_threshold": [0.5, 0.6, 0.7, 0.8, 0.9, 0.95],
    "min_seed_size": [1, 3, 6, 12, 24, 48],
    "min_nucleus_size": [1, 8, 16, 32, 48, 64],
}
ENSEMBLE_CANDIDATES = {
    "foreground_threshold": [0.3, 0.4, 0.5, 0.6, 0.7, 0.8],
    "seed_threshold": [0.7, 0.8, 0.9],
    "mrcnn_min_score": [0.3, 0.5, 0.7, 0.8, 0.9],
    "keep_score": [0.9, 0.95, 1.01],
    "mrcnn_weight": [0.0, 0.2, 0.3, 0.4],
    "add_unet_nuclei": [True, False],
}
POSTPROCESS_CANDIDATES = {
    "fill_holes": [False, True],
    "closing": [0, 1, 2],
    "min_size": [0, 8, 16, 32, 48, 64, 96],
    "min_score": [0.0, 0.6, 0.7, 0.8, 0.9],
    "dilate": [0, 1, 2, 3],
}


def coordinate_descent(score, start, candidates, rounds=2, log=None):
    """Maximise ``score(params dict) -> float`` one parameter at a time.

    Args:
        score: callable on a full params dict.
        start: dict, the starting params (values not in candidates stay fixed).
        candidates: dict name -> list of values to try.
        rounds: passes over all parameters (stops early when a pass changes nothing).
        log: optional list, appended with (params, score) of every evaluation.

    Returns:
        (best params dict, best score).
    """
    best = dict(start)
    best_score = score(best)
    if log is not None:
        log.append((dict(best), best_score))
    for _ in range(rounds):
        changed = False
        for name, values in candidates.items():
            for value in values:
                if value == best.get(name):
                    continue
                trial = {**best, name: value}
                trial_score = score(trial)
                if log is not None:
                    log.append((dict(trial), trial_score))
                if trial_score > best_score + 1e-9:
                    best, best_score, changed = trial, trial_score, True
        if not changed:
            break
    return best, best_score


def validation_samples(roots, val_fraction=0.1, seed=0, max_images=None, exclude_roots=()):
    """The held-out samples of training's split (same rule, same arguments, same --exclude)."""
    from preprocessing.dataset import load_training_samples
    from preprocessing.split import stratified_split

    samples = load_training_samples(roots, exclude_roots, progress=False)
    if not samples:
        raise NucleiError("no labelled images to tune on", roots[0])
    _, val_ids = stratified_split([s.image_id for s in samples], [s.image_type for s in samples],
                                  val_fraction, seed)
    val = [s for s in samples if s.image_id in set(val_ids)]
    if not val:
        raise NucleiError("the validation split is empty: raise --val-fraction", roots[0])
    if max_images and len(val) > max_images:
        keep = np.random.default_rng(seed).choice(len(val), max_images, replace=False)
        val = [val[k] for k in sorted(keep)]
    return val


def mean_score(samples, predict):
    """Mean DSB score of ``predict(sample) -> labels`` over samples."""
    from tools.kaggle.metric import image_score

    return float(np.mean([image_score(s.labels, predict(s))["score"] for s in samples]))


def tune(pipeline, samples, rounds=2, progress=True):
    """Tune the pipeline's decode thresholds and post-processing on ``samples``.

    Args:
        pipeline: tools.inference.pipeline.InferencePipeline (its TTA is used as set).
        samples: validation samples with labels.

    Returns:
        dict with 'thresholds' (U-Net watershed; U-Net alone), 'ensemble' (both models),
        'postprocess', 'score', 'baseline_score' (defaults, no post-processing),
        'network_seconds', 'evaluations'.
    """
    from tools.inference.ensemble import ensemble_instances

    dense, instance = pipeline.dense, pipeline.instance
    iterator = samples
    if progress:
        from tqdm import tqdm

        iterator = tqdm(samples, desc="validation images", unit="img", disable=None)
    cached = {}
    for sample in iterator:  # the networks run here only
        probabilities = pipeline.probabilities(sample.image) if dense is not None else None
        instances = (pipeline.merged_instances(pipeline.instance_predictions(sample.image))
                     if instance is not None else None)
        cached[sample.image_id] = (probabilities, instances)
    log = []
    result = {"thresholds": {}, "ensemble": {}}

    if dense is not None and instance is None:
        start = {name: getattr(dense.config, name) for name in THRESHOLD_CANDIDATES}

        def raw(sample, params):
            return dense.decode(cached[sample.image_id][0], params)

        decode_params, _ = coordinate_descent(
            lambda params: mean_score(samples, lambda s: raw(s, params)[0]), start, THRESHOLD_CANDIDATES,
            rounds, log)
        result["thresholds"] = decode_params
        raw_outputs = {s.image_id: raw(s, decode_params) for s in samples}
        baseline = {s.image_id: raw(s, start)[0] for s in samples}
    elif dense is not None:
        config = pipeline.ensemble_config
        start = {name: getattr(config, name) for name in ENSEMBLE_CANDIDATES}

        def raw(sample, params):
            import dataclasses

            probabilities, (labels, scores) = cached[sample.image_id]
            return ensemble_instances(probabilities, labels, scores, dataclasses.replace(config, **params))

        decode_params, _ = coordinate_descent(
            lambda params: mean_score(samples, lambda s: raw(s, params)[0]), start, ENSEMBLE_CANDIDATES,
            rounds, log)
        result["ensemble"] = decode_params
        raw_outputs = {s.image_id: raw(s, decode_params) for s in samples}
        baseline = {s.image_id: raw(s, start)[0] for s in samples}
    else:
        raw_outputs = {s.image_id: cached[s.image_id][1] for s in samples}
        baseline = {s.image_id: raw_outputs[s.image_id][0] for s in samples}

    def post_score(params):
        config = PostprocessConfig.from_dict(params)
        return mean_score(samples, lambda s: postprocess(*raw_outputs[s.image_id], config)[0])

    post_params, best_score = coordinate_descent(post_score, PostprocessConfig().to_dict(),
                                                 POSTPROCESS_CANDIDATES, rounds, log)
    result.update(postprocess=post_params, score=best_score,
                  baseline_score=mean_score(samples, lambda s: baseline[s.image_id]),
                  network_seconds=pipeline.network_seconds, evaluations=len(log))
    return result


def build_parser():
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
    parser.add_argument("--rounds", type=int, default=2, help="coordinate-descent passes (default 2)")
    parser.add_argument("--out", required=True, help="parameters JSON for tools.predict --params")
    return parser


def main(argv=None):
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    args = build_parser().parse_args(argv)
    try:
        from tools.inference.ensemble import EnsembleConfig
        from preprocessing.files import save_json_atomic
        from tools.inference.pipeline import DenseModel, InferencePipeline, InstanceModel
        from tools.predict import load_predictor

        dense = instance = None
        if args.model == "unet" or args.ensemble:
            dense = DenseModel(load_predictor("unet", args.unet_weights or
                                              (args.weights if args.model == "unet" else None)))
        if args.model == "mrcnn" or args.ensemble:
            instance = InstanceModel(load_predictor("mrcnn", args.mrcnn_weights or
                                                    (args.weights if args.model == "mrcnn" else None)))
        pipeline = InferencePipeline(dense, instance, tta=args.tta, ensemble_config=EnsembleConfig())
        samples = validation_samples(args.data, args.val_fraction, args.seed, args.max_images, args.exclude)
        print(f"tuning on {len(samples)} validation images (val_fraction={args.val_fraction}, seed={args.seed})")
        started = time.time()
        result = tune(pipeline, samples, args.rounds)
        result.update(model="ensemble" if args.ensemble else args.model, tta=args.tta,
                      val_ids=[s.image_id for s in samples], seconds=time.time() - started)
        save_json_atomic(Path(args.out), result)
    except NucleiError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"validation score: {result['baseline_score']:.4f} with defaults -> {result['score']:.4f} tuned "
          f"({result['evaluations']} settings tried)")
    for key in ("thresholds", "ensemble", "postprocess"):
        if result[key]:
            print(f"{key}: " + ", ".join(f"{k}={v}" for k, v in result[key].items()))
    print(f"parameters: {args.out} (use: python -m tools.predict --params {args.out} ...)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
