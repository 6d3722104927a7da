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
from tools.inference.params import MRCNN_THRESHOLD_FIELDS, InferenceParams
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
    "drop_inverted": [False, True],
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
    return validation_set(roots, val_fraction, seed, max_images, exclude_roots, run_dir, domains=None)[0]


def validation_set(roots: list[str], val_fraction: float = 0.1, seed: int = 0, max_images: int | None = None,
                   exclude_roots: tuple = (), run_dir: str | Path | None = None,
                   domains: str | Path | None = "auto") -> tuple[list, dict[str, str] | None]:
    """The held-out samples of training's split (see validation_samples) and their domains.

    Args:
        domains: 'auto' (group every labelled image of ``roots`` into acquisition domains with
            preprocessing.domains, as bench/domains.py does), a domain file written by
            preprocessing.domains.save_domains, or None (no domains).

    Returns:
        (samples, {image_id: domain} for every sample, or None).
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
    assignment = None
    if domains == "auto":
        from preprocessing.domains import assign_domains, image_features

        assignment = assign_domains({s.image_id: image_features(s.image, s.labels) for s in samples})
    elif domains is not None:
        from preprocessing.domains import load_domains

        assignment = load_domains(domains)
        missing = [s.image_id for s in val if s.image_id not in assignment]
        if missing:
            raise NucleiError(f"{len(missing)} validation images are not in this domain file, e.g. {missing[0]}",
                              domains)
    if assignment is not None:
        assignment = {s.image_id: assignment[s.image_id] for s in val}
    return val, assignment


def mean_score(samples: list, predict: Callable) -> float:
    """Mean DSB score of ``predict(sample) -> labels`` over samples."""
    from tools.kaggle.metric import image_score

    return float(np.mean([image_score(s.labels, predict(s))["score"] for s in samples]))


# Search spaces. "small" has few free parameters (the ones whose effect is large and smooth), so
# that what it picks on some acquisitions tends to hold on others; "full" is every knob.
SEARCH_SPACES = ("small", "full")
SMALL_THRESHOLDS = ("foreground_threshold", "seed_threshold")
SMALL_ENSEMBLE = ("foreground_threshold", "mrcnn_min_score")
SMALL_POSTPROCESS = ("min_size", "min_score", "closing", "drop_inverted")


def search_space(kind: str, space: str = "full", distance_head: bool = False
                 ) -> tuple[dict[str, list], dict[str, list]]:
    """(decode candidates, post-processing candidates) for a pipeline kind.

    Args:
        kind: 'unet' (watershed thresholds), 'ensemble' (ensemble thresholds) or 'mrcnn'
            (no decode step).
        space: 'full' (every parameter) or 'small' (few free parameters).
        distance_head: a U-Net with the distance map: its seeds may come from it (both spaces:
            one choice, which sets what seed_threshold means).
    """
    if space not in SEARCH_SPACES:
        raise NucleiError(f"search space must be one of {', '.join(SEARCH_SPACES)}, got {space!r}")
    decode = {"unet": THRESHOLD_CANDIDATES, "ensemble": ENSEMBLE_CANDIDATES, "mrcnn": {}}[kind]
    post = POSTPROCESS_CANDIDATES
    if space == "small":
        keep = {"unet": SMALL_THRESHOLDS, "ensemble": SMALL_ENSEMBLE, "mrcnn": ()}[kind]
        decode = {name: values for name, values in decode.items() if name in keep}
        post = {name: values for name, values in post.items() if name in SMALL_POSTPROCESS}
    if kind == "unet" and distance_head:
        decode = {"seed_source": ["body", "distance"], **decode}
    return dict(decode), dict(post)


def objective(per_image: dict[str, float], domains: dict[str, str] | None = None) -> float:
    """What tuning maximises: the mean DSB score over images, or with ``domains``
    ({image_id: domain}) the domain-balanced mean (every domain weighs the same)."""
    if not per_image:
        raise NucleiError("no images to score")
    if domains is None:
        return float(np.mean(list(per_image.values())))
    by_domain: dict[str, list[float]] = {}
    for image_id, score in per_image.items():
        by_domain.setdefault(domains[image_id], []).append(score)
    return float(np.mean([np.mean(scores) for scores in by_domain.values()]))


def _key(params: dict) -> tuple:
    return tuple(sorted((name, repr(value)) for name, value in params.items()))


class _SettingScores:
    """Per-image DSB scores of (decode, post-processing) settings over cached network outputs.

    Scores are memoised per (image, setting), so the cross-domain folds, which retrace most
    of the full search's steps, cost little more than the search itself. Decoded instances
    are kept only for the few decode settings post-processing is searched on.
    """

    def __init__(self, samples: list, decode: Callable[[Any, dict], tuple]):
        self.samples = {s.image_id: s for s in samples}
        self.decode = decode  # (sample, decode params) -> (labels, scores)
        self.scores: dict[tuple, float] = {}
        self.decoded: dict[tuple, dict[str, tuple]] = {}

    def _decoded(self, image_id: str, decode_params: dict) -> tuple:
        key = _key(decode_params)
        if key not in self.decoded:
            if len(self.decoded) >= 4:  # memory: label images of every image per setting
                self.decoded.pop(next(iter(self.decoded)))
            self.decoded[key] = {}
        store = self.decoded[key]
        if image_id not in store:
            store[image_id] = self.decode(self.samples[image_id], decode_params)
        return store[image_id]

    def score(self, image_id: str, decode_params: dict, post_params: dict | None) -> float:
        """DSB score of one image; post_params None = decoded output without post-processing."""
        from tools.kaggle.metric import image_score

        key = (image_id, _key(decode_params), None if post_params is None else _key(post_params))
        if key not in self.scores:
            if post_params is None:
                labels = self.decode(self.samples[image_id], decode_params)[0]
            else:
                labels = postprocess(*self._decoded(image_id, decode_params),
                                     PostprocessConfig.from_dict(post_params), self.samples[image_id].image)[0]
            self.scores[key] = float(image_score(self.samples[image_id].labels, labels)["score"])
        return self.scores[key]

    def per_image(self, ids: list[str], decode_params: dict, post_params: dict | None) -> dict[str, float]:
        return {image_id: self.score(image_id, decode_params, post_params) for image_id in ids}


def _search(scores: _SettingScores, ids: list[str], domains: dict[str, str] | None, start: tuple[dict, dict],
            space: tuple[dict, dict], rounds: int, log: list) -> tuple[dict, dict, float]:
    """Coordinate descent on ``ids``: decode parameters first (no post-processing), then
    post-processing on the chosen decode. Returns (decode params, post params, objective)."""
    decode_start, post_start = start
    decode_space, post_space = space
    decode_params = dict(decode_start)
    if decode_space:
        decode_params, _ = coordinate_descent(
            lambda params: objective(scores.per_image(ids, params, None), domains), decode_start, decode_space,
            rounds, log)
    post_params, best = coordinate_descent(
        lambda params: objective(scores.per_image(ids, decode_params, params), domains), post_start, post_space,
        rounds, log)
    return decode_params, post_params, best


def cross_domain_check(scores: _SettingScores, ids: list[str], domains: dict[str, str], start: tuple[dict, dict],
                       space: tuple[dict, dict], rounds: int, log: list) -> dict[str, Any]:
    """Leave one domain out, for the parameters: tune on the other domains' images, score the
    left-out domain, for every domain; the defaults score each domain too.

    Returns:
        {'per_domain': {domain: {'images', 'tuned', 'default', 'chosen'}}, 'tuned': mean over
        domains of the left-out scores, 'default': the same for the defaults, 'folds': count}.
    """
    names = sorted({domains[i] for i in ids})
    per_domain = {}
    for name in names:
        held = [i for i in ids if domains[i] == name]
        rest = [i for i in ids if domains[i] != name]
        decode_params, post_params, _ = _search(scores, rest, domains, start, space, rounds, log)
        tuned = float(np.mean(list(scores.per_image(held, decode_params, post_params).values())))
        default = float(np.mean(list(scores.per_image(held, *start).values())))
        per_domain[name] = {"images": len(held), "tuned": tuned, "default": default,
                            "chosen": {"decode": decode_params, "postprocess": post_params}}
    return {"per_domain": per_domain, "folds": len(names),
            "tuned": float(np.mean([row["tuned"] for row in per_domain.values()])),
            "default": float(np.mean([row["default"] for row in per_domain.values()]))}


def tune(pipeline: Any, samples: list, rounds: int = 2, progress: bool = True, domains: dict[str, str] | None = None,
         space: str = "small", check_domains: bool = True,
         keep_tuned: bool = False) -> tuple[InferenceParams, dict[str, Any]]:
    """Tune the pipeline's decode thresholds and post-processing on ``samples``.

    Args:
        pipeline: tools.inference.pipeline.InferencePipeline (its TTA is used as set; its
            ensemble parameters are the starting point).
        samples: validation samples with labels.
        rounds: coordinate-descent passes.
        domains: optional {image_id: acquisition domain} (preprocessing.domains): the search
            then maximises the domain-balanced mean, and, with ``check_domains`` and at least
            two domains, a leave-one-domain-out check scores the search on domains it did not
            see (report 'cross_domain'); 'accepted' is False when the tuned setting does not
            beat the defaults there, and the defaults are returned instead.
        space: 'small' (the default, as tools.tune's) or 'full' (see search_space).
        keep_tuned: return the tuned setting even when the check rejects it.

    Returns:
        (InferenceParams chosen, report dict with 'score' (objective of the chosen setting),
        'baseline_score' (defaults, no post-processing), 'objective' ('mean' or
        'domain-balanced mean'), 'accepted', 'cross_domain' (or None), 'per_domain',
        'network_seconds', 'evaluations').
    """
    from tools.inference.ensemble import ensemble_instances

    dense, instance = pipeline.dense, pipeline.instance
    if domains is not None:
        unknown = [s.image_id for s in samples if s.image_id not in domains]
        if unknown:
            raise NucleiError(f"{len(unknown)} validation images have no domain, e.g. {unknown[0]}")
    from tools.progress import progress as progress_bar

    iterator = progress_bar(samples, desc="validation images") if progress else samples
    cached = {}
    for sample in iterator:  # the networks run here only
        probabilities = pipeline.probabilities(sample.image) if dense is not None else None
        instances = (pipeline.merged_instances(pipeline.instance_predictions(sample.image))
                     if instance is not None else None)
        cached[sample.image_id] = (probabilities, instances)

    if dense is not None and instance is None:
        kind = "unet"
        decode_start = {name: getattr(dense.config, name) for name in THRESHOLD_CANDIDATES}
        if dense.config.distance_head:
            decode_start["seed_source"] = dense.config.seed_source

        def decode(sample, params):
            return dense.decode(cached[sample.image_id][0], params)
    elif dense is not None:
        kind = "ensemble"
        config = pipeline.params.ensemble
        decode_start = {name: getattr(config, name) for name in ENSEMBLE_CANDIDATES}

        def decode(sample, params):
            probabilities, (labels, scores) = cached[sample.image_id]
            return ensemble_instances(probabilities, labels, scores, config.replace(**params))
    else:
        kind = "mrcnn"
        decode_start = {}

        def decode(sample, params):
            return cached[sample.image_id][1]

    start = (decode_start, PostprocessConfig().to_dict())
    candidates = search_space(kind, space, distance_head=kind == "unet" and dense.config.distance_head)
    scores = _SettingScores(samples, decode)
    ids = [s.image_id for s in samples]
    log: list = []
    decode_params, post_params, best_score = _search(scores, ids, domains, start, candidates, rounds, log)
    searched = len(log)
    cross = None
    if domains is not None and check_domains and len({domains[i] for i in ids}) >= 2:
        cross = cross_domain_check(scores, ids, domains, start, candidates, rounds, log)
    accepted = cross is None or cross["tuned"] > cross["default"] + 1e-9
    if not accepted and not keep_tuned:
        decode_params, post_params = start
    chosen_ensemble = pipeline.params.ensemble.to_dict()
    if kind == "ensemble":
        chosen_ensemble.update(decode_params)
    # the Mask R-CNN's own entries (mask_threshold) were fixed while tuning: written as they were
    mrcnn_thresholds = {name: value for name, value in pipeline.params.thresholds.items()
                        if name in MRCNN_THRESHOLD_FIELDS} if kind == "mrcnn" else {}
    params = InferenceParams(tta=pipeline.params.tta, thresholds=decode_params if kind == "unet" else mrcnn_thresholds,
                             ensemble=chosen_ensemble, merge=pipeline.params.merge, postprocess=post_params)
    final = scores.per_image(ids, decode_params, post_params)
    baseline = scores.per_image(ids, decode_start, None)
    report = {"score": objective(final, domains), "tuned_score": best_score,
              "baseline_score": objective(baseline, domains),
              "objective": "mean" if domains is None else "domain-balanced mean", "space": space,
              "accepted": accepted, "cross_domain": cross,
              "per_domain": None if domains is None else _per_domain(final, baseline, domains),
              "network_seconds": pipeline.network_seconds, "evaluations": searched,
              "check_evaluations": len(log) - searched}
    return params, report


def _per_domain(final: dict[str, float], baseline: dict[str, float], domains: dict[str, str]) -> dict:
    names = sorted({domains[i] for i in final})
    return {name: {"images": sum(domains[i] == name for i in final),
                   "score": float(np.mean([s for i, s in final.items() if domains[i] == name])),
                   "baseline": float(np.mean([s for i, s in baseline.items() if domains[i] == name]))}
            for name in names}
