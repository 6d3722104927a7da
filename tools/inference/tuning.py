"""Choosing inference parameters on held-out images: coordinate descent over cached network outputs.

The networks run once per validation image (with the pipeline's TTA); their outputs are kept
and every candidate setting is scored from them with the DSB metric. Each parameter in turn
takes the value that scores best with the others held, over its list of candidates, for a
few rounds. The result is an :class:`tools.inference.params.InferenceParams`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from preprocessing.errors import NucleiError
from tools.inference.params import InferenceParams
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


def coordinate_descent(score: Callable[[dict], float], start: dict, candidates: dict[str, list], rounds: int = 2,
                       log: list | None = None) -> tuple[dict, float]:
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


def validation_samples(roots: list[str], val_fraction: float = 0.1, seed: int = 0, max_images: int | None = None,
                       exclude_roots: tuple = (), run_dir: str | Path | None = None) -> list:
    """The held-out samples of training's split.

    With ``run_dir`` (a training run folder) the ids of its split.json are used, so images
    training saw are never scored; else the same rule training applies (same --val-fraction,
    --seed and --exclude).
    """
    from preprocessing.dataset import load_training_samples
    from preprocessing.split import stratified_split

    samples = load_training_samples(roots, exclude_roots, progress=False)
    if not samples:
        raise NucleiError("no labelled images to tune on", roots[0])
    saved = None
    if run_dir is not None:
        from preprocessing.split import read_split

        saved = read_split(Path(run_dir) / "split.json")
        if saved is None:
            raise NucleiError("no split.json in this run folder", run_dir)
    if saved is not None:
        val_ids = saved[1]
    else:
        _, val_ids = stratified_split([s.image_id for s in samples], [s.image_type for s in samples],
                                      val_fraction, seed)
    val = [s for s in samples if s.image_id in set(val_ids)]
    if not val:
        raise NucleiError("the validation split is empty: raise --val-fraction", roots[0])
    if max_images and len(val) > max_images:
        keep = np.random.default_rng(seed).choice(len(val), max_images, replace=False)
        val = [val[k] for k in sorted(keep)]
    return val


def mean_score(samples: list, predict: Callable) -> float:
    """Mean DSB score of ``predict(sample) -> labels`` over samples."""
    from tools.kaggle.metric import image_score

    return float(np.mean([image_score(s.labels, predict(s))["score"] for s in samples]))


def tune(pipeline: Any, samples: list, rounds: int = 2, progress: bool = True) -> tuple[InferenceParams, dict[str, Any]]:
    """Tune the pipeline's decode thresholds and post-processing on ``samples``.

    Args:
        pipeline: tools.inference.pipeline.InferencePipeline (its TTA is used as set; its
            ensemble parameters are the starting point).
        samples: validation samples with labels.

    Returns:
        (InferenceParams chosen, report dict with 'score', 'baseline_score' (defaults, no
        post-processing), 'network_seconds', 'evaluations').
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
    chosen = {"thresholds": {}, "ensemble": pipeline.params.ensemble.to_dict()}

    if dense is not None and instance is None:
        start = {name: getattr(dense.config, name) for name in THRESHOLD_CANDIDATES}

        def raw(sample, params):
            return dense.decode(cached[sample.image_id][0], params)

        decode_params, _ = coordinate_descent(
            lambda params: mean_score(samples, lambda s: raw(s, params)[0]), start, THRESHOLD_CANDIDATES,
            rounds, log)
        chosen["thresholds"] = decode_params
        raw_outputs = {s.image_id: raw(s, decode_params) for s in samples}
        baseline = {s.image_id: raw(s, start)[0] for s in samples}
    elif dense is not None:
        config = pipeline.params.ensemble
        start = {name: getattr(config, name) for name in ENSEMBLE_CANDIDATES}

        def raw(sample, params):
            probabilities, (labels, scores) = cached[sample.image_id]
            return ensemble_instances(probabilities, labels, scores, config.replace(**params))

        decode_params, _ = coordinate_descent(
            lambda params: mean_score(samples, lambda s: raw(s, params)[0]), start, ENSEMBLE_CANDIDATES,
            rounds, log)
        chosen["ensemble"] = {**chosen["ensemble"], **decode_params}
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
    params = InferenceParams(tta=pipeline.params.tta, thresholds=chosen["thresholds"], ensemble=chosen["ensemble"],
                             merge=pipeline.params.merge, postprocess=post_params)
    report = {"score": best_score, "baseline_score": mean_score(samples, lambda s: baseline[s.image_id]),
              "network_seconds": pipeline.network_seconds, "evaluations": len(log)}
    return params, report
