"""The classifier training loop: split, train by epochs, early-stop, evaluate on the test split.

`train_classifier(config, workdir)`:
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

Running it again on the same workdir resumes from the last epoch checkpoint.

Devices and hosts work as in `jaxmed.train.gan_loop`: batches (and evaluation batches)
are sharded over the `mesh.data` mesh, every process runs every computation, only
process 0 writes metrics, plots, config.json and eval.json.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from jaxmed import data as data_lib
from jaxmed.data.pipeline import BatchStream, prefetch_to_device
from jaxmed.data.splits import duplicate_groups, joined_groups, stratified_split
from jaxmed.errors import DataError, TrainingDiverged
from jaxmed.metrics.classification import evaluate, roc_curve
from jaxmed.train import config as config_lib
from jaxmed.train import distributed, sharding
from jaxmed.train.checkpoint import Checkpoints, restore_or_init
from jaxmed.train.classifier_steps import (ClassifierDefinition, classifier_definition,
                                           init_classifier_state, make_classifier_train_step,
                                           predict_probabilities)
from jaxmed.train.config import ClassifierConfig
from jaxmed.train.metrics_writer import MetricsWriter, read_metrics
from jaxmed.train.workdir import Workdir, record_skipped
from jaxmed.viz import classification as classification_plots


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


def split_dataset(dataset: data_lib.Dataset, config: ClassifierConfig) -> SplitData:
    """Splits a dataset by its own predefined splits if it has them, else stratified and leak-free.

    Copies of an image, and (unless `config.split.by_subject` is off) the slices of one
    volume or series, always land on the same side.
    """
    predefined = dataset.provenance.get("splits")
    groups = duplicate_groups(dataset.images)  # exact and near copies stay on one side
    subjects = dataset.provenance.get("subjects")
    if subjects is not None and config.split.by_subject:
        groups = joined_groups(groups, np.asarray(subjects))  # and so do slices of one volume or series
    if predefined is not None:
        splits = np.asarray(predefined).astype(object)
        # The data's own train/test split is kept; validation is carved from its training part.
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
    return split_dataset(config.data.load(config.image_size, config.channels, config.seed), config)


def class_weights(labels: np.ndarray, num_classes: int, weighting: str) -> np.ndarray:
    """Per-class loss weights: ones, or inverse frequency normalised to mean 1 over examples ("balanced")."""
    if weighting == "none":
        return np.ones(num_classes, np.float32)
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, len(labels) / (num_classes * np.maximum(counts, 1)), 0.0)
    return weights.astype(np.float32)


def predict(definition: ClassifierDefinition, params, model_state, images: np.ndarray,
            batch_size: int, placement: jax.sharding.Sharding | None = None) -> np.ndarray:
    """Class probabilities for all `images`, in fixed-size batches (the last one padded, so one compilation).

    Args:
      placement: where each batch of images goes, e.g. `sharding.batch_sharding(mesh)`
        (required when the mesh spans several processes); None lets jit decide.
    """
    return sharding.map_in_fixed_batches(
        functools.partial(predict_probabilities, definition.model, params, model_state), images, batch_size, placement)


def loss_and_accuracy(probabilities: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of predicted probabilities."""
    picked = probabilities[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(picked, 1e-12, 1.0)))), float(np.mean(probabilities.argmax(-1) == labels))


def train_classifier(config: ClassifierConfig, workdir: Path | str, data: SplitData | None = None, *,
                     progress: bool = True) -> dict:
    """Trains (or resumes) a classifier in `workdir` and evaluates it on the test split.

    Args:
      config: the run's config.
      workdir: the run directory (created if missing).
      data: the split data; None reads and splits `config.data`.
      progress: show a progress bar on stderr.

    Returns:
      The evaluation written to `eval.json`.

    Raises:
      DataError: the training split is smaller than one batch.
      TrainingDiverged: a loss became non-finite.
    """
    paths = Workdir(Path(workdir))
    paths.root.mkdir(parents=True, exist_ok=True)
    if data is None:
        data = load_split_data(config)
        record_skipped(data.provenance, paths)
    train_images, train_labels = data.train
    steps_per_epoch = len(train_images) // config.batch_size
    if steps_per_epoch == 0:
        raise DataError(f"{data.provenance.get('spec', 'data')}: {len(train_images)} training images, fewer than "
                        f"one batch of {config.batch_size}")
    num_classes = len(data.class_names)
    mesh = sharding.make_mesh(config.mesh.data)
    sharding.check_batch_size(config.batch_size, mesh, config.accumulate_steps)
    definition = classifier_definition(config, num_classes, config.epochs * steps_per_epoch)
    weights = sharding.place_global(class_weights(train_labels, num_classes, config.class_weighting),
                                    sharding.replicated(mesh))
    is_writer = distributed.is_main_process()

    with Checkpoints(paths.checkpoints, keep=config.checkpoint.keep) as checkpoints:
        state, loop = restore_or_init(checkpoints, lambda key: init_classifier_state(config, definition, key),
                                      config.seed, sharding.replicated(mesh))
        loop = {"epoch": 0, "best_val_loss": None, "best_epoch": 0, "bad_epochs": 0, "stopped_early": False,
                **loop}
        if is_writer:
            config_lib.save(config, paths.config)
        done = loop["stopped_early"] or loop["epoch"] >= config.epochs
        if not done:
            state, loop = _train_epochs(config, definition, state, loop, data, weights, steps_per_epoch, mesh,
                                        checkpoints, paths, is_writer, progress)
    test_probabilities = predict(definition, state.best_params, state.best_model_state, data.test[0],
                                 config.batch_size, sharding.batch_sharding(mesh))
    report = evaluate_on_test(config, test_probabilities, data, loop)
    if is_writer:
        paths.eval.write_text(json.dumps(report, indent=2) + "\n")
        write_classifier_plots(report, test_probabilities, data, paths)
    return report


def _train_epochs(config, definition, state, loop, data, weights, steps_per_epoch, mesh, checkpoints, paths,
                  is_writer, progress):
    train_images, train_labels = data.train
    stream = BatchStream({"image": train_images, "label": train_labels}, config.batch_size, seed=config.seed,
                         position=loop["position"])
    rows = sharding.batch_sharding(mesh)
    batches = prefetch_to_device(sharding.placed_batches(stream, rows), size=2, sharding=rows)
    writer = MetricsWriter(paths.metrics, paths.events, resume_step=int(state.step)) if is_writer else None
    train_step = make_classifier_train_step(definition, mesh)
    total = config.epochs * steps_per_epoch
    bar = tqdm(total=total, initial=int(state.step), desc="train classifier", unit="step", file=sys.stderr,
               disable=not (progress and is_writer), dynamic_ncols=True)
    try:
        for epoch in range(loop["epoch"] + 1, config.epochs + 1):
            step_metrics = []
            for _ in range(steps_per_epoch):
                batch = next(batches)
                state, metrics = train_step(state, batch["image"], batch["label"], weights)
                step_metrics.append(metrics)
                bar.update(1)
            history = jax.device_get(step_metrics)
            train_loss = float(np.mean([m["loss"] for m in history]))
            train_accuracy = float(np.mean([m["accuracy"] for m in history]))
            if not np.isfinite(train_loss):
                raise TrainingDiverged(f"non-finite training loss in epoch {epoch}; stopped, the last good "
                                       f"checkpoint is step {checkpoints.latest_step()} in {paths.checkpoints}")
            val_images, val_labels = data.val
            val_loss, val_accuracy = (loss_and_accuracy(predict(definition, state.params, state.model_state,
                                                                val_images, config.batch_size, rows), val_labels)
                                      if len(val_images) else (train_loss, train_accuracy))
            improved = loop["best_val_loss"] is None or val_loss < loop["best_val_loss"]
            if improved:
                state = state.replace(best_params=jax.tree.map(jnp.copy, state.params),
                                      best_model_state=jax.tree.map(jnp.copy, state.model_state))
            loop = {**loop, "epoch": epoch, "position": epoch * steps_per_epoch,
                    "best_val_loss": val_loss if improved else loop["best_val_loss"],
                    "best_epoch": epoch if improved else loop["best_epoch"],
                    "bad_epochs": 0 if improved else loop["bad_epochs"] + 1}
            patience = config.early_stopping.patience
            loop["stopped_early"] = bool(patience and loop["bad_epochs"] >= patience and epoch < config.epochs)
            row = {"epoch": epoch, "train_loss": train_loss, "train_accuracy": train_accuracy,
                   "val_loss": val_loss, "val_accuracy": val_accuracy}
            bar.set_postfix_str(" ".join(f"{k}={v:.3f}" for k, v in row.items() if k != "epoch"), refresh=False)
            if writer:
                writer.write_scalars(int(state.step), row)
            if epoch % config.checkpoint.every == 0 or epoch == config.epochs or loop["stopped_early"]:
                checkpoints.save(int(state.step), state, data=loop, config=config_lib.to_dict(config))
            if loop["stopped_early"]:
                print(f"early stop after epoch {epoch}: validation loss has not improved for {patience} epochs "
                      f"(best: epoch {loop['best_epoch']})", file=sys.stderr)
                break
    finally:
        batches.close()
        bar.close()
        if writer:
            writer.close()
    return state, loop


def evaluate_on_test(config: ClassifierConfig, probabilities: np.ndarray, data: SplitData, loop: dict) -> dict:
    """Metrics of the test-split predictions, with bootstrap confidence intervals and provenance."""
    report = evaluate(data.test[1], probabilities, data.class_names, num_resamples=config.eval.n, seed=config.seed)
    sizes = {name: int(len(part[1])) for name, part in (("train", data.train), ("val", data.val), ("test", data.test))}
    report.update(split="test", class_names=list(data.class_names), best_epoch=loop["best_epoch"],
                  epochs_trained=loop["epoch"], split_sizes=sizes,
                  data={key: value for key, value in data.provenance.items() if key not in ("splits", "files")})
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
    if curves:
        classification_plots.plot_roc(curves, paths.plots / "roc.png", aucs=aucs or None)
    classification_plots.plot_confusion_matrix(np.asarray(report["confusion_matrix"]), data.class_names,
                                               paths.plots / "confusion_matrix.png")
