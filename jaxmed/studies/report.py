"""W/report.md: the study's answer in words, tables and figures (W/plots/), from the summary in study.json.

The report says first whether the study can answer at all (the all-real arm must learn
the task), then the verdicts, the power statement, the effects with their intervals,
and the synthetic images themselves (quality table and sample grids).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jaxmed.studies.arms import ALL_REAL, BASELINE
from jaxmed.studies.summary import METRIC_LABELS, METRICS
from jaxmed.viz import studies as study_plots

QUALITY_COLUMNS = (("fid", "FID", ".1f"), ("kid", "KID", ".3f"), ("precision", "precision", ".2f"),
                   ("recall", "recall", ".2f"), ("copies", "copies", "g"), ("data_copying_z", "data-copying Z", "+.1f"))


def write_report(summary: dict, workdir: Path) -> Path:
    """Writes W/report.md and its figures under W/plots/.

    Args:
      summary: what study.json holds (`jaxmed.studies.summary.summarize`).
      workdir: the study directory.

    Returns:
      The report's path.
    """
    config = summary["config"]
    lines = [f"# Augmentation study: does synthetic '{summary['minority_class']}' data help a classifier?", "",
             f"Data `{config['data']['spec']}` at {config['image_size']} px; {summary['seeds']} seeds (repeated "
             f"stratified, duplicate-aware splits); scarce class '{summary['minority_class']}' with "
             f"{_counts(config['minority_train_counts'])} real training images; generators "
             f"{', '.join(config['generators'])}; classifiers {', '.join(config['classifiers'])}. Every arm is "
             f"compared with `{BASELINE}` (scarce real data with classic augmentation) on the same seed's test "
             f"split; the metrics are those {summary['metrics_of']}.", "", "## Can the study answer?", ""]
    for model, entry in summary["informative_by_classifier"].items():
        auc = "n/a" if entry["all_real_auc"] is None else f"{entry['all_real_auc']:.3f}"
        if entry["informative"]:
            lines.append(f"- `{model}`: yes: with all real data it reaches a mean AUC of {auc} "
                         f"(≥ {entry['threshold']:g}).")
        else:
            lines.append(f"- `{model}`: **no, uninformative**: even with all real data its mean AUC is {auc} "
                         f"(< {entry['threshold']:g}): the classifier does not learn the task, so differences "
                         f"between arms say nothing about synthetic data and no verdicts are given.")
    for model, per_count in summary["arms"].items():
        for count in per_count:
            lines += _cell_section(summary, model, count, workdir)
    lines += _scarcity_section(summary, workdir)
    lines += _synthetic_section(summary, workdir)
    lines += ["## How to read this report", "",
              "- A difference is arm minus baseline within one seed's split, averaged over seeds; its 95% interval "
              "is Student-t over seeds.",
              "- **helped** / **hurt**: the AUC interval lies above / below zero. **No detectable effect larger than "
              "Y**: the interval includes zero, and Y is the smallest true difference this many seeds would detect "
              "with 80% power at two-sided alpha 0.05, (t(0.975, n-1) + t(0.80, n-1)) · SD / √n. Smaller effects "
              "are not ruled out.",
              "- `GEN+tstr` trains on synthetic minority images and real majority images only: the minority-class "
              "form of train-on-synthetic, test-on-real.",
              f"- `{ALL_REAL}` is the upper bound: the whole real training split, with classic augmentation.", ""]
    path = workdir / "report.md"
    path.write_text("\n".join(lines))
    return path


def _counts(counts: list[int]) -> str:
    return ", ".join("all" if count == 0 else str(count) for count in counts)


def _interval(entry: dict) -> str:
    if entry["mean"] is None:
        return "n/a"
    if entry["low"] is None:
        return f"{entry['mean']:+.3f}"
    return f"{entry['mean']:+.3f} ({entry['low']:+.3f}, {entry['high']:+.3f})"


def _cell_section(summary: dict, model: str, count: str, workdir: Path) -> list[str]:
    """Verdicts, power, the effect table and figures of one classifier at one scarcity."""
    title = f"`{model}`, {'all' if count == '0' else count} real '{summary['minority_class']}' training images"
    plot_title = title.replace("`", "")
    lines = ["", f"## {title}", ""]
    verdicts = summary["verdicts"].get(model, {}).get(count)
    if verdicts is None:
        lines += ["No verdicts: the study is uninformative for this classifier (see above).", ""]
    else:
        lines += ["| arm | verdict (AUC difference to `augment`) |", "|---|---|"]
        lines += [f"| `{arm}` | {text} |" for arm, text in verdicts.items()] + [""]
    lines += ["Power (the smallest differences to `augment` this run could detect):", ""]
    lines += [f"- {entry['text']}." for entry in summary["power_statement"][model][count].values()] + [""]
    header = "| arm | AUC mean ± sd | " + " | ".join(f"Δ {METRIC_LABELS[m]} (95% CI)" for m in METRICS) + \
             " | Δ AUC detectable | synthetic images |"
    lines += [header, "|---" * (len(METRICS) + 4) + "|"]
    arms, differences = summary["arms"][model][count], summary["differences"][model][count]
    for arm, metrics in arms.items():
        auc = metrics["roc_auc"]
        level = "n/a" if auc["mean"] is None else f"{auc['mean']:.3f} ± {auc['std']:.3f}"
        if arm == BASELINE:
            deltas, detectable = " | ".join("—" for _ in METRICS), "—"
        else:
            deltas = " | ".join(_interval(differences[arm][m]) for m in METRICS)
            value = differences[arm]["roc_auc"]["detectable"]
            detectable = "n/a" if value is None else f"{value:.3f}"
        synthetic = [seed.get("synthetic_images", 0) for seed in summary["per_seed"][model][count][arm].values()]
        lines.append(f"| `{arm}` | {level} | {deltas} | {detectable} | {_range(synthetic)} |")
    slug = f"{model}_count{count}"
    arms_plot = study_plots.plot_study(
        {"arms": arms, "baseline": BASELINE, "differences": differences, "confidence": summary["confidence"]},
        workdir / "plots" / f"arms_{slug}.png", metrics=("roc_auc", "recall", "specificity", "f1"),
        title=f"Augmentation study: {plot_title}")
    lines += ["", f"![every arm]({arms_plot.relative_to(workdir).as_posix()})", ""]
    series = _ratio_series(summary, model, count)
    if series:
        ratio_plot = study_plots.plot_effects(
            series, workdir / "plots" / f"effect_vs_ratio_{slug}.png",
            xlabel="synthetic images per real minority image", ylabel="AUC difference to augment (95% CI)",
            title=f"Effect vs synthetic:real ratio, {plot_title}", log_x=True)
        lines += [f"![effect vs ratio]({ratio_plot.relative_to(workdir).as_posix()})", ""]
    return lines


def _range(values: list[int]) -> str:
    if not values:
        return "n/a"
    return str(values[0]) if min(values) == max(values) else f"{min(values)}–{max(values)}"


def _ratio_series(summary: dict, model: str, count: str) -> dict[str, list[dict[str, Any]]]:
    """AUC differences against the ratio: one line per generator, filtered and tstr arms as their own points."""
    series: dict[str, list[dict[str, Any]]] = {}
    config = summary["config"]
    for generator in config["generators"]:
        for arm, difference in summary["differences"][model][count].items():
            head, _, rest = arm.partition("+")
            if head != generator:
                continue
            auc = difference["roc_auc"]
            point = {"x": 1.0, "mean": auc["mean"], "low": auc["low"], "high": auc["high"]}
            if rest.startswith("augment+synthetic_x"):
                series.setdefault(f"{generator} + augment + synthetic", []).append(
                    {**point, "x": float(rest.rpartition("_x")[2])})
            elif rest.startswith("filtered_x"):
                series[f"{generator} filtered"] = [{**point, "x": float(rest.rpartition("_x")[2])}]
            elif rest == "tstr":
                series[f"{generator} tstr (synthetic instead of real minority)"] = [point]
    return series


def _scarcity_section(summary: dict, workdir: Path) -> list[str]:
    """The effect of every arm against the number of real minority images, per classifier."""
    counts = [count for count in summary["config"]["minority_train_counts"] if count > 0]
    if len(counts) < 2:
        return ["", "## Effect vs scarcity", "",
                "One scarcity level only (`minority_train_counts`): the effect against scarcity needs several.", ""]
    lines = ["", "## Effect vs scarcity", ""]
    for model, per_count in summary["differences"].items():
        series: dict[str, list[dict[str, Any]]] = {}
        for count in counts:
            for arm, difference in per_count[str(count)].items():
                auc = difference["roc_auc"]
                series.setdefault(arm, []).append({"x": float(count), "mean": auc["mean"], "low": auc["low"],
                                                   "high": auc["high"]})
        path = study_plots.plot_effects(series, workdir / "plots" / f"effect_vs_scarcity_{model}.png",
                                        xlabel="real minority training images", ylabel="AUC difference to augment "
                                        "(95% CI)", title=f"Effect vs scarcity, {model}", log_x=True)
        lines += [f"![effect vs scarcity, {model}]({path.relative_to(workdir).as_posix()})", ""]
    return lines


def _synthetic_section(summary: dict, workdir: Path) -> list[str]:
    """The synthetic images: quality table (mean over seeds), filter acceptance, sample grids."""
    lines = ["## The synthetic images", ""]
    quality = summary["synthetic_quality"]
    if any(cell["mean"] for per_count in quality.values() for cell in per_count.values()):
        lines += ["Mean over seeds, against each seed's real test images of the minority class (never seen by the "
                  "generator), in the features of a VAE trained on the seed's training split; copies are of the "
                  "generator's training images.", "",
                  "| generator | real minority | " + " | ".join(label for _, label, _ in QUALITY_COLUMNS) + " |",
                  "|---" * (len(QUALITY_COLUMNS) + 2) + "|"]
        for generator, per_count in quality.items():
            for count, cell in per_count.items():
                values = [format(cell["mean"][key], spec) if key in cell["mean"] else "n/a"
                          for key, _, spec in QUALITY_COLUMNS]
                lines.append(f"| {generator} | {_counts([int(count)])} | " + " | ".join(values) + " |")
        lines.append("")
    else:
        lines += ["Not measured (`feature_steps=0`).", ""]
    for generator, per_count in summary["filtering"].items():
        for count, per_model in per_count.items():
            for model, per_seed in per_model.items():
                accepted = sum(seed["accepted"] for seed in per_seed.values())
                candidates = sum(seed["candidates"] for seed in per_seed.values())
                lines.append(f"- Filter ({generator}, {_counts([int(count)])} real, `{model}`'s `{BASELINE}` "
                             f"classifier): {accepted} of {candidates} candidates called "
                             f"'{summary['minority_class']}' over all seeds.")
    grids = sorted((workdir / "plots" / "samples").glob("*.png"))
    if grids:
        lines += ["", "Sample grids (first images of each generator's stream, per seed and scarcity):", ""]
        lines += [f"![{grid.stem}]({grid.relative_to(workdir).as_posix()})" for grid in grids]
    return lines + [""]
