"""What a data source holds: counts, raw formats, skipped files, duplicates.

`report(dataset)` describes a `jaxmed.data.Dataset` as one JSON-able dict (what
``jaxmed data inspect --json`` prints); `render_text(report)` is the human-readable
form. The example montage is drawn by `jaxmed.viz.inspection.save_montage`.

The report (keys in this order)::

    spec, source           what was read
    image_size, channels   the preprocessing the duplicate tests saw
    total                  number of images
    classes                {class: count}
    splits                 {split: {class: count}} for predefined splits, else {}
    raw                    {"sizes": {"WxH": count}, "bit_depths": {name: count},
                            "intensity": [min, max]} before preprocessing (null for generated data)
    skipped                [{"file", "reason"}] for every entry skipped under skip_bad
    ignored                [{"file", "reason"}] for every document set aside as not data
                           (a README.txt, a labels.csv; see `jaxmed.data.sources.documents`)
    duplicates             {"exact": {...}, "near": {...}}, see below
    warnings               one line per problem found (also printed on stderr by the CLI)

Each duplicate kind counts pairs of images in three categories (see
`jaxmed.data.duplicates`): ``within_class``, ``across_classes`` (the same image with
different labels) and ``across_splits`` (a copy in two predefined splits: test
leakage), each as ``{"pairs", "images", "examples": [{"files", "classes", "splits"}]}``.
Duplicates across classes or splits are warnings: public data sets often ship them,
and they make test results meaningless.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxmed.data import duplicates
from jaxmed.data.dataset import Dataset

SPLIT_ORDER = ("train", "val", "test")


def _counts(labels: np.ndarray, class_names: tuple[str, ...]) -> dict[str, int]:
    counts = np.bincount(labels, minlength=len(class_names))
    return {name: int(count) for name, count in zip(class_names, counts, strict=True)}


def _image_names(dataset: Dataset) -> list[str]:
    files = dataset.provenance.get("files")
    if files and len(files) == len(dataset.images):
        return list(files)
    return [f"{dataset.provenance.get('spec', '')}#{index}" for index in range(len(dataset.images))]


def _category_json(category: duplicates.Category, names: list[str], classes: list[str], splits: np.ndarray | None,
                   pairs: duplicates.Pairs | None = None) -> dict[str, Any]:
    examples = []
    lookup = {}
    if pairs is not None:  # near pairs: show their hash distance and correlation
        lookup = {(int(a), int(b)): (int(d), float(c))
                  for a, b, d, c in zip(pairs.first, pairs.second, pairs.distance, pairs.correlation, strict=True)}
    for first, second in category.examples:
        example: dict[str, Any] = {"files": [names[first], names[second]],
                                   "classes": [classes[first], classes[second]]}
        if splits is not None:
            example["splits"] = [str(splits[first]), str(splits[second])]
        if (first, second) in lookup:
            example["hash_bits"], example["correlation"] = lookup[(first, second)]
            example["correlation"] = round(example["correlation"], 4)
        examples.append(example)
    return {"pairs": category.pairs, "images": category.images, "examples": examples}


def _warnings(found: dict[str, Any], has_splits: bool) -> list[str]:
    lines = []
    for kind, description in (("exact", "exact-duplicate"), ("near", "near-duplicate")):
        across_classes = found[kind]["across_classes"]
        if across_classes["pairs"]:
            example = across_classes["examples"][0]
            lines.append(f"{across_classes['pairs']} {description} pair(s) carry different labels "
                         f"({across_classes['images']} images; e.g. {example['files'][0]} [{example['classes'][0]}] "
                         f"and {example['files'][1]} [{example['classes'][1]}]): conflicting labels")
        across_splits = found[kind]["across_splits"]
        if has_splits and across_splits["pairs"]:
            example = across_splits["examples"][0]
            lines.append(f"{across_splits['pairs']} {description} pair(s) cross the predefined splits "
                         f"({across_splits['images']} images; e.g. {example['files'][0]} [{example['splits'][0]}] "
                         f"and {example['files'][1]} [{example['splits'][1]}]): test leakage, test results on "
                         f"these splits are inflated")
    return lines


def report(dataset: Dataset) -> dict[str, Any]:
    """Describes a data set (see the module docstring for the keys).

    Args:
      dataset: from `jaxmed.data.load`.

    Returns:
      A JSON-able dict.
    """
    provenance = dataset.provenance
    class_names = tuple(dataset.class_names)
    labels = np.asarray(dataset.labels)
    splits = np.asarray(provenance["splits"]) if provenance.get("splits") is not None else None
    split_counts = {}
    if splits is not None:
        order = {name: index for index, name in enumerate(SPLIT_ORDER)}
        for split in sorted(set(splits.tolist()), key=lambda name: (order.get(name, len(order)), name)):
            split_counts[split] = _counts(labels[splits == split], class_names)
    names = _image_names(dataset)
    classes = [class_names[label] for label in labels]
    findings = duplicates.find_duplicates(dataset.images, labels, splits)
    exact_images = int(sum(len(group) for group in findings.exact_groups))
    found = {
        "exact": {"groups": len(findings.exact_groups), "images": exact_images,
                  **{name: _category_json(category, names, classes, splits)
                     for name, category in findings.exact.items()}},
        "near": {"max_hash_bits": duplicates.NEAR_DUPLICATE_BITS,
                 "min_correlation": duplicates.NEAR_DUPLICATE_CORRELATION,
                 "pairs": findings.near.count,
                 "images": len(np.union1d(findings.near.first, findings.near.second)),
                 **{name: _category_json(category, names, classes, splits, findings.near)
                    for name, category in findings.near_categories.items()}},
    }
    return {
        "spec": provenance.get("spec"),
        "source": provenance.get("source"),
        "image_size": int(dataset.images.shape[1]),
        "channels": int(dataset.images.shape[3]),
        "total": len(labels),
        "classes": _counts(labels, class_names),
        "splits": split_counts,
        "raw": provenance.get("raw"),
        "skipped": [{"file": entry, "reason": reason} for entry, reason in provenance.get("skipped") or []],
        "ignored": [{"file": entry, "reason": reason} for entry, reason in provenance.get("ignored") or []],
        "duplicates": found,
        "warnings": _warnings(found, splits is not None),
    }


def _tally(counts: dict[str, int], limit: int = 4) -> str:
    """ "512x512 ×1200, 256x256 ×34 (and 3 more)" """
    items = list(counts.items())
    text = ", ".join(f"{name} ×{count:,}" for name, count in items[:limit])
    return text + (f" (and {len(items) - limit} more)" if len(items) > limit else "")


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) and not value.is_integer() else f"{int(value)}"


def render_text(summary: dict[str, Any]) -> str:
    """The report as text for people (what ``jaxmed data inspect`` prints), without a final newline."""
    lines = [f"{summary['spec']} ({summary['source']}): {summary['total']:,} images in {len(summary['classes'])} "
             f"classes, read at {summary['image_size']}x{summary['image_size']}"]
    splits = summary["splits"]
    header = ["class", "images", *splits]
    rows = [[name, f"{count:,}", *(f"{splits[split].get(name, 0):,}" for split in splits)]
            for name, count in summary["classes"].items()]
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    for row in [header, *rows]:
        lines.append("  " + "  ".join(cell.ljust(width) if column == 0 else cell.rjust(width)
                                      for column, (cell, width) in enumerate(zip(row, widths, strict=True))))
    if not splits:
        lines.append("splits: none predefined (jaxmed makes stratified, duplicate-free splits when training)")
    raw = summary["raw"]
    if raw:
        intensity = raw.get("intensity")
        lines.append(f"raw sizes (WxH): {_tally(raw.get('sizes', {}))}")
        lines.append(f"raw sample types: {_tally(raw.get('bit_depths', {}))}")
        if intensity:
            lines.append(f"raw intensities: {_number(intensity[0])} to {_number(intensity[1])}")
    else:
        lines.append("raw: generated data (no files)")
    skipped = summary["skipped"]
    lines.append(f"skipped: {_plural(len(skipped), 'file')}" + (":" if skipped else ""))
    lines += [f"  {item['file']}: {item['reason']}" for item in skipped]
    ignored = summary.get("ignored") or []
    if ignored:
        lines.append(f"ignored (not image data): {_plural(len(ignored), 'file')}:")
        lines += [f"  {item['file']}: {item['reason']}" for item in ignored]
    found = summary["duplicates"]
    exact, near = found["exact"], found["near"]
    lines.append("duplicates (on the preprocessed images):")

    def categories(kind: dict[str, Any]) -> str:
        return (f"{kind['within_class']['pairs']:,} within a class, {kind['across_classes']['pairs']:,} across "
                f"classes, {kind['across_splits']['pairs']:,} across splits")

    lines.append(f"  exact (identical pixels): {_plural(exact['groups'], 'group')}, "
                 f"{_plural(exact['images'], 'image')}; pairs: {categories(exact)}")
    lines.append(f"  near (pHash within {near['max_hash_bits']} of 64 bits, correlation >= {near['min_correlation']}):"
                 f" {_plural(near['pairs'], 'pair')}, {_plural(near['images'], 'image')}; {categories(near)}")
    for kind_name, kind, sign in (("exact", exact, "="), ("near", near, "~")):
        for category in ("within_class", "across_classes", "across_splits"):
            for example in kind[category]["examples"][:2]:
                lines.append(f"    {kind_name}, {category.replace('_', ' ')}: {example['files'][0]} {sign} "
                             f"{example['files'][1]}")
    if summary.get("montage"):
        lines.append(f"montage: {summary['montage']}")
    lines += [f"WARNING: {line}" for line in summary["warnings"]]
    return "\n".join(lines)
