"""Trained models by path, and the whole inference pipeline in one call.

``load_model`` is the Python API::

    from tools.inference import load_model
    model = load_model("weights/mrcnn.weights.h5")          # tuned params beside it are applied
    labels, scores = model.predict(image)                   # uint8 [H, W, 3] -> int32 [H, W], float32 [N]
    model = load_model("weights/unet.weights.h5", tta=8, params="weights/unet.tta8.params.json")
    model = load_model(ensemble=True)                       # shipped U-Net + Mask R-CNN

The commands (predict, tune, demo, training's validation) build their pipelines with
:func:`build_pipeline`, so Python and the command line run the same code.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from preprocessing.errors import NucleiError
from preprocessing.settings import read_json
from tools.inference.params import InferenceParams, load_params
from tools.inference.pipeline import DenseModel, InferencePipeline, InstanceModel

if TYPE_CHECKING:
    from tools.inference.routing import UnfamiliarRouter

WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"
DEFAULT_WEIGHTS = {"unet": WEIGHTS_DIR / "unet.weights.h5", "mrcnn": WEIGHTS_DIR / "mrcnn.weights.h5"}
MODELS = ("unet", "mrcnn", "ensemble")


def load_predictor(model: str, weights: str | Path | None = None, precision: str = "float32",
                   mask_threshold: float | None = None) -> Any:
    """The predictor for ``model`` ('unet' or 'mrcnn') with weights from ``weights`` or weights/.

    ``precision`` ('float32' or 'bfloat16', preprocessing.precision.PRECISIONS): the arithmetic
    of the network's layers (the Mask R-CNN keeps its anchors, proposals and box decoding in
    float32 either way).
    ``mask_threshold``: the Mask R-CNN's MASK_THRESHOLD for pasting (None: its config's)."""
    weights = Path(weights) if weights else DEFAULT_WEIGHTS[model]
    if not weights.is_file():
        raise NucleiError("weights file not found (see weights/README.md for how to get or train it)", weights)
    if model == "unet":
        from unet.predictor import UNetPredictor

        return UNetPredictor.from_path(weights, precision=precision)
    from mrcnn.predictor import MrcnnPredictor

    overrides = {"MASK_THRESHOLD": float(mask_threshold)} if mask_threshold is not None else {}
    return MrcnnPredictor.from_path(weights, precision=precision, **overrides)


TRAINING_DOMAINS_FILE = "training_domains.json"  # bench/domains.py --reference, beside the weights


def training_domains_for(weights: Any) -> dict | None:
    """The training set's domain reference (preprocessing.domains.domain_reference): the
    training_domains.json beside the weights, as weights/ ships for its models; None when the
    weights files lie in different folders or none is there."""
    from preprocessing.domains import load_reference

    folders = {Path(path).parent for path in weights}
    if len(folders) != 1 or not (next(iter(folders)) / TRAINING_DOMAINS_FILE).is_file():
        return None
    return load_reference(next(iter(folders)) / TRAINING_DOMAINS_FILE)


def model_of_weights(weights: str | Path) -> str:
    """'unet' or 'mrcnn', read from the config JSON beside a weights file."""
    from preprocessing.settings import config_path_for

    config_path = config_path_for(weights)
    document = read_json(config_path)
    kind = document.get("kind", document.get("model")) if isinstance(document, dict) else None
    if kind is None and isinstance(document, dict) and "BACKBONE" in document:
        kind = "mrcnn"  # a config written before the one settings format
    if kind not in ("unet", "mrcnn"):
        raise NucleiError(f"not a U-Net or Mask R-CNN config (kind={kind!r})", config_path)
    return kind


def default_params_path(model: str, weights: str | Path | None = None) -> Path | None:
    """Tuned parameters shipped beside the weights: X.params.json for X.weights.h5 (None if absent).

    For the ensemble (``model='ensemble'``, ``weights`` = the U-Net's) the file is
    X.ensemble.params.json beside the U-Net weights.
    """
    base = "unet" if model == "ensemble" else model
    weights = Path(weights) if weights else DEFAULT_WEIGHTS[base]
    stem = weights.name[: -len(".weights.h5")] if weights.name.endswith(".weights.h5") else weights.stem
    path = weights.with_name(stem + (".ensemble" if model == "ensemble" else "") + ".params.json")
    return path if path.is_file() else None


def resolve_params(model: str, weights: str | Path | None, params: InferenceParams | str | Path | None,
                   use_shipped: bool = True) -> tuple[InferenceParams, Path | None]:
    """(InferenceParams, the file they came from): an object as given, a path read, or the
    tuned file shipped beside the weights (``use_shipped``), else the defaults."""
    if isinstance(params, InferenceParams):
        return params, None
    path = Path(params) if params is not None else (default_params_path(model, weights) if use_shipped else None)
    return (load_params(path), path) if path is not None else (InferenceParams(), None)


def build_pipeline(model: str = "unet", weights: str | Path | None = None,
                   unet_weights: str | Path | None = None, mrcnn_weights: str | Path | None = None,
                   params: InferenceParams | str | Path | None = None, use_shipped_params: bool = True,
                   tta: int | None = None, postprocess: dict[str, Any] | None = None,
                   max_memory: int | None = None, precision: str = "float32",
                   stain_models: bool = True, unfamiliar_params: bool = True) -> InferencePipeline | UnfamiliarRouter:
    """The inference pipeline for ``model`` ('unet', 'mrcnn' or 'ensemble').

    Args:
        weights: the model's weights (for the ensemble: none; use unet_weights / mrcnn_weights);
            default: the shipped file in weights/.
        params: InferenceParams, a params JSON path, or None: the tuned file beside the
            weights when ``use_shipped_params``, else the defaults.
        tta, postprocess: choices that override the params (None: keep theirs).
        max_memory: peak memory to aim at, MB (``--max-memory``; InferenceParams.max_memory_mb);
            None: the params' own (3000 by default).
        precision: the networks' arithmetic, 'float32' or 'bfloat16' (see load_predictor).
        stain_models: where X.stain.weights.h5 lies beside a network's weights (with the
            training_domains.json of weights/), send the colour images unlike every training
            acquisition to the stain-trained networks (loaded at the first such image);
            False: the shipped networks for every image.
        unfamiliar_params: decode the images unlike every training acquisition with the
            params' ``unfamiliar`` choices, where they have some (the shipped Mask R-CNN's:
            8-way TTA); False: the same params for every image.
        Either routing wraps the pipeline in a tools.inference.routing.UnfamiliarRouter.
    """
    if model not in MODELS:
        raise NucleiError(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
    if model == "unet":
        unet_weights = unet_weights or weights
    elif model == "mrcnn":
        mrcnn_weights = mrcnn_weights or weights
    params_weights = mrcnn_weights if model == "mrcnn" else unet_weights
    chosen, _ = resolve_params(model, params_weights, params, use_shipped_params)
    chosen = chosen.with_overrides(tta=tta, postprocess=postprocess, max_memory=max_memory)
    dense = DenseModel(load_predictor("unet", unet_weights, precision)) if model in ("unet", "ensemble") else None
    # the Mask R-CNN's mask threshold is its own params' choice, not the ensemble's (tuned with the config's)
    mask_threshold = chosen.thresholds.get("mask_threshold") if model == "mrcnn" else None
    instance = (InstanceModel(load_predictor("mrcnn", mrcnn_weights, precision, mask_threshold=mask_threshold))
                if model in ("mrcnn", "ensemble") else None)
    if not unfamiliar_params:
        chosen = chosen.replace(unfamiliar=None)
    pipeline = InferencePipeline(dense, instance, chosen)
    stained = stain_weights(model, unet_weights, mrcnn_weights) if stain_models else {}
    if not stained and chosen.unfamiliar is None:
        return pipeline
    reference = training_domains_for(network_weights(model, unet_weights, mrcnn_weights).values())
    if reference is None:
        return pipeline
    from tools.inference.routing import UnfamiliarRouter

    on_unfamiliar = chosen.for_unfamiliar_images().replace(unfamiliar=None)
    unfamiliar = None
    if chosen.unfamiliar is not None:
        same_paste = (model != "mrcnn" or on_unfamiliar.thresholds.get("mask_threshold") == mask_threshold)
        unfamiliar = (InferencePipeline(dense, instance, on_unfamiliar) if same_paste else
                      build_pipeline(model, unet_weights=unet_weights, mrcnn_weights=mrcnn_weights,
                                     params=on_unfamiliar, precision=precision, stain_models=False))
    networks = {**network_weights(model, unet_weights, mrcnn_weights), **stained}
    build_stained = (lambda: build_pipeline(model, unet_weights=networks.get("unet"), mrcnn_weights=networks.get("mrcnn"),
                                            params=on_unfamiliar, precision=precision, stain_models=False)
                     ) if stained else None
    return UnfamiliarRouter(pipeline, reference, build_stained, unfamiliar)


def network_weights(model: str, unet_weights: str | Path | None = None,
                    mrcnn_weights: str | Path | None = None) -> dict[str, Path]:
    """{'unet' and/or 'mrcnn': weights path} of ``model``'s networks, the shipped files by default."""
    given = {"unet": unet_weights, "mrcnn": mrcnn_weights}
    names = ("unet", "mrcnn") if model == "ensemble" else (model,)
    return {name: Path(given[name]) if given[name] else DEFAULT_WEIGHTS[name] for name in names}


def stain_weights(model: str, unet_weights: str | Path | None = None,
                  mrcnn_weights: str | Path | None = None) -> dict[str, Path]:
    """{network: X.stain.weights.h5} for ``model``'s networks that have one beside their weights
    (tools.inference.routing); empty when none has."""
    from tools.inference.routing import stain_weights_for

    found = {name: stain_weights_for(path) for name, path in network_weights(model, unet_weights, mrcnn_weights).items()}
    return {name: path for name, path in found.items() if path is not None}


def load_model(weights: str | Path | None = None, ensemble: bool = False, **options: Any) -> InferencePipeline:
    """A ready-to-use model: ``load_model(path).predict(image) -> (labels, scores)``.

    Args:
        weights: a ``.weights.h5`` file with its config JSON beside it (U-Net or Mask R-CNN,
            told apart by the config); None: the shipped U-Net (or the ensemble).
        ensemble: the shipped U-Net + Mask R-CNN (or ``unet_weights=`` / ``mrcnn_weights=``).
        **options: as :func:`build_pipeline` (params, use_shipped_params, tta, postprocess, max_memory, ...).
    """
    if ensemble:
        return build_pipeline("ensemble", **options)
    model = model_of_weights(weights) if weights is not None else "unet"
    return build_pipeline(model, weights=weights, **options)
