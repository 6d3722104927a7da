"""Mask R-CNN composed from its parts: one Keras model for training and inference.

``MaskRCNN(config)`` holds the backbone + FPN, the RPN head, the proposal layer,
RoIAlign, the box and mask heads and the detection layer; with ``CASCADE_STAGES > 1``
the box heads are a Cascade R-CNN (:mod:`mrcnn.cascade`). ``train_step`` computes the
five losses explicitly (no ``add_loss``); ``call`` runs inference. The graph is written
in ``keras.ops`` (plus :mod:`mrcnn.backend_ops`), so it trains on TensorFlow, on JAX (the
whole step compiled with XLA, static shapes) and on PyTorch (the GPU machines have no
TensorFlow); the weights files are the same on all three. Matterport's
training stages are :meth:`MaskRCNN.compile_for_training` (``layers``: 'heads', '4+', 'all', ...);
the training loop itself (checkpoints, resume, schedules) is ``tools.engine``'s, shared with the
U-Net. Prediction on numpy images: :class:`mrcnn.predictor.MrcnnPredictor`. On disk a model is
``<name>.weights.h5`` + ``<name>.json`` (the config) or a ``.keras`` file (safe mode: every
custom class is registered). ``MaskRCNN(config, precision="bfloat16")`` computes its
backbone, FPN and heads in bfloat16 (the CPU fast preset, :mod:`preprocessing.precision`).
"""

import re
from pathlib import Path

import keras
import numpy as np
from keras import ops

from mrcnn import cascade
from mrcnn import losses as L
from mrcnn.backbone import build_backbone, layer_stage
from mrcnn.backend_ops import take_class
from mrcnn.config import Config
from mrcnn.detection import DetectionLayer
from mrcnn.heads import BoxHead, MaskHead
from mrcnn.proposals import ProposalLayer
from mrcnn.roi_align import PyramidRoIAlign
from mrcnn.rpn import RpnHead, graph_anchors
from mrcnn.targets import DetectionTargetLayer
from preprocessing.errors import NucleiError
from preprocessing.files import save_weights_atomic
from preprocessing.precision import check_precision, compute_policy
from preprocessing.settings import config_path_for

LOSS_NAMES = ("rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss", "mrcnn_mask_loss")

# Matterport's training stages; a stage is trained with heads + backbone stages >= n.
STAGES = {"heads": None, "2+": 2, "3+": 3, "4+": 4, "5+": 5, "all": 1}


def stage_loss_names(stages: int) -> tuple[str, ...]:
    """The per-stage losses a Cascade R-CNN also reports (none for one stage); they are
    not added to the total again (``mrcnn_class_loss`` / ``mrcnn_bbox_loss`` hold their weighted sums)."""
    if stages == 1:
        return ()
    return tuple(f"mrcnn_{kind}_loss_stage{k + 1}" for k in range(stages) for kind in ("class", "bbox"))


@keras.saving.register_keras_serializable(package="mrcnn")
class MaskRCNN(keras.Model):
    """Mask R-CNN.

    Inference input: float32 [batch, H, W, 3] normalised images, H and W multiples of 64.
    Inference output (dict):
        boxes [batch, D, (y1, x1, y2, x2)] pixels, class_ids int32 [batch, D],
        scores [batch, D], count int32 [batch], masks [batch, D, M, M] probabilities of
        each detection's class over its box.

    Training batches (dict, see :mod:`mrcnn.data`): image [batch, S, S, 3],
    gt_class_ids int32 [batch, G], gt_boxes [batch, G, 4], gt_masks [batch, G, mh, mw],
    rpn_match int32 [batch, A], rpn_bbox [batch, A, 4].

    ``precision`` ('float32' or 'bfloat16', :mod:`preprocessing.precision`): the arithmetic of
    the backbone, FPN, RPN head and RoI heads; every output above stays float32.
    """

    def __init__(self, config=None, precision="float32", **kwargs):
        if isinstance(config, dict):
            config = Config.from_dict(config)
        if not isinstance(config, Config):
            raise NucleiError("MaskRCNN needs a mrcnn.config.Config")
        super().__init__(**kwargs)
        self.config = config
        self.precision = check_precision(precision)
        c = config
        # the layers with weights compute in ``precision``; anchors, proposals, RoIAlign,
        # box decoding and detection stay float32 (the heads return float32)
        with compute_policy(precision):
            self.backbone = build_backbone(c)
            self.rpn_head = RpnHead(c.ANCHORS_PER_LOCATION, c.RPN_HEAD_CHANNELS, c.RPN_ANCHOR_STRIDE,
                                    name="rpn_model")
        self.train_proposals = ProposalLayer(c.POST_NMS_ROIS_TRAINING, c.RPN_NMS_THRESHOLD, c.PRE_NMS_LIMIT,
                                             c.RPN_BBOX_STD_DEV, name="rpn_proposals_train")
        self.inference_proposals = ProposalLayer(c.POST_NMS_ROIS_INFERENCE, c.RPN_NMS_THRESHOLD, c.PRE_NMS_LIMIT,
                                                 c.RPN_BBOX_STD_DEV, name="rpn_proposals")
        self.stages = cascade.stages(c)
        first = self.stages[0]
        self.detection_targets = DetectionTargetLayer(
            c.TRAIN_ROIS_PER_IMAGE, c.ROI_POSITIVE_RATIO, first.positive_iou, first.bbox_std_dev, c.MASK_SHAPE,
            c.USE_GT_AS_PROPOSALS, name="mrcnn_detection_targets")
        self.box_align = PyramidRoIAlign(c.POOL_SIZE, c.ROI_CANONICAL_SIZE, c.ROI_CANONICAL_LEVEL,
                                         name="roi_align_classifier")
        self.mask_align = PyramidRoIAlign(c.MASK_POOL_SIZE, c.ROI_CANONICAL_SIZE, c.ROI_CANONICAL_LEVEL,
                                          name="roi_align_mask")
        if len(self.stages) > 1:  # Cascade R-CNN: stages 2.. have their own targets and heads
            later = list(enumerate(self.stages))[1:]
            self.cascade_targets = [DetectionTargetLayer(
                c.TRAIN_ROIS_PER_IMAGE, c.ROI_POSITIVE_RATIO, stage.positive_iou, stage.bbox_std_dev, c.MASK_SHAPE,
                c.USE_GT_AS_PROPOSALS, name=f"mrcnn_detection_targets{cascade.stage_suffix(k)}")
                for k, stage in later]
        with compute_policy(precision):
            self.box_head = BoxHead(c.NUM_CLASSES, c.FPN_CLASSIF_FC_LAYERS_SIZE, name="mrcnn_box_head")
            if len(self.stages) > 1:
                self.cascade_heads = [BoxHead(c.NUM_CLASSES, c.FPN_CLASSIF_FC_LAYERS_SIZE,
                                              suffix=cascade.stage_suffix(k),
                                              name=f"mrcnn_box_head{cascade.stage_suffix(k)}") for k, _ in later]
            self.mask_head = MaskHead(c.NUM_CLASSES, c.MASK_HEAD_CHANNELS, c.MASK_HEAD_CONVS, c.MASK_UPSAMPLINGS,
                                      name="mrcnn_mask_head")
        self.detection = DetectionLayer(c.DETECTION_MAX_INSTANCES, c.DETECTION_MIN_CONFIDENCE,
                                        c.DETECTION_NMS_THRESHOLD, self.stages[-1].bbox_std_dev,
                                        name="mrcnn_detection")
        self.loss_names = LOSS_NAMES + stage_loss_names(len(self.stages))
        self.trackers = {name: keras.metrics.Mean(name=name) for name in ("loss",) + self.loss_names}
        self._infer_fn = None
        # build every weight now, so weights load before any call: a tiny forward, symbolic under
        # JAX (eagerly, JAX compiles each of its ~500 ops: 20-30 s on a CPU)
        shape = (1, 64, 64, config.IMAGE_CHANNEL_COUNT)
        if keras.backend.backend() == "jax":
            self(keras.KerasTensor(shape, dtype="float32"), training=False)
        else:
            self(ops.zeros(shape), training=False)

    # ------------------------------------------------------------ serialisation
    def get_config(self):
        return {"config": self.config.to_dict(), "name": self.name, "precision": self.precision}

    @classmethod
    def from_config(cls, config):
        # Deserialised models get their weights loaded next: no ImageNet backbone file needed.
        return cls(Config.from_dict({**config["config"], "BACKBONE_WEIGHTS": None}),
                   precision=config.get("precision", "float32"), name=config.get("name"))

    def build(self, input_shape=None):
        self.built = True

    # ------------------------------------------------------------------ graph
    def _features(self, images, training):
        bn_training = bool(training) and self.config.TRAIN_BN
        features = self.backbone(images, training=bn_training)
        if self.precision != "float32":  # RoIAlign samples the pyramid in float32
            features = [ops.cast(feature, "float32") for feature in features]
        return features

    def _rpn(self, images, training):
        features = self._features(images, training)
        logits, probs, deltas = self.rpn_head(features)
        shape = ops.shape(images)
        anchors = graph_anchors(shape[1], shape[2], self.config.RPN_ANCHOR_SCALES, self.config.RPN_ANCHOR_RATIOS,
                                self.config.BACKBONE_STRIDES, self.config.RPN_ANCHOR_STRIDE)
        size = ops.stack([ops.cast(shape[1], "int32"), ops.cast(shape[2], "int32")])  # (H, W)
        return features, logits, probs, deltas, anchors, size

    def box_heads(self):
        """The box head of every stage, first to last (one unless Cascade R-CNN)."""
        return [self.box_head] + list(getattr(self, "cascade_heads", []))

    def stage_targets(self):
        """The detection-target layer of every stage, first to last."""
        return [self.detection_targets] + list(getattr(self, "cascade_targets", []))

    def call(self, images, training=False, trim_detections=False):
        """Inference (see the class doc). A training batch dict is accepted (its 'image' is used).

        ``trim_detections``: run the mask head on the first ``max(count)`` detections only, so
        ``masks`` is [B, max(count), M, M] instead of [B, DETECTION_MAX_INSTANCES, M, M]. The
        mask head is most of the inference cost and a nucleus image fills a fraction of the
        400 slots; the shape becomes data-dependent, so only eager or TF-graph callers use it
        (XLA / JAX need the static default).
        """
        if isinstance(images, dict):
            images = images["image"]
        features, _, probs, deltas, anchors, size = self._rpn(images, False)
        rois = self.inference_proposals([probs, deltas, anchors, size])
        stage_probs = []
        for k, head in enumerate(self.box_heads()):
            if k:  # the previous stage's boxes, refined by its best foreground class
                rois = cascade.refine_boxes(rois, box_deltas, cascade.refine_class_ids(class_probs),
                                            self.stages[k - 1].bbox_std_dev, size)
            _, class_probs, box_deltas = head(self.box_align([rois] + features[:4]))
            stage_probs.append(class_probs)
        class_probs = cascade.mean_scores(stage_probs)  # the paper's ensemble of the stages' scores
        boxes, class_ids, scores, count = self.detection([rois, class_probs, box_deltas, size])
        mask_boxes, mask_classes = boxes, class_ids
        if trim_detections:
            kept = ops.maximum(ops.max(count), 1)  # at least one row keeps every shape non-empty
            mask_boxes, mask_classes = boxes[:, :kept], class_ids[:, :kept]
        mask_logits = self.mask_head(self.mask_align([mask_boxes] + features[:4]))
        masks = ops.sigmoid(take_class(ops.transpose(mask_logits, (0, 1, 4, 2, 3)), mask_classes))
        return {"boxes": boxes, "class_ids": class_ids, "scores": scores, "count": count, "masks": masks}

    def compute_losses(self, batch, training=True):
        """The five losses (dict of scalars) for a training batch.

        With Cascade R-CNN, ``mrcnn_class_loss`` / ``mrcnn_bbox_loss`` are the stages' losses
        weighted by ``CASCADE_LOSS_WEIGHTS``; each stage's own is there too
        (``mrcnn_class_loss_stage1`` ..., see :func:`stage_loss_names`), and the mask head
        learns on the last stage's RoIs. The mask head sees only the RoI slots that can hold
        positives (:attr:`mrcnn.targets.DetectionTargetLayer.positive_slots`), the only
        rows its loss counts.
        """
        batch = {key: ops.convert_to_tensor(value) for key, value in batch.items()}
        images = batch["image"]
        features, logits, probs, deltas, anchors, size = self._rpn(images, training)
        losses = {"rpn_class_loss": L.rpn_class_loss(batch["rpn_match"], logits),
                  "rpn_bbox_loss": L.rpn_bbox_loss(batch["rpn_bbox"], batch["rpn_match"], deltas)}
        proposals = self.train_proposals([probs, deltas, anchors, size])
        gt = [batch["gt_class_ids"], batch["gt_boxes"], batch["gt_masks"]]
        class_losses, bbox_losses = [], []
        for k, (head, targets) in enumerate(zip(self.box_heads(), self.stage_targets())):
            if k:  # sample stage k's targets from stage k-1's refined RoIs (no gradient through them)
                proposals = cascade.refine_boxes(rois, pred_deltas, cascade.refine_class_ids(class_probs, target_ids),
                                                 self.stages[k - 1].bbox_std_dev, size)
            rois, target_ids, target_deltas, target_masks = targets([proposals] + gt)
            class_logits, class_probs, pred_deltas = head(self.box_align([rois] + features[:4]))
            class_losses.append(L.mrcnn_class_loss(target_ids, class_logits))
            bbox_losses.append(L.mrcnn_bbox_loss(target_deltas, target_ids, pred_deltas))
        # positives fill the first slots of the last stage's RoIs and only they reach the mask
        # loss: the mask head runs on those slots alone (a third of the RoIs, the same loss)
        slots = self.stage_targets()[-1].positive_slots
        rois, target_ids, target_masks = rois[:, :slots], target_ids[:, :slots], target_masks[:, :slots]
        mask_logits = self.mask_head(self.mask_align([rois] + features[:4]))
        if len(class_losses) == 1:
            losses["mrcnn_class_loss"], losses["mrcnn_bbox_loss"] = class_losses[0], bbox_losses[0]
        else:
            weights = [stage.loss_weight for stage in self.stages]
            losses["mrcnn_class_loss"] = sum(w * loss for w, loss in zip(weights, class_losses))
            losses["mrcnn_bbox_loss"] = sum(w * loss for w, loss in zip(weights, bbox_losses))
            for k, (class_loss, bbox_loss) in enumerate(zip(class_losses, bbox_losses)):
                losses[f"mrcnn_class_loss_stage{k + 1}"] = class_loss
                losses[f"mrcnn_bbox_loss_stage{k + 1}"] = bbox_loss
        losses["mrcnn_mask_loss"] = L.mrcnn_mask_loss(target_masks, target_ids, mask_logits)
        return losses

    def _total(self, losses):
        weights = self.config.LOSS_WEIGHTS
        return sum(float(weights[name]) * losses[name] for name in LOSS_NAMES)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def _update(self, total, losses):
        self.trackers["loss"].update_state(total)
        for name in self.loss_names:
            self.trackers[name].update_state(losses[name])
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    @staticmethod
    def _unpack(data):
        while isinstance(data, (tuple, list)):
            data = data[0]
        return data

    def train_step(self, *args):
        """One optimiser step. Keras calls ``train_step(data)`` on TensorFlow and PyTorch, and
        ``train_step(state, data)`` on JAX, where the step is a pure function compiled whole
        with XLA (every shape in the graph is static there, see :mod:`mrcnn.backend_ops`)."""
        if keras.backend.backend() == "jax":
            return self._train_step_jax(*args)
        batch = self._unpack(args[0])
        if keras.backend.backend() == "torch":
            return self._train_step_torch(batch)
        import tensorflow as tf

        with tf.GradientTape() as tape:
            losses = self.compute_losses(batch, training=True)
            total = self._total(losses)
            scaled = keras.src.losses.loss.scale_loss_for_distribution(total)
        variables = self.trainable_variables
        grads = tape.gradient(scaled, variables)
        pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
        self.optimizer.apply([g for g, _ in pairs], [v for _, v in pairs])
        return self._update(total, losses)

    def _train_step_torch(self, batch):
        import torch

        self.zero_grad()
        losses = self.compute_losses(batch, training=True)
        total = self._total(losses)
        total.backward()
        pairs = [(v.value.grad, v) for v in self.trainable_weights if v.value.grad is not None]
        with torch.no_grad():
            self.optimizer.apply([g for g, _ in pairs], [v for _, v in pairs])
        return self._update(total.detach(), {name: value.detach() for name, value in losses.items()})

    def _stateless_losses(self, trainable, non_trainable, batch, training):
        """:meth:`compute_losses` as a pure function of the variables' values (JAX): returns
        (losses, the non-trainable values after the pass: batch-norm statistics, RNG state)."""
        mapping = list(zip(self.trainable_variables, trainable)) + list(zip(self.non_trainable_variables, non_trainable))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            losses = self.compute_losses(batch, training=training)
        updated = [scope.get_current_value(v) for v in self.non_trainable_variables]
        return losses, [old if new is None else new for new, old in zip(updated, non_trainable)]

    def _stateless_update(self, metric_values, total, losses):
        """:meth:`_update` on the metrics' values (JAX): returns (logs, new metric values)."""
        with keras.StatelessScope(state_mapping=list(zip(self.metrics_variables, metric_values))) as scope:
            logs = self._update(total, losses)
        updated = [scope.get_current_value(v) for v in self.metrics_variables]
        return logs, [old if new is None else new for new, old in zip(updated, metric_values)]

    def _train_step_jax(self, state, data):
        import jax

        trainable, non_trainable, optimizer_values, metric_values = state
        batch = self._unpack(data)

        def total_loss(trainable, non_trainable):
            losses, non_trainable = self._stateless_losses(trainable, non_trainable, batch, True)
            return self._total(losses), (losses, non_trainable)

        (total, (losses, non_trainable)), grads = jax.value_and_grad(total_loss, has_aux=True)(trainable, non_trainable)
        trainable, optimizer_values = self.optimizer.stateless_apply(optimizer_values, grads, trainable)
        logs, metric_values = self._stateless_update(metric_values, total, losses)
        return logs, (trainable, non_trainable, optimizer_values, metric_values)

    def test_step(self, *args):
        """The losses of a batch, no update (``test_step(state, data)`` on JAX, as train_step)."""
        if keras.backend.backend() == "jax":
            (trainable, non_trainable, metric_values), data = args
            losses, non_trainable = self._stateless_losses(trainable, non_trainable, self._unpack(data), False)
            logs, metric_values = self._stateless_update(metric_values, self._total(losses), losses)
            return logs, (trainable, non_trainable, metric_values)
        losses = self.compute_losses(self._unpack(args[0]), training=False)
        return self._update(self._total(losses), losses)

    # --------------------------------------------------------------- training
    def set_trainable(self, layers="heads"):
        """Choose what trains: 'heads', '2+', '3+', '4+', '5+', 'all', or a regex over layer names.

        'heads' = RPN, FPN and the RoI heads; 'n+' adds backbone stages n..5.
        Frozen batch-norm layers run in inference mode (Keras 3 semantics).
        """
        from mrcnn.weights import iter_layers

        if layers in STAGES:
            min_stage = STAGES[layers]

            def wanted(name):
                stage = layer_stage(self.config.BACKBONE, name)
                return stage is None or (min_stage is not None and stage >= min_stage)
        else:
            try:
                pattern = re.compile(layers)
            except re.error as error:
                raise NucleiError(f"layers={layers!r} is neither a stage ({', '.join(STAGES)}) "
                                  f"nor a valid regex: {error}") from None

            def wanted(name):
                return bool(pattern.fullmatch(name))
        count = 0
        for layer in iter_layers(self):
            if layer.weights:
                layer.trainable = wanted(layer.name)
                count += layer.trainable
        if count == 0:
            raise NucleiError(f"layers={layers!r} leaves no layer to train")
        return count

    def make_optimizer(self, learning_rate=None):
        c = self.config
        lr = c.LEARNING_RATE if learning_rate is None else learning_rate
        if c.OPTIMIZER == "ADAM":
            optimizer = keras.optimizers.Adam(learning_rate=lr, weight_decay=c.WEIGHT_DECAY or None,
                                              global_clipnorm=c.GRADIENT_CLIP_NORM)
        else:
            optimizer = keras.optimizers.SGD(learning_rate=lr, momentum=c.LEARNING_MOMENTUM,
                                             weight_decay=c.WEIGHT_DECAY or None,
                                             global_clipnorm=c.GRADIENT_CLIP_NORM)
        if c.WEIGHT_DECAY:
            optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
        return optimizer

    def compile_for_training(self, learning_rate=None, layers="all"):
        """Choose what trains (:meth:`set_trainable`) and compile: the step is compiled whole
        with XLA on JAX; a ``tf.function`` without XLA on TensorFlow (its NMS kernel has none);
        eager on PyTorch."""
        self.set_trainable(layers)
        self.compile(optimizer=self.make_optimizer(learning_rate), jit_compile=keras.backend.backend() == "jax")

    # -------------------------------------------------------------- inference
    def infer(self, batch):
        """Run inference on float32 [B, H, W, 3] (H, W multiples of 64) -> dict of numpy arrays.

        With ``trim_detections``: ``masks`` is [B, max(count), M, M] (the other outputs keep
        DETECTION_MAX_INSTANCES rows); under TensorFlow one shape-relaxed graph, under JAX one
        XLA program per input shape (the mask head runs on every row there, then the masks are
        trimmed), elsewhere eager."""
        if keras.backend.backend() == "jax":
            return self._infer_jax(np.asarray(batch, np.float32))
        if keras.backend.backend() != "tensorflow":
            out = self(ops.convert_to_tensor(np.asarray(batch, np.float32)), training=False, trim_detections=True)
            return {k: ops.convert_to_numpy(v) for k, v in out.items()}
        import tensorflow as tf

        if self._infer_fn is None:
            self._infer_fn = tf.function(lambda x: self(x, training=False, trim_detections=True), reduce_retracing=True,
                                         input_signature=[tf.TensorSpec([None, None, None, self.config.IMAGE_CHANNEL_COUNT], tf.float32)])
        out = self._infer_fn(tf.convert_to_tensor(batch, tf.float32))
        return {k: v.numpy() for k, v in out.items()}

    def _infer_jax(self, batch):
        import jax

        if self._infer_fn is None:
            def infer(trainable, non_trainable, images):
                outputs, _ = self.stateless_call(trainable, non_trainable, images, training=False)
                return outputs

            self._infer_fn = jax.jit(infer)
        out = self._infer_fn([v.value for v in self.trainable_variables],
                             [v.value for v in self.non_trainable_variables], batch)
        out = {k: np.asarray(v) for k, v in out.items()}
        out["masks"] = out["masks"][:, :max(int(out["count"].max()), 1)]
        return out

    # ------------------------------------------------------------------ files
    def save_model(self, path):
        """Write ``path`` (.weights.h5) and its config ``<stem>.json`` beside it."""
        path = Path(path)
        if not path.name.endswith(".weights.h5"):
            raise NucleiError("weights file name must end in .weights.h5", path)
        save_weights_atomic(self, path)
        self.config.save(path.with_name(path.name[: -len(".weights.h5")] + ".json"))


def load_model(path, config=None, precision="float32"):
    """A MaskRCNN from ``x.weights.h5`` (+ ``x.json``, or ``config``) or from a ``.keras`` file (safe mode).

    ``precision``: the arithmetic of its layers (preprocessing.precision.PRECISIONS; a .keras
    file keeps the one it was saved with)."""
    path = Path(path)
    if not path.is_file():
        raise NucleiError("model file not found", path)
    if path.suffix == ".keras":
        try:
            return keras.saving.load_model(path, safe_mode=True)
        except Exception as error:  # keras raises many kinds
            raise NucleiError(f"cannot load the .keras model: {error}", path) from None
    config = config or _config_beside(path)
    # the file holds the whole model, backbone included: skip the ImageNet backbone file
    model = MaskRCNN(config.replace(BACKBONE_WEIGHTS=None), precision=precision)
    try:
        model.load_weights(str(path))
    except Exception as error:  # h5py / keras raise many kinds
        raise NucleiError(f"these weights do not fit the Mask R-CNN of its config "
                          f"({str(error).splitlines()[0][:200]})", path) from None
    return model


def _config_beside(path) -> Config:
    config_path = config_path_for(Path(path))
    if not config_path.is_file():
        raise NucleiError(f"config not found beside the weights (expected {config_path.name})", path)
    return Config.load(config_path)


def _copy_weights(source, layer, path) -> None:
    """``source`` layer's weights into ``layer`` (a stored model's, ``path``); other shapes raise."""
    values = [v.numpy() for v in source.weights]
    if [tuple(v.shape) for v in values] != [tuple(v.shape) for v in layer.weights]:
        raise NucleiError(f"layer {layer.name!r}: the stored model's weights have other shapes "
                          f"(another architecture?)", path)
    for variable, value in zip(layer.weights, values):
        variable.assign(value)


def warm_start_cascade(model: MaskRCNN, path, config: Config | None = None) -> dict[str, list[str]]:
    """Start a Cascade R-CNN from a trained single-stage model (e.g. weights/mrcnn.weights.h5).

    Every layer of the single-stage model (``path`` + the JSON beside it, or ``config``) is
    copied into the same-named layer of ``model``; the box heads of stages 2.. start as
    copies of the single head (``mrcnn_box_fc1_stage2`` <- ``mrcnn_box_fc1`` ...). Both
    models must have the same architecture otherwise (a shape mismatch raises).

    Returns:
        {'copied': layer names, 'from_first_stage': stage heads initialised from the single head}.
    """
    from mrcnn.weights import named_weights

    if len(model.stages) == 1:
        raise NucleiError("warm_start_cascade needs a model with CASCADE_STAGES > 1")
    config = config or _config_beside(path)
    stored = named_weights(load_model(path, config.replace(CASCADE_STAGES=1)))
    report = {"copied": [], "from_first_stage": []}
    for name, layer in named_weights(model).items():
        source = name if name in stored else re.sub(r"_stage\d+$", "", name)
        if source not in stored:
            raise NucleiError(f"layer {name!r} has no counterpart in the single-stage model", path)
        _copy_weights(stored[source], layer, path)
        report["copied" if source == name else "from_first_stage"].append(name)
    return report


def warm_start_finer_masks(model: MaskRCNN, path, config: Config | None = None) -> dict[str, list[str]]:
    """Start a model with a finer mask head (MASK_SHAPE 56) from a trained one with a coarser (28).

    Every layer of the stored model (``path`` + the JSON beside it, or ``config``) is copied into
    the same-named layer of ``model``; the mask head's extra 2x upsamplings
    (``mrcnn_mask_deconv2`` ...) start as nearest-neighbour upsampling: the identity matrix at
    each of the 2x2 kernel positions and zero bias, exact because their input has passed a ReLU.
    So ``model``'s mask logits start as the stored model's, each repeated over a 2x2 block, and
    training refines them from there rather than from noise. Both models must have the same
    architecture otherwise (a shape mismatch raises).

    Returns:
        {'copied': layer names, 'nearest_upsampling': the extra upsampling layers}.
    """
    from mrcnn.weights import named_weights

    config = config or _config_beside(path)
    if config.MASK_UPSAMPLINGS >= model.config.MASK_UPSAMPLINGS:
        raise NucleiError(f"warm_start_finer_masks needs a model with finer masks than the stored "
                          f"{tuple(config.MASK_SHAPE)} (the model's: {tuple(model.config.MASK_SHAPE)})", path)
    stored = named_weights(load_model(path, config))
    report = {"copied": [], "nearest_upsampling": []}
    for name, layer in named_weights(model).items():
        if name not in stored:
            if not re.fullmatch(r"mrcnn_mask_deconv\d+", name):
                raise NucleiError(f"layer {name!r} has no counterpart in the stored model "
                                  f"(another architecture?)", path)
            kernel, bias = layer.weights  # kernel [2, 2, out, in], out == in
            eye = np.eye(kernel.shape[2], kernel.shape[3], dtype="float32")
            kernel.assign(np.broadcast_to(eye, tuple(kernel.shape)))
            bias.assign(np.zeros(tuple(bias.shape), "float32"))
            report["nearest_upsampling"].append(name)
            continue
        _copy_weights(stored[name], layer, path)
        report["copied"].append(name)
    return report
