"""The classifier family: seed_cnn or resnet18 trained by epochs with early stopping, evaluated on a test split.

A run (`jaxmed train classifier`):
1. reads the data and splits it into train / val / test, stratified by class, fixed by
   the seed, with identical images kept on one side (or uses the data's own splits);
2. trains for up to `epochs` epochs with optax AdamW and a warm-up + cosine schedule,
   optionally class-weighted (`class_weighting=balanced`) and augmented (`augment=true`);
3. after each epoch, measures validation loss and accuracy, remembers the weights of the
   best validation loss, checkpoints, and stops once `early_stopping.patience` epochs
   passed without improvement;
4. evaluates the best weights once on the untouched test split: `eval.json` (accuracy,
   precision, recall, specificity, F1, ROC AUC, confusion matrix, per class and macro,
   with bootstrap confidence intervals) and the plots (training curves, ROC, confusion).

The loss is softmax cross-entropy averaged with per-example class weights, sum(w * loss)
/ sum(w) over the batch. With `accumulate_steps=K` each microbatch's loss is its share of
that batch mean (its weighted sum over the batch's total weight), so the sum over
microbatches is exactly the batch loss whatever the class mix per microbatch.

Example (about a minute on a 2-core CPU; test-split metrics in W/eval.json):

    jaxmed train classifier --data phantom:lung --workdir runs/nodule_cnn
"""

from __future__ import annotations

import dataclasses
import functools
import json
import typing
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, struct

from jaxmed import data as data_lib
from jaxmed.config import (CheckpointConfig, DataOptions, LogConfig, OptimizerConfig, RunConfig, apply_overrides,
                           require)
from jaxmed.data.augment import AugmentConfig, augment
from jaxmed.data.splits import duplicate_groups, joined_groups, stratified_split
from jaxmed.errors import CheckpointError, DataError
from jaxmed.families.base import (Family, RunContext, Session, StepOutcome, Task, compute_dtype, conv_backend,
                                  parameter_count)
from jaxmed.inference import predict_with_flips
from jaxmed.metrics.classification import evaluate, roc_curve
from jaxmed.metrics.operating_point import CRITERIA as THRESHOLD_CRITERIA
from jaxmed.metrics.operating_point import operating_points
from jaxmed.models.classifier import build_classifier
from jaxmed.training import averaging, sharding
from jaxmed.training.accumulation import sum_over_microbatches
from jaxmed.training.metrics_writer import read_metrics
from jaxmed.training.optimizer import build_optimizer
from jaxmed.training.workdir import Workdir, record_skipped
from jaxmed.viz import classification as classification_plots

# Model state that is not a trainable parameter: BatchNorm statistics, dropout RNG counters.
NON_PARAMS = nnx.Not(nnx.Param)
CLASS_WEIGHTINGS = ("none", "balanced")


@dataclasses.dataclass(frozen=True)
class SplitConfig:
    """How held-out data is chosen.

    Attributes:
      val_fraction, test_fraction: shares of each class held out for validation and
        test (the test share is ignored where the data has its own splits).
      by_subject: keep all slices of a volume or series on one side (for sources that
        have them); False splits slices independently, which leaks neighbouring slices
        of one scan between training and test and is only for data with too few scans.
    """

    val_fraction: float = 0.15
    test_fraction: float = 0.15
    by_subject: bool = True

    def __post_init__(self):
        require(0 <= self.val_fraction < 1 and 0 < self.test_fraction < 1
                and self.val_fraction + self.test_fraction < 1,
                "split.val_fraction + split.test_fraction must be below 1, with test_fraction > 0")


@dataclasses.dataclass(frozen=True)
class EarlyStoppingConfig:
    """Stop when validation loss has not improved for `patience` epochs (0 = never stop early)."""

    patience: int = 20

    def __post_init__(self):
        require(self.patience >= 0, "early_stopping.patience must be non-negative")


@dataclasses.dataclass(frozen=True)
class ClassifierEvalConfig:
    """The test-split evaluation.

    Attributes:
      bootstrap_resamples: resamples for the confidence intervals.
      threshold: how the tuned operating point of a binary classifier is chosen on the
        validation split: "youden" (max sensitivity + specificity - 1) or "f1".
      tta: test-time augmentation: average the probabilities of each image and its
        left-right mirror (validation and test predictions).
    """

    bootstrap_resamples: int = 1000
    threshold: str = "youden"
    tta: bool = False

    def __post_init__(self):
        require(self.bootstrap_resamples >= 1, "eval.bootstrap_resamples must be at least 1")
        require(self.threshold in THRESHOLD_CRITERIA,
                f"eval.threshold must be one of {', '.join(THRESHOLD_CRITERIA)}, got {self.threshold!r}")


@dataclasses.dataclass(frozen=True)
class CrossValidationConfig:
    """K-fold cross-validation (`jaxmed.families.classifier_cv`): `folds` 0 trains one split.

    Attributes:
      folds: K (at least 2), or 0 for a single train/val/test split.
      repeats: repetitions of the K folds, each with another assignment of images to folds.
    """

    folds: int = 0
    repeats: int = 1

    def __post_init__(self):
        require(self.folds == 0 or self.folds >= 2, f"cv.folds must be 0 (no cross-validation) or >= 2, got "
                                                    f"{self.folds}")
        require(self.repeats >= 1, "cv.repeats must be at least 1")


@dataclasses.dataclass(frozen=True)
class ClassifierConfig(RunConfig):
    """A CNN classifier run (the nodule paper: seed_cnn on lung patches).

    Attributes:
      model: "seed_cnn" or "resnet18".
      image_size: side of the square input images (28-256).
      width: ResNet-18 base width (64 in the paper; smaller is faster).
      dropout_rate: dropout before the classification head.
      epochs: maximum number of epochs (a resumed run continues up to this number).
      class_weighting: "balanced" weights the loss by inverse class frequency, so a rare
        class counts as much as a common one (on balanced data the weights are all 1).
      augment: classic augmentation (flips, small rotations and scaling, noise) during training.
      augment_intensity: with `augment`, also jitter each image's brightness by up to +-v (in
        [-1, 1] units) and its contrast by a factor in [1 - v, 1 + v]: for test images acquired
        differently from the training ones; 0 turns it off.
      ema_decay: decay of the weights' moving average (`jaxmed.training.averaging`) that is
        validated, kept and tested instead of the last step's weights; 0 turns it off.
      cv: cross-validation, for small data sets (see `CrossValidationConfig`).
      checkpoint: saved at every epoch's end, and every `checkpoint.every` steps within long epochs.
      eval: the test-split evaluation.
      (the rest: `jaxmed.config.RunConfig`)
    """

    model: str = "seed_cnn"
    image_size: int = 64
    width: int = 64
    dropout_rate: float = 0.5
    epochs: int = 100
    class_weighting: str = "balanced"
    augment: bool = True
    augment_intensity: float = 0.0
    ema_decay: float = 0.0
    data: DataOptions = DataOptions(spec="phantom:lung")
    split: SplitConfig = SplitConfig()
    optimizer: OptimizerConfig = OptimizerConfig(lr=1e-3, b1=0.9, weight_decay=1e-4, schedule="cosine",
                                                 warmup_fraction=0.05)
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    checkpoint: CheckpointConfig = CheckpointConfig(every=1000, keep=2)
    log: LogConfig = LogConfig(every=20)
    eval: ClassifierEvalConfig = ClassifierEvalConfig()
    cv: CrossValidationConfig = CrossValidationConfig()

    MODELS: typing.ClassVar[tuple[str, ...]] = ("seed_cnn", "resnet18")
    RESUMABLE: typing.ClassVar[frozenset[str]] = RunConfig.RESUMABLE | {
        "epochs", "eval.bootstrap_resamples", "eval.threshold", "eval.tta", "early_stopping.patience"}
    # Before format 2, checkpoint.every counted epochs and eval.n was the bootstrap resamples.
    MIGRATIONS: typing.ClassVar[dict[str, str | None]] = {
        "checkpoint.every": None, "eval.every": None, "eval.n": "eval.bootstrap_resamples"}

    def __post_init__(self):
        super().__post_init__()
        require(28 <= self.image_size <= 256, f"image_size must be in [28, 256], got {self.image_size}")
        require(self.width >= 1 and 0 <= self.dropout_rate < 1, "width must be positive, dropout_rate in [0, 1)")
        require(self.epochs >= 1, "epochs must be at least 1")
        require(0.0 <= self.ema_decay < 1.0, "ema_decay must be in [0, 1)")
        require(0.0 <= self.augment_intensity < 1.0, "augment_intensity must be in [0, 1)")
        require(self.class_weighting in CLASS_WEIGHTINGS,
                f"class_weighting must be one of {', '.join(CLASS_WEIGHTINGS)}")

    @classmethod
    def tiny(cls, **overrides: Any) -> ClassifierConfig:
        """A seconds-long configuration for tests: 32 px, 2 epochs, a narrow network."""
        tiny = cls(image_size=32, width=8, batch_size=8, epochs=2, data=DataOptions(spec="phantom:lung", n=96),
                   log=LogConfig(every=2), eval=ClassifierEvalConfig(bootstrap_resamples=50))
        return apply_overrides(tiny, overrides)


@dataclasses.dataclass(frozen=True)
class SplitData:
    """Images and labels of each split, with the class names.

    Attributes:
      train, val, test: (images (N, H, W, C) in [-1, 1], labels (N,) int32).
      class_names: names indexed by label.
      provenance: where the data came from (JSON-able).
    """

    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    class_names: tuple[str, ...]
    provenance: dict


def leak_groups(dataset: data_lib.Dataset, config: ClassifierConfig) -> np.ndarray:
    """A group id per image: exact and near copies, and (unless `split.by_subject` is off) the slices of
    one volume or series, share a group, and a group never straddles two splits or folds."""
    groups = duplicate_groups(dataset.images)
    subjects = dataset.provenance.get("subjects")
    if subjects is not None and config.split.by_subject:
        groups = joined_groups(groups, np.asarray(subjects))
    return groups


def split_dataset(dataset: data_lib.Dataset, config: ClassifierConfig) -> SplitData:
    """Splits a dataset by its own predefined splits if it has them, else stratified and leak-free.

    Copies of an image, and (unless `config.split.by_subject` is off) the slices of one
    volume or series, always land on the same side.
    """
    predefined = dataset.provenance.get("splits")
    groups = leak_groups(dataset, config)
    subjects = dataset.provenance.get("subjects")
    if predefined is not None:
        splits = np.asarray(predefined).astype(object)
        # The data's own splits are kept; without a validation split, one is carved from its training part.
        if not np.any(splits == "val"):
            is_train = splits == "train"
            carved = stratified_split(dataset.labels[is_train], groups[is_train], val_fraction=0.0,
                                      test_fraction=config.split.val_fraction, seed=config.seed)
            splits[is_train] = np.where(carved == "test", "val", "train")
        splits = splits.astype(str)
    else:
        try:
            splits = stratified_split(dataset.labels, groups, val_fraction=config.split.val_fraction,
                                      test_fraction=config.split.test_fraction, seed=config.seed)
        except DataError as error:
            if subjects is None or not config.split.by_subject:
                raise
            raise DataError(f"{dataset.provenance['spec']}: {error}; with this few scans, --set "
                            f"split.by_subject=false splits their slices independently (test slices then have "
                            f"neighbours in training)") from None

    def part(name: str) -> tuple[np.ndarray, np.ndarray]:
        mask = splits == name
        return dataset.images[mask], dataset.labels[mask]

    return SplitData(part("train"), part("val"), part("test"), dataset.class_names, dataset.provenance)


def load_split_data(config: ClassifierConfig) -> SplitData:
    """Reads `config.data` and splits it."""
    return split_dataset(data_lib.load(config.data, config.image_size, config.channels, seed=config.seed), config)


def class_weights(labels: np.ndarray, num_classes: int, weighting: str) -> np.ndarray:
    """Per-class loss weights: ones, or inverse frequency normalised to mean 1 over examples ("balanced")."""
    if weighting == "none":
        return np.ones(num_classes, np.float32)
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, len(labels) / (num_classes * np.maximum(counts, 1)), 0.0)
    return weights.astype(np.float32)


@struct.dataclass
class ClassifierState:
    """Everything a classifier step changes, plus the best epoch's weights (a resumed run must remember them).

    Attributes:
      step: completed train steps (int32).
      key: raw uint32[2] key for augmentation.
      params: trainable parameters.
      model_state: BatchNorm statistics and dropout RNG state.
      opt_state: optax state.
      best_params, best_model_state: the weights of the best validation epoch.
    """

    step: jax.Array
    key: jax.Array
    params: nnx.State
    model_state: nnx.State
    opt_state: optax.OptState
    best_params: nnx.State
    best_model_state: nnx.State


@struct.dataclass
class AveragedClassifierState(ClassifierState):
    """The state of a run with `ema_decay` > 0: `ClassifierState` and the moving average of its parameters."""

    ema_params: nnx.State


def evaluated_params(state: ClassifierState) -> nnx.State:
    """The weights that are validated and kept: the moving average where the run keeps one."""
    return state.ema_params if isinstance(state, AveragedClassifierState) else state.params


@dataclasses.dataclass(frozen=True)
class ClassifierDefinition:
    """The static structure of a classifier run.

    Attributes:
      class_weights: the loss weight of each class (`class_weights`), fixed for the run.
    """

    model: nnx.GraphDef
    optimizer: optax.GradientTransformation
    augment: AugmentConfig | None
    num_classes: int
    class_weights: tuple[float, ...]
    accumulate_steps: int = 1
    ema_decay: float = 0.0


def _augmentation(config: ClassifierConfig) -> AugmentConfig | None:
    """The training split's on-device augmentation, or None without `augment`."""
    if not config.augment:
        return None
    return AugmentConfig(brightness=config.augment_intensity, contrast=config.augment_intensity)


def _build(config: ClassifierConfig, num_classes: int, key: jax.Array) -> nnx.Module:
    params_key, dropout_key = jax.random.split(key)
    return build_classifier(config.model, config.image_size, config.channels, num_classes,
                            width=config.width, dropout_rate=config.dropout_rate,
                            dtype=compute_dtype(config), conv_backend=conv_backend(config),
                            rngs=nnx.Rngs(params=params_key, dropout=dropout_key))


def classifier_train_step(definition: ClassifierDefinition, state: ClassifierState, images_BxHxWxC: jax.Array,
                          labels_B: jax.Array) -> tuple[ClassifierState, dict]:
    """One optimizer update on a batch (augmented on device when the definition says so).

    Returns:
      The new state, and scalar metrics `loss` (class-weighted) and `accuracy`.
    """
    key, augment_key = jax.random.split(jax.random.wrap_key_data(state.key))
    if definition.augment is not None:
        images_BxHxWxC = augment(augment_key, images_BxHxWxC, definition.augment)
    weights_B = jnp.asarray(definition.class_weights, jnp.float32)[labels_B]
    total_weight = jnp.maximum(jnp.sum(weights_B), 1e-12)

    def microbatch_gradients(model_state, microbatch):
        images_bxHxWxC, labels_b, weights_b = microbatch

        def loss_fn(params):
            model = nnx.merge(definition.model, params, model_state, copy=True)
            model.train()
            logits_bxC = model(images_bxHxWxC)
            losses_b = optax.softmax_cross_entropy_with_integer_labels(logits_bxC, labels_b)
            return jnp.sum(weights_b * losses_b) / total_weight, (logits_bxC, nnx.state(model, NON_PARAMS))

        (loss, (logits_bxC, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        correct = jnp.sum((jnp.argmax(logits_bxC, -1) == labels_b).astype(jnp.float32))
        return model_state, (grads, {"loss": loss, "correct": correct})

    model_state, (grads, sums) = sum_over_microbatches(
        microbatch_gradients, state.model_state, (images_BxHxWxC, labels_B, weights_B), definition.accumulate_steps)
    updates, opt_state = definition.optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = state.replace(step=state.step + 1, key=jax.random.key_data(key), params=params,
                              model_state=model_state, opt_state=opt_state)
    if isinstance(state, AveragedClassifierState):
        new_state = new_state.replace(
            ema_params=averaging.update(state.ema_params, params, new_state.step, definition.ema_decay))
    return new_state, {"loss": sums["loss"], "accuracy": sums["correct"] / labels_B.shape[0]}


@functools.partial(jax.jit, static_argnums=0)
def predict_probabilities(model_def: nnx.GraphDef, params: nnx.State, model_state: nnx.State,
                          images_BxHxWxC: jax.Array) -> jax.Array:
    """Class probabilities (B, C) in evaluation mode (no dropout, running BatchNorm statistics)."""
    model = nnx.merge(model_def, params, model_state, copy=True)
    model.eval()
    return jax.nn.softmax(model(images_BxHxWxC), axis=-1)


@functools.partial(jax.jit, static_argnums=0)
def penultimate_features(model_def: nnx.GraphDef, params: nnx.State, model_state: nnx.State, images_BxHxWxC):
    """The input of the last dense layer (float32), in evaluation mode: the classifier's feature embedding."""
    model = nnx.merge(model_def, params, model_state, copy=True)
    model.eval()
    return model.features(images_BxHxWxC).astype(jnp.float32)


def predict(definition: ClassifierDefinition, params, model_state, images: np.ndarray,
            batch_size: int, placement: jax.sharding.Sharding | None = None, *, tta: bool = False) -> np.ndarray:
    """Class probabilities for all `images`, in fixed-size batches (the last one padded, so one compilation).

    Args:
      placement: where each batch of images goes, e.g. `sharding.batch_sharding(mesh)`
        (required when the mesh spans several processes); None lets jit decide.
      tta: average over each image and its left-right mirror (`jaxmed.inference.predict_with_flips`).
    """
    probabilities = functools.partial(predict_probabilities, definition.model, params, model_state)
    if tta:
        probabilities = functools.partial(predict_with_flips, probabilities)
    return sharding.map_in_fixed_batches(probabilities, images, batch_size, placement)


def loss_and_accuracy(probabilities: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of predicted probabilities."""
    picked = probabilities[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(picked, 1e-12, 1.0)))), float(np.mean(probabilities.argmax(-1) == labels))


class ClassifierFamily(Family):
    """CNN classifiers: `jaxmed train classifier`."""

    name = "classifier"
    config_type = ClassifierConfig
    description = "train a CNN classifier and evaluate it on a held-out test split"
    length_key = "epochs"

    def definition(self, config: ClassifierConfig, task: Task, weights: np.ndarray | None = None
                   ) -> ClassifierDefinition:
        num_classes = len(task.class_names)
        model = nnx.eval_shape(lambda: _build(config, num_classes, jax.random.key(0)))
        weights = np.ones(num_classes, np.float32) if weights is None else weights
        return ClassifierDefinition(model=nnx.graphdef(model),
                                    optimizer=build_optimizer(config.optimizer, task.total_steps),
                                    augment=_augmentation(config), num_classes=num_classes,
                                    class_weights=tuple(float(w) for w in weights),
                                    accumulate_steps=config.accumulate_steps, ema_decay=config.ema_decay)

    def init_state(self, config: ClassifierConfig, definition: ClassifierDefinition,
                   key: jax.Array) -> ClassifierState:
        init_key, augment_key = jax.random.split(key)
        _, params, model_state = nnx.split(_build(config, definition.num_classes, init_key), nnx.Param, NON_PARAMS)
        fields = dict(step=jnp.zeros((), jnp.int32), key=jax.random.key_data(augment_key), params=params,
                      model_state=model_state, opt_state=definition.optimizer.init(params),
                      best_params=jax.tree.map(jnp.copy, params), best_model_state=jax.tree.map(jnp.copy, model_state))
        if definition.ema_decay > 0:
            return AveragedClassifierState(**fields, ema_params=jax.tree.map(jnp.copy, params))
        return ClassifierState(**fields)

    def train_step(self, definition: ClassifierDefinition, state: ClassifierState, batch) -> tuple[Any, dict]:
        return classifier_train_step(definition, state, batch["image"], batch["label"])

    def train(self, config: ClassifierConfig, workdir, data: SplitData | None = None, *, progress: bool = True):
        """One run, or with `cv.folds` a cross-validation (`jaxmed.families.classifier_cv`)."""
        if config.cv.folds:
            from jaxmed.families import classifier_cv  # noqa: PLC0415 -- it builds on this module

            return classifier_cv.cross_validate(config, workdir, data, progress=progress)
        return super().train(config, workdir, data, progress=progress)

    def session(self, config: ClassifierConfig, workdir: Workdir, data: SplitData | None = None) -> Session:
        """`data`: the split data instead of reading and splitting `config.data`."""
        if data is None:
            data = load_split_data(config)
            record_skipped(data.provenance, workdir)
        train_images, train_labels = data.train
        steps_per_epoch = len(train_images) // config.batch_size
        if steps_per_epoch == 0:
            raise DataError(f"{data.provenance.get('spec', 'data')}: {len(train_images)} training images, fewer "
                            f"than one batch of {config.batch_size}")
        task = Task(class_names=tuple(data.class_names), total_steps=config.epochs * steps_per_epoch)
        weights = class_weights(train_labels, len(data.class_names), config.class_weighting)
        definition = self.definition(config, task, weights)
        return ClassifierSession(self, config, definition, {"image": train_images, "label": train_labels},
                                 task.total_steps, data, steps_per_epoch)

    def parameter_counts(self, state: ClassifierState) -> dict[str, int]:
        return {"classifier": parameter_count(state.params)}

    def benchmark_batch(self, config: ClassifierConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {**super().benchmark_batch(config, rng),
                "label": rng.integers(0, 2, config.batch_size).astype(np.int32)}

    def networks(self, config: ClassifierConfig) -> dict:
        model = nnx.eval_shape(lambda: _build(config, 2, jax.random.key(0)))
        return {"": (model, (1, config.image_size, config.image_size, config.channels))}

    def feature_embedding(self, config: ClassifierConfig, definition: ClassifierDefinition, state: ClassifierState):
        return functools.partial(penultimate_features, definition.model, state.best_params, state.best_model_state)

    def restore_task(self, config: ClassifierConfig, workdir: Workdir) -> Task:
        """The classes of a finished run come from its eval.json (a classifier is restorable once evaluated)."""
        if not workdir.eval.is_file():
            raise CheckpointError(f"{workdir.eval}: missing; a classifier is usable once its training finished")
        try:
            class_names = json.loads(workdir.eval.read_text())["class_names"]
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
            raise CheckpointError(f"{workdir.eval}: unreadable ({error!r})") from None
        # The schedule's length does not change the state's shapes: 1 step is as good as any.
        return Task(class_names=tuple(class_names), total_steps=1)


class ClassifierSession(Session):
    """Epochs: validation and early stopping at each epoch's end; the test evaluation at the end."""

    def __init__(self, family, config, definition, arrays, total_steps, data: SplitData, steps_per_epoch: int):
        super().__init__(family, config, definition, arrays, total_steps)
        self.data, self.steps_per_epoch = data, steps_per_epoch

    def initial_loop(self) -> dict[str, Any]:
        return {"position": 0, "epoch": 0, "best_val_loss": None, "best_epoch": 0, "bad_epochs": 0,
                "stopped_early": False, "epoch_loss_sum": 0.0, "epoch_accuracy_sum": 0.0, "epoch_steps": 0}

    def is_done(self, state, loop) -> bool:
        return loop["stopped_early"] or loop["epoch"] >= self.config.epochs

    def sync_after(self, step: int) -> bool:
        return step % self.steps_per_epoch == 0

    def record(self, step: int, metrics, loop) -> None:
        loop["epoch_loss_sum"] += metrics["loss"]
        loop["epoch_accuracy_sum"] += metrics["accuracy"]
        loop["epoch_steps"] += 1

    def after_step(self, step: int, state: ClassifierState, loop: dict, context: RunContext):
        if step % self.steps_per_epoch:
            return state, StepOutcome()
        config, epoch = self.config, step // self.steps_per_epoch
        train_loss = loop["epoch_loss_sum"] / loop["epoch_steps"]
        train_accuracy = loop["epoch_accuracy_sum"] / loop["epoch_steps"]
        val_images, val_labels = self.data.val
        val_loss, val_accuracy = (
            loss_and_accuracy(predict(self.definition, evaluated_params(state), state.model_state, val_images,
                                      config.batch_size, context.rows), val_labels)
            if len(val_images) else (train_loss, train_accuracy))
        improved = loop["best_val_loss"] is None or val_loss < loop["best_val_loss"]
        if improved:
            state = state.replace(best_params=jax.tree.map(jnp.copy, evaluated_params(state)),
                                  best_model_state=jax.tree.map(jnp.copy, state.model_state))
        loop.update(epoch=epoch, best_val_loss=val_loss if improved else loop["best_val_loss"],
                    best_epoch=epoch if improved else loop["best_epoch"],
                    bad_epochs=0 if improved else loop["bad_epochs"] + 1,
                    epoch_loss_sum=0.0, epoch_accuracy_sum=0.0, epoch_steps=0)
        patience = config.early_stopping.patience
        loop["stopped_early"] = bool(patience and loop["bad_epochs"] >= patience and epoch < config.epochs)
        if context.writer:
            context.writer.write_scalars(step, {"epoch": epoch, "train_loss": train_loss,
                                                "train_accuracy": train_accuracy, "val_loss": val_loss,
                                                "val_accuracy": val_accuracy})
        if loop["stopped_early"]:
            context.log(f"early stop after epoch {epoch}: validation loss has not improved for {patience} epochs "
                        f"(best: epoch {loop['best_epoch']})")
        return state, StepOutcome(save=True, stop=loop["stopped_early"])

    def finish(self, state: ClassifierState, loop: dict, context: RunContext) -> dict:
        def best_model(images: np.ndarray) -> np.ndarray:
            return predict(self.definition, state.best_params, state.best_model_state, images,
                           self.config.batch_size, context.rows, tta=self.config.eval.tta)

        probabilities = best_model(self.data.test[0])
        report = evaluate_on_test(self.config, probabilities, self.data, loop, best_model)
        if context.is_writer:
            context.workdir.eval.write_text(json.dumps(report, indent=2) + "\n")
            write_classifier_plots(report, probabilities, self.data, context.workdir)
        return report


def evaluate_on_test(config: ClassifierConfig, probabilities: np.ndarray, data: SplitData, loop: dict,
                     predict_fn=None) -> dict:
    """Metrics of the test-split predictions, with bootstrap confidence intervals and provenance.

    The headline metrics count the most probable class (argmax, p > 0.5 for two classes). A
    binary classifier with both classes in its validation split also gets `operating_points`:
    the test metrics at the argmax point and at the threshold chosen on validation
    predictions of `predict_fn` (images -> probabilities); `operating_point` says which the
    headline uses.
    """
    report = evaluate(data.test[1], probabilities, data.class_names, num_resamples=config.eval.bootstrap_resamples,
                      seed=config.seed)
    sizes = {name: int(len(part[1])) for name, part in (("train", data.train), ("val", data.val), ("test", data.test))}
    report.update(split="test", class_names=list(data.class_names), best_epoch=loop["best_epoch"],
                  epochs_trained=loop["epoch"], split_sizes=sizes, tta=config.eval.tta,
                  operating_point="argmax: the headline metrics count the most probable class",
                  data={key: value for key, value in data.provenance.items() if key not in ("splits", "files")})
    val_images, val_labels = data.val
    if predict_fn is not None and len(data.class_names) == 2 and len(np.unique(val_labels)) == 2:
        report["operating_points"] = operating_points(val_labels, predict_fn(val_images), data.test[1], probabilities,
                                                      criterion=config.eval.threshold, class_names=data.class_names)
        report["operating_point"] += ("; operating_points.tuned holds the test metrics at the threshold chosen on "
                                      "the validation split")
    return report


def write_classifier_plots(report: dict, probabilities: np.ndarray, data: SplitData, paths: Workdir) -> None:
    """Training curves (the nodule paper's Figures 4-5), ROC curve and confusion matrix of the test split."""
    rows = [row for row in read_metrics(paths.metrics) if "epoch" in row]
    if rows:
        classification_plots.plot_training_curves(rows, paths.plots / "training_curves.png")
    test_labels = data.test[1]
    curves, aucs = {}, {}
    # Binary: the positive class's curve; multi-class: one-vs-rest per class.
    positives = [1] if len(data.class_names) == 2 else range(len(data.class_names))
    for index in positives:
        name = data.class_names[index]
        is_class = (test_labels == index).astype(np.int32)
        if 0 < is_class.sum() < len(is_class):
            fpr, tpr, _ = roc_curve(is_class, probabilities[:, index])
            curves[name] = (fpr, tpr)
            auc = report["per_class"][name]["roc_auc"]
            if auc is not None:
                aucs[name] = auc
    points = {f"{name} point (threshold {point['threshold']:.2f})": (point["fpr"], point["tpr"])
              for name, point in report.get("operating_points", {}).items() if name in ("argmax", "tuned")}
    if curves:
        classification_plots.plot_roc(curves, paths.plots / "roc.png", aucs=aucs or None, points=points or None)
    classification_plots.plot_confusion_matrix(np.asarray(report["confusion_matrix"]), data.class_names,
                              paths.plots / "confusion_matrix.png")


FAMILY = ClassifierFamily()
