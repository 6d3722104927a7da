"""Export a trained model as a TensorFlow SavedModel (TF Serving, TFLite, plain ``tf.saved_model.load``).

``export_model("unet", "exports/unet/1")`` writes, atomically (a hidden temporary folder
beside OUT, renamed into place when complete)::

    OUT/saved_model.pb, OUT/variables/, OUT/assets/   Keras 3 ``model.export(format="tf_saved_model")``
    OUT/model.json      the model's config, in the project's settings format
    OUT/params.json     the inference parameters that go with the weights (tuned file if shipped)
    OUT/export.json     what the ``serve`` signature takes and gives, and where it came from

The ``serve`` function is the network only; normalisation, padding, tiling, TTA, decoding and
post-processing stay on the caller's side (``export.json`` says which normalisation and multiple):

* U-Net: ``serve(float32 [B, H, W, C] normalised, H and W multiples of 2**depth)`` -> float32
  [B, H, W, 3] softmax (body, border, background; a fourth channel, the distance map, with
  ``distance_head``). Keras 3's bilinear ``UpSampling2D`` cannot be
  traced for unknown H and W, so the exported copy runs the same resize through
  :class:`DynamicBilinearUpSampling2D` (``tf.image.resize``, Keras's own kernel): same numbers.
* Mask R-CNN: ``serve(float32 [B, H, W, 3] normalised, H and W multiples of 64)`` -> the
  inference graph's dict: boxes [B, D, 4] (y1, x1, y2, x2 pixels), class_ids int32 [B, D],
  scores [B, D], count int32 [B], masks [B, D, M, M] probabilities (RPN, proposals, RoIAlign,
  detection, NMS and mask head all inside the graph).

TF Serving wants a version number as the last folder (``--out exports/unet/1``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from preprocessing.errors import NucleiError

EXPORT_KIND = "nuclei-seg-export"
EXPORT_FILES = ("model.json", "params.json", "export.json")


def _dynamic_upsampling_class():
    """The Keras layer class (built on first use: it needs keras and tensorflow)."""
    import keras
    import tensorflow as tf

    class DynamicBilinearUpSampling2D(keras.layers.Layer):
        """``UpSampling2D(size, interpolation="bilinear")`` that also traces for unknown H and W."""

        def __init__(self, size=(2, 2), **kwargs):
            super().__init__(**kwargs)
            self.size = tuple(int(s) for s in size)

        def call(self, inputs):
            shape = tf.shape(inputs)
            new_size = tf.stack([shape[1] * self.size[0], shape[2] * self.size[1]])
            return tf.cast(tf.image.resize(inputs, new_size, method="bilinear", antialias=False), inputs.dtype)

        def compute_output_shape(self, input_shape):
            b, h, w, c = input_shape
            return (b, None if h is None else h * self.size[0], None if w is None else w * self.size[1], c)

        def get_config(self):
            return {**super().get_config(), "size": self.size}

    return DynamicBilinearUpSampling2D


def exportable_unet(model: Any) -> Any:
    """A copy of a U-Net whose bilinear up-sampling traces for any input size, weights shared by value."""
    import keras

    dynamic = _dynamic_upsampling_class()

    def clone(layer):
        if isinstance(layer, keras.layers.UpSampling2D) and layer.interpolation == "bilinear":
            if layer.data_format != "channels_last":
                raise NucleiError("only channels_last U-Nets can be exported")
            return dynamic(layer.size, name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def _signature_doc(kind: str, config: Any, channels: int) -> dict[str, Any]:
    """What ``serve`` takes and gives, in words (export.json)."""
    if kind == "unet":
        return {"inputs": {"images": f"float32 [batch, H, W, {channels}] normalised by "
                                     f"preprocessing.normalize('{config.normalization}', invert_light_background="
                                     f"{config.invert_light_background}) (unet.data.model_input), "
                                     f"reflect-padded to multiples of {config.multiple} "
                                     f"(tools.inference.tiling.pad_to_multiple)"},
                "outputs": {"output_0": "float32 [batch, H, W, 3] softmax: body, border, background"
                            + (", then [..., 3] the distance map (sigmoid)" if config.distance_head else "")},
                "python_equivalent": "unet.predictor.UNetPredictor.predict_batch"}
    return {"inputs": {"images": f"float32 [batch, H, W, {channels}] normalised by "
                                 f"preprocessing.normalize('{config.NORMALIZE}', invert_light_background="
                                 f"{config.INVERT_LIGHT_BACKGROUND}), zero-padded to multiples of "
                                 f"{config.IMAGE_PAD_MULTIPLE} (mrcnn.data.model_input)"},
            "outputs": {"boxes": "float32 [batch, D, 4] y1, x1, y2, x2 in pixels",
                        "class_ids": "int32 [batch, D]", "scores": "float32 [batch, D]",
                        "count": "int32 [batch]: detections per image (rows past it are padding)",
                        "masks": f"float32 [batch, D, {config.MASK_SHAPE[0]}, {config.MASK_SHAPE[1]}] "
                                 f"probabilities of each detection's class over its box"},
            "python_equivalent": "mrcnn.model.MaskRCNN.infer"}


def _check_target(out: Path) -> None:
    """OUT may be absent, an empty folder, or an earlier export (replaced); nothing else."""
    if not out.exists():
        return
    if not out.is_dir():
        raise NucleiError("--out is a file, expected a folder for the SavedModel", out)
    if any(out.iterdir()) and not (out / "export.json").is_file():
        raise NucleiError("--out holds other files; give a new or empty folder (an earlier export is replaced)",
                          out)


def export_model(model: str, out: str | Path, weights: str | Path | None = None, params: Any = None,
                 use_shipped_params: bool = True) -> dict[str, Any]:
    """Export ``model`` ('unet' or 'mrcnn'; weights from ``weights`` or the shipped file) to ``out``.

    Args:
        params: InferenceParams, a params JSON path, or None (the tuned file beside the
            weights when ``use_shipped_params``, else the defaults); written as OUT/params.json.

    Returns:
        the export.json document (model, weights, signature, versions).

    Raises:
        NucleiError: unknown model, missing weights, an --out that holds other files.
    """
    import keras
    import tensorflow as tf

    from preprocessing.files import save_json_atomic
    from tools.inference.models import DEFAULT_WEIGHTS, load_predictor, resolve_params
    from tools.inference.params import save_params

    if model not in ("unet", "mrcnn"):
        raise NucleiError(f"cannot export {model!r}: choose unet or mrcnn (the ensemble is two exports)")
    out = Path(out)
    _check_target(out)
    weights = Path(weights) if weights else DEFAULT_WEIGHTS[model]
    predictor = load_predictor(model, weights)
    chosen, params_source = resolve_params(model, weights, params, use_shipped_params)
    config = predictor.config
    if model == "unet":
        network = exportable_unet(predictor.model)
        channels = int(network.inputs[0].shape[-1])
    else:
        network = predictor.model
        channels = int(config.IMAGE_CHANNEL_COUNT)
    signature = [tf.TensorSpec(shape=(None, None, None, channels), dtype=tf.float32, name="images")]
    document = {"kind": EXPORT_KIND, "model": model, "weights": str(weights),
                "params": str(params_source) if params_source else None,
                "signatures": ["serve", "serving_default"],
                **_signature_doc(model, config, channels),
                "versions": {"tensorflow": tf.__version__, "keras": keras.__version__}}
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as error:
        raise NucleiError(f"cannot create the export folder: {error.strerror or error}", out) from None
    try:
        network.export(str(staging), format="tf_saved_model", verbose=False, input_signature=signature)
        config.save(staging / "model.json")
        save_params(chosen, staging / "params.json")
        save_json_atomic(staging / "export.json", document)
        _readable(staging)
        _replace(out, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return document


def _readable(folder: Path) -> None:
    """Folders and files as a plain mkdir / open would make them (the temporary ones are private),
    so that a server running as another user can read the export."""
    mask = os.umask(0)
    os.umask(mask)
    for path in [folder, *folder.rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


def _replace(out: Path, staging: Path) -> None:
    """Put the finished ``staging`` folder at ``out``; an earlier export there goes only afterwards."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
    try:
        staging.rename(out)
    except OSError as error:
        if old is not None:
            old.rename(out)
        raise NucleiError(f"cannot move the export into place: {error.strerror or error}", out) from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
