"""A trained U-Net ready to predict: weights + config in, probability maps and their decode out.

The predictor is the model's part of inference only: normalise (``prepare``), run the network
on a batch (``predict_batch``) and turn probability maps into nuclei (``decode``). Padding,
tiling of large images, TTA and post-processing are model-independent and live in
``tools.inference`` (``tools.inference.load_model`` builds the whole pipeline).

Memory: Keras runs a functional model eagerly by keeping every layer's output until the
call ends (about 4.3 KB per input pixel for the shipped U-Net, so a batch of four 1024 x 1024
tiles took 18 GB). :func:`run_freeing` runs the same layers in the same order on the
same tensors, so the output is bit for bit the same, but drops each intermediate tensor
after its last use (about 1.1 KB per pixel). ``activation_bytes_per_pixel`` is the
estimate tools.inference.pipeline plans tiles with.

Speed: under TensorFlow, ``predict_batch`` runs a graph traced once per input shape (a few
tenths of a second each, from a shape's second use on; the graphs of the last ``COMPILED_SHAPES``
shapes are kept). The graph executor also frees each intermediate after its last use, and runs
a 256 x 256 image in 0.06 s against 0.11 s eagerly on the 2-core CPU (bench/RESULTS.md, issue 10).
Other backends, or ``compiled=False``, run :func:`run_freeing` eagerly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from preprocessing.errors import NucleiError
from preprocessing.labels import mean_over_labels
from preprocessing.precision import check_precision, compute_policy
from preprocessing.settings import config_path_for
from unet.config import UNetConfig
from unet.data import model_input
from unet.instances import labels_from_config
from unet.model import build_unet

# Resident memory of a loaded U-Net beyond the runtime (weights, Keras objects, kernels), MB.
RESIDENT_MB = 250
# Traced graphs kept, one per input shape (least recently used dropped): a folder has few
# sizes, and TTA and tiling add a few more.
COMPILED_SHAPES = 48


def _execution_plan(function: Any) -> tuple[list, dict[int, int], set[int]]:
    """(nodes in Keras' own execution order, {tensor id: index of its last consumer}, output ids)."""
    from keras import tree

    nodes = []
    for depth in sorted(function._nodes_by_depth, reverse=True):
        for node in function._nodes_by_depth[depth]:
            if node.operation is not None and not node.is_input:
                nodes.append(node)
    last_use = {}
    for index, node in enumerate(nodes):
        for tensor in node.input_tensors:
            last_use[id(tensor)] = index
    return nodes, last_use, {id(t) for t in tree.flatten(function.outputs)}


def _is_functional(operation: Any) -> bool:
    import keras

    return isinstance(operation, keras.Model) and hasattr(operation, "_nodes_by_depth")


def run_freeing(model: Any, inputs: Any) -> Any:
    """``model(inputs, training=False)`` for a functional Keras model, freeing as it goes.

    The layers are called in Keras' own order with the arguments Keras would pass (training
    False where a layer takes it), so the result is the same bit for bit; each intermediate
    tensor is dropped after its last consumer, so the memory held is the live set (skip
    connections and the layer at work), not every activation. Nested functional models
    run the same way.

    Args:
        model: a functional keras.Model.
        inputs: a tensor or array (or the flat list the model takes).

    Returns:
        what ``model(inputs)`` returns (its output structure).
    """
    import keras
    from keras import tree

    nodes, last_use, keep = _execution_plan(model)
    flat = [keras.ops.convert_to_tensor(x, dtype=t.dtype) for x, t in zip(tree.flatten(inputs), model.inputs)]
    values = {id(t): x for t, x in zip(model.inputs, flat)}
    del flat
    for index, node in enumerate(nodes):
        if any(id(t) not in values for t in node.input_tensors):
            raise RuntimeError(f"layer {node.operation.name} is not computable from the inputs")
        args, kwargs = node.arguments.fill_in(values)
        operation = node.operation
        if _is_functional(operation) and not kwargs and len(args) == 1:
            outputs = run_freeing(operation, args[0])
        else:
            if "training" in getattr(operation, "_call_context_args", {}):
                kwargs["training"] = False
            outputs = operation(*args, **kwargs)
        del args, kwargs
        for tensor, value in zip(node.outputs, tree.flatten(outputs)):
            values[id(tensor)] = value
        del outputs
        for tensor in node.input_tensors:
            if last_use.get(id(tensor)) == index and id(tensor) not in keep:
                values.pop(id(tensor), None)
    return tree.pack_sequence_as(model._outputs_struct, [values[id(t)] for t in tree.flatten(model.outputs)])


class UNetPredictor:
    """Wraps a built U-Net and its config."""

    resident_mb = RESIDENT_MB

    def __init__(self, model: Any, config: UNetConfig, compiled: bool = True, precision: str = "float32"):
        self.model = model
        self.config = config
        self.precision = precision
        self.compiled = compiled
        self._graphs: dict[tuple[int, ...], Any] = {}  # input shape -> traced graph, oldest first
        self._seen_once: set[tuple[int, ...]] = set()  # shapes run once, eagerly

    @property
    def activation_bytes_per_pixel(self) -> float:
        """Estimated working memory of one forward pass per input pixel (bytes).

        The live set at full resolution is about nine ``base_filters``-channel float32
        maps (decoder concatenation, convolution, batch norm) plus the input; measured
        1.1 KB for the shipped U-Net (base 32). A MobileNetV2 encoder adds its
        stride-2 expansions (x1.5).
        """
        per_pixel = 4.0 * (9 * self.config.base_filters + 4 * self.config.input_channels)
        return per_pixel * (1.5 if self.config.encoder == "mobilenetv2" else 1.0)

    @classmethod
    def from_path(cls, weights_path: str | Path, config_path: str | Path | None = None,
                  precision: str = "float32") -> "UNetPredictor":
        """Load ``X.weights.h5`` with ``X.json`` beside it (a run's best/last use its config.json).

        ``precision``: one of preprocessing.precision.PRECISIONS (the weights stay float32 either way)."""
        check_precision(precision)
        weights_path = Path(weights_path)
        if not weights_path.is_file():
            raise NucleiError("weights file not found", weights_path)
        config_path = Path(config_path) if config_path else config_path_for(weights_path)
        if not config_path.is_file():
            raise NucleiError(f"config not found beside the weights (expected {config_path.name})", weights_path)
        config = UNetConfig.load(config_path).replace(encoder_weights=None)  # the weights hold the encoder
        with compute_policy(precision):  # bfloat16: the softmax stays float32 (unet.model)
            model = build_unet(config)
        try:
            model.load_weights(weights_path)
        except Exception as error:  # h5py / Keras raise many kinds
            raise NucleiError(f"these weights do not fit the U-Net of {config_path.name} "
                              f"({str(error).splitlines()[0][:200]})", weights_path) from None
        return cls(model, config, precision=precision)

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """uint8 [H, W, 3] -> float32 [H, W, C] network input (the config's normalisation)."""
        return model_input(image, self.config)

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        """batch: float32 [B, h, w, C] (h, w multiples of 2**depth) -> float32 [B, h, w, 3] softmax
        (4 channels with a distance head: unet.config.DISTANCE).

        Under TensorFlow (and ``compiled``) a graph traced for this exact shape (a graph
        relaxed to unknown sizes breaks bilinear up-sampling in Keras 3); otherwise eagerly
        with :func:`run_freeing`, so intermediate maps are freed as soon as they are used.
        """
        import keras

        if self.compiled and keras.backend.backend() == "tensorflow":
            return self._graph_for(tuple(batch.shape))(batch)
        return self._eager(batch)

    def _eager(self, batch: np.ndarray) -> np.ndarray:
        import keras

        if _is_functional(self.model):
            return keras.ops.convert_to_numpy(run_freeing(self.model, batch))
        return keras.ops.convert_to_numpy(self.model(batch, training=False))

    def _graph_for(self, shape: tuple[int, ...]) -> Any:
        """numpy float32 [B, h, w, C] -> numpy float32 [B, h, w, 3], traced for ``shape`` from its
        second use on (the first runs eagerly)."""
        import tensorflow as tf

        graph = self._graphs.pop(shape, None)
        if graph is None and shape not in self._seen_once:
            # first sight: eagerly (a trace costs about two graph runs, and many shapes, such as a
            # folder's odd sizes or their TTA zooms, come once); the second sight traces
            if len(self._seen_once) >= 4 * COMPILED_SHAPES:
                self._seen_once.clear()
            self._seen_once.add(shape)
            return self._eager
        if graph is None:
            self._seen_once.discard(shape)
            if len(self._graphs) >= COMPILED_SHAPES:
                self._graphs.pop(next(iter(self._graphs)))
            traced = tf.function(lambda x: self.model(x, training=False)).get_concrete_function(
                tf.TensorSpec(shape, tf.float32))
            graph = lambda batch: traced(tf.constant(batch, tf.float32)).numpy().astype(np.float32, copy=False)
        self._graphs[shape] = graph  # now the most recently used
        return graph

    def decode(self, probabilities: np.ndarray, thresholds: dict[str, Any] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """float32 [H, W, 3] (body, border, background[, distance]) -> (labels int32 [H, W], scores float32 [N]).

        ``thresholds`` override the config's watershed fields; scores are each nucleus'
        mean P(foreground).
        """
        config = self.config.replace(**thresholds) if thresholds else self.config
        labels = labels_from_config(probabilities, config)
        return labels, mean_over_labels(labels, 1.0 - probabilities[..., 2])
