"""study.json: per-arm results, paired differences to the baseline, the power statement, and the verdicts.

The metrics are those of the minority class (one-vs-rest): ROC AUC, recall (sensitivity),
specificity and F1, with overall accuracy. Verdicts judge the AUC difference; they are
withheld for a classifier whose all-real arm does not learn the task (mean AUC below
`StudyConfig.informative_auc`), because differences between arms of a classifier near
chance say nothing about synthetic data.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxmed.studies import config as study_config
from jaxmed.studies import statistics
from jaxmed.studies.arms import ALL_REAL, BASELINE
from jaxmed.studies.config import StudyConfig
from jaxmed.studies.quality import mean_quality

#: Compared between arms, in this order; the first one decides the verdicts.
METRICS = ("roc_auc", "recall", "specificity", "f1", "accuracy")
METRIC_LABELS = {"roc_auc": "AUC", "recall": "recall", "specificity": "specificity", "f1": "F1",
                 "accuracy": "accuracy"}


def arm_metrics(report: dict, minority_class: str) -> dict[str, Any]:
    """The study's metrics from a classifier's eval.json: the minority class's, and overall accuracy."""
    per_class = report["per_class"][minority_class]
    return {**{metric: per_class.get(metric) for metric in METRICS if metric != "accuracy"},
            "accuracy": report.get("accuracy")}


def summarize(config: StudyConfig, results: dict, quality: dict, filtering: dict) -> dict:
    """Everything study.json holds.

    Args:
      config: the study's config (its minority class named).
      results: {classifier: {count: {arm: {seed: metrics}}}}.
      quality: {generator: {count: {seed: synthetic-quality measures}}}.
      filtering: {generator: {count: {classifier: {seed: filter counts}}}}.
    """
    arms, differences, power, verdicts, informative = {}, {}, {}, {}, {}
    for model, per_count in results.items():
        # The all-real arm has no scarcity: the same runs in every count's cell.
        all_real = next(iter(per_count.values()))[ALL_REAL]
        all_real_mean = statistics.summarize_values([all_real[seed]["roc_auc"] for seed in all_real])["mean"]
        learns = all_real_mean is not None and all_real_mean >= config.informative_auc
        informative[model] = {"all_real_auc": all_real_mean, "threshold": config.informative_auc,
                              "informative": learns}
        arms[model], differences[model], power[model] = {}, {}, {}
        if learns:
            verdicts[model] = {}
        for count, per_arm in per_count.items():
            arms[model][count] = {arm: {metric: statistics.summarize_values(
                [per_seed[seed][metric] for seed in sorted(per_seed, key=int)]) for metric in METRICS}
                for arm, per_seed in per_arm.items()}
            differences[model][count] = {arm: _paired(per_seed, per_arm[BASELINE])
                                         for arm, per_seed in per_arm.items() if arm != BASELINE}
            power[model][count] = power_statement(differences[model][count])
            if learns:
                verdicts[model][count] = {arm: statistics.verdict(difference["roc_auc"])
                                          for arm, difference in differences[model][count].items()}
    is_informative = all(entry["informative"] for entry in informative.values())
    return {
        "study": "augmentation", "minority_class": config.minority_class, "baseline": BASELINE,
        "metrics": list(METRICS),
        "metrics_of": f"of the minority class '{config.minority_class}' (one-vs-rest); accuracy over all classes",
        "confidence": statistics.CONFIDENCE, "power": statistics.POWER, "alpha": statistics.ALPHA,
        "seeds": config.seeds, "informative": is_informative, "informative_by_classifier": informative,
        "arms": arms, "differences": differences, "power_statement": power, "verdicts": verdicts,
        "per_seed": results,
        "synthetic_quality": {generator: {count: {"per_seed": per_seed, "mean": mean_quality(per_seed)}
                                          for count, per_seed in per_count.items()}
                              for generator, per_count in quality.items()},
        "filtering": filtering, "config": study_config.to_dict(config),
        "summary": summary_text(informative, verdicts),
    }


def _paired(per_seed: dict[str, dict], baseline: dict[str, dict]) -> dict[str, dict]:
    """Each metric's paired difference to the baseline over the seeds both have."""
    seeds = sorted(set(per_seed) & set(baseline), key=int)
    return {metric: statistics.paired_difference([_minus(per_seed[seed][metric], baseline[seed][metric])
                                                  for seed in seeds]) for metric in METRICS}


def _minus(value: float | None, baseline: float | None) -> float | None:
    return None if value is None or baseline is None else value - baseline


def power_statement(differences: dict[str, dict[str, dict]]) -> dict[str, dict]:
    """Per metric: the smallest differences to the baseline this run could detect (80% power, alpha 0.05)."""
    statement = {}
    for metric in METRICS:
        entries = [arm[metric] for arm in differences.values()]
        detectable = [entry["detectable"] for entry in entries if entry["detectable"] is not None]
        n = max((entry["n"] for entry in entries), default=0)
        label = METRIC_LABELS[metric]
        if not detectable:
            text = f"{label}: the detectable difference cannot be computed with {n} paired seed(s) (2 or more needed)"
            statement[metric] = {"n": n, "median": None, "min": None, "max": None, "text": text}
            continue
        median, low, high = float(np.median(detectable)), float(min(detectable)), float(max(detectable))
        text = (f"{label}: with {n} paired seeds, differences smaller than {median:.3f} (median over arms; "
                f"{low:.3f} to {high:.3f}) would go undetected at 80% power, two-sided alpha 0.05")
        statement[metric] = {"n": n, "median": median, "min": low, "max": high, "text": text}
    return statement


def summary_text(informative: dict[str, dict], verdicts: dict) -> str:
    """One paragraph: the informative check per classifier, then every verdict."""
    parts = []
    for model, entry in informative.items():
        if not entry["informative"]:
            auc = "n/a" if entry["all_real_auc"] is None else f"{entry['all_real_auc']:.3f}"
            parts.append(f"{model}: uninformative: the all-real arm's mean AUC is {auc} < {entry['threshold']:g}, "
                         f"the classifier does not learn the task, so no verdicts.")
            continue
        for count, per_arm in verdicts[model].items():
            scarcity = "all" if count == "0" else count
            parts += [f"{model}, {scarcity} real minority: {arm}: {text}." for arm, text in per_arm.items()]
    return " ".join(parts)
