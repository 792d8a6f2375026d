"""K-fold cross-validation of a classifier: one run per fold, every metric with an interval over folds.

`jaxmed train classifier --set cv.folds=K [--set cv.repeats=R]`, the evaluation to use on a
few hundred images, where one test split of a few dozen says little:

1. reads the data; a source with its own test split keeps it aside, the rest is the pool;
2. assigns the pool to K folds per repeat, stratified by class, with copies of an image and
   the slices of one scan in one fold (`jaxmed.data.splits.stratified_group_kfold`);
3. for each fold trains on the other folds, less a validation part carved from them (early
   stopping and the tuned threshold), and tests on the fold: an ordinary run in
   W/fold_R_K, resumed like any other;
4. writes W/eval.json: the mean of every metric at top level, its mean and Student-t
   interval over folds under `cv`, the per-fold results under `folds` and, where the data
   has its own test split, the ensemble of the fold models evaluated on it (`ensemble_test`).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from jaxmed import config as config_lib
from jaxmed import data as data_lib
from jaxmed.data.splits import stratified_group_kfold, stratified_split
from jaxmed.errors import UsageError
from jaxmed.families.classifier import (FAMILY, ClassifierConfig, CrossValidationConfig, SplitData, leak_groups,
                                        predict)
from jaxmed.inference import ensemble_probabilities
from jaxmed.metrics.classification import METRIC_NAMES, evaluate
from jaxmed.metrics.intervals import fold_intervals
from jaxmed.training import distributed
from jaxmed.training.runner import TrainResult
from jaxmed.training.workdir import Workdir, record_skipped


def fold_summary(report: dict) -> dict:
    """The numbers of one fold's eval.json that are compared across folds."""
    summary = {name: report.get(name) for name in METRIC_NAMES}
    summary["macro"] = report.get("macro")
    if "operating_points" in report:
        summary["tuned"] = {key: value for key, value in report["operating_points"]["tuned"].items()
                            if key != "confusion_matrix"}
    return summary


def cross_validate(config: ClassifierConfig, workdir: Path | str, data: SplitData | None = None, *,
                   progress: bool = True) -> TrainResult:
    """Runs (or resumes) every fold of `config.cv` in `workdir` and writes the summary eval.json.

    Raises:
      UsageError: `data` is given (the folds are cut from `config.data`).
      DataError: a class has fewer distinct images than folds.
    """
    if data is not None:
        raise UsageError("cross-validation cuts its folds from config.data; it takes no split data")
    paths = Workdir(Path(workdir))
    paths.root.mkdir(parents=True, exist_ok=True)
    dataset = data_lib.load(config.data, config.image_size, config.channels, seed=config.seed)
    record_skipped(dataset.provenance, paths)
    writer = distributed.is_main_process()
    if writer:
        config_lib.save(config, paths.config)
    predefined = dataset.provenance.get("splits")
    is_test = np.asarray(predefined) == "test" if predefined is not None else np.zeros(len(dataset.labels), bool)
    pool = np.flatnonzero(~is_test)
    groups = leak_groups(dataset, config)
    folds = stratified_group_kfold(dataset.labels[pool], groups[pool], config.cv.folds, repeats=config.cv.repeats,
                                   seed=config.seed)
    single = dataclasses.replace(config, cv=CrossValidationConfig())

    def part(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return dataset.images[rows], dataset.labels[rows]

    reports, members = [], []
    for index, (train_rows, test_rows) in enumerate(folds):
        repeat, fold = divmod(index, config.cv.folds)
        remaining = pool[train_rows]
        carved = stratified_split(dataset.labels[remaining], groups[remaining], val_fraction=0.0,
                                  test_fraction=config.split.val_fraction, seed=config.seed + index)
        split = SplitData(part(remaining[carved == "train"]), part(remaining[carved == "test"]),
                          part(pool[test_rows]), dataset.class_names, dataset.provenance)
        print(f"fold {fold + 1}/{config.cv.folds}" + (f" of repeat {repeat + 1}/{config.cv.repeats}"
                                                         if config.cv.repeats > 1 else "")
              + f": {len(split.train[1])} training, {len(split.val[1])} validation, {len(split.test[1])} test images",
              file=sys.stderr, flush=True)
        result = FAMILY.train(single, paths.root / f"fold_{repeat}_{fold}", split, progress=progress)
        reports.append(fold_summary(result.eval))
        members.append(result)
    intervals = fold_intervals(reports)
    report = {name: intervals[name]["mean"] for name in METRIC_NAMES if name in intervals}
    report.update(
        cv={"folds": config.cv.folds, "repeats": config.cv.repeats, "runs": len(reports),
            "interval": "mean over folds with a Student-t 95% interval (folds share training images: read it "
                        "as approximate)", **intervals},
        folds=reports, class_names=list(dataset.class_names), split="cross-validation",
        operating_point="argmax (the most probable class) in each fold; the tuned threshold per fold under "
                        "cv.tuned",
        data={key: value for key, value in dataset.provenance.items() if key not in ("splits", "files")})
    if is_test.any():
        test_images, test_labels = part(np.flatnonzero(is_test))
        probabilities = ensemble_probabilities([
            predict(member.definition, member.state.best_params, member.state.best_model_state, test_images,
                    config.batch_size, tta=config.eval.tta) for member in members])
        report["ensemble_test"] = {
            "members": len(members), "tta": config.eval.tta,
            **evaluate(test_labels, np.asarray(probabilities), dataset.class_names,
                       num_resamples=config.eval.bootstrap_resamples, seed=config.seed)}
    if writer:
        paths.eval.write_text(json.dumps(report, indent=2) + "\n")
    return TrainResult(family=FAMILY.name, workdir=paths.root, step=sum(member.step for member in members),
                       epoch=None, metrics={}, eval=report, eval_path=paths.eval)
