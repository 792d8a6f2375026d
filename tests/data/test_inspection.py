"""The data report: counts, raw formats, skipped files, duplicates and leakage."""

import io
import json

import numpy as np
import pytest
from PIL import Image

import jaxmed.data
from jaxmed.data import inspection


def save(pixels, path, format_="PNG"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format_)


@pytest.fixture(scope="module")
def scans():
    """Distinct 8-bit brain slices (64x64) to file as a public data set would."""
    images = jaxmed.data.load("phantom:brain", 64, n=12, seed=7).images
    return [np.rint((image[..., 0] + 1) * 127.5).astype(np.uint8) for image in images]


@pytest.fixture
def leaky(tmp_path, scans):
    """A Training/Testing data set with the flaws public data sets ship.

    - Testing/no/copy.png is Training/no/0.png, byte for byte (exact, across splits);
    - Training/yes/conflict.png is Training/no/1.png (exact, across classes);
    - Training/no/again.png is Training/no/2.png (exact, within a class);
    - Testing/yes/recompressed.jpg is Training/yes/0.png as a JPEG (near, across splits);
    - Training/yes/bad.png is truncated.
    """
    root = tmp_path / "leaky"
    for index in range(4):
        save(scans[index], root / "Training" / "no" / f"{index}.png")
        save(scans[4 + index], root / "Training" / "yes" / f"{index}.png")
    for index in range(2):
        save(scans[8 + index], root / "Testing" / "no" / f"{index}.png")
        save(scans[10 + index], root / "Testing" / "yes" / f"{index}.png")
    (root / "Testing" / "no" / "copy.png").write_bytes((root / "Training" / "no" / "0.png").read_bytes())
    save(scans[1], root / "Training" / "yes" / "conflict.png")
    save(scans[2], root / "Training" / "no" / "again.png")
    save(scans[4], root / "Testing" / "yes" / "recompressed.jpg", "JPEG")
    (root / "Training" / "yes" / "bad.png").write_bytes((root / "Training" / "yes" / "0.png").read_bytes()[:100])
    return root


def test_report_counts_formats_skips_and_duplicates(leaky):
    dataset = jaxmed.data.load(str(leaky), 32, skip_bad=True)
    report = inspection.report(dataset)
    json.dumps(report)  # JSON-able as it is
    assert report["total"] == 16
    assert report["classes"] == {"no": 8, "yes": 8}
    assert report["splits"] == {"test": {"no": 3, "yes": 3}, "train": {"no": 5, "yes": 5}}
    assert report["raw"]["sizes"] == {"64x64": 16} and report["raw"]["bit_depths"] == {"8-bit": 16}
    assert report["image_size"] == 32
    assert [item["file"] for item in report["skipped"]] == ["Training/yes/bad.png"]
    assert "truncated" in report["skipped"][0]["reason"]

    exact = report["duplicates"]["exact"]
    assert exact["groups"] == 3 and exact["images"] == 6
    assert exact["within_class"]["pairs"] == 2  # again.png and the copy across splits, both class "no"
    assert exact["across_classes"] == {"pairs": 1, "images": 2, "examples": [{
        "files": ["Training/no/1.png", "Training/yes/conflict.png"], "classes": ["no", "yes"],
        "splits": ["train", "train"]}]}
    assert exact["across_splits"]["pairs"] == 1
    assert sorted(exact["across_splits"]["examples"][0]["files"]) == ["Testing/no/copy.png", "Training/no/0.png"]

    near = report["duplicates"]["near"]
    assert near["pairs"] == 1
    [example] = near["across_splits"]["examples"]
    assert sorted(example["files"]) == ["Testing/yes/recompressed.jpg", "Training/yes/0.png"]
    assert example["hash_bits"] <= near["max_hash_bits"] and example["correlation"] >= near["min_correlation"]
    assert near["within_class"]["pairs"] == 1 and near["across_classes"]["pairs"] == 0

    warnings = report["warnings"]
    assert len(warnings) == 3
    assert any("exact-duplicate" in line and "different labels" in line and "conflict.png" in line
               for line in warnings)
    assert any("exact-duplicate" in line and "test leakage" in line and "copy.png" in line for line in warnings)
    assert any("near-duplicate" in line and "test leakage" in line and "recompressed.jpg" in line
               for line in warnings)


def test_a_clean_data_set_has_no_warnings(tmp_path, scans):
    for index, pixels in enumerate(scans):
        save(pixels, tmp_path / "clean" / ("no" if index % 2 else "yes") / f"{index}.png")
    report = inspection.report(jaxmed.data.load(str(tmp_path / "clean"), 32))
    assert report["warnings"] == [] and report["splits"] == {} and report["skipped"] == []
    assert report["duplicates"]["exact"]["groups"] == 0 and report["duplicates"]["near"]["pairs"] == 0
    text = inspection.render_text(report)
    assert "WARNING" not in text and "splits: none predefined" in text


def test_text_report_says_it_loudly(leaky):
    text = inspection.render_text(inspection.report(jaxmed.data.load(str(leaky), 32, skip_bad=True)))
    lines = text.splitlines()
    assert lines[0].startswith(f"{leaky} (images): 16 images in 2 classes")
    assert any(line.split() == ["class", "images", "train", "test"] for line in lines)
    assert any(line.split() == ["no", "8", "5", "3"] for line in lines)
    assert "  Training/yes/bad.png: truncated or corrupt image" in text
    assert "raw sizes (WxH): 64x64 ×16" in text
    assert sum(line.startswith("WARNING: ") for line in lines) == 3
    assert "exact (identical pixels): 3 groups, 6 images; pairs: 2 within a class, 1 across classes, 1 across splits" \
        in text


def test_generated_data_report():
    dataset = jaxmed.data.load("phantom:lung", 32, n=10, seed=0)
    report = inspection.report(dataset)
    assert report["raw"] is None and report["total"] == 10 and report["source"] == "phantom"
    assert sum(report["classes"].values()) == 10
    assert "raw: generated data" in inspection.render_text(report)


def test_json_round_trip_of_a_report_with_unusual_names(tmp_path, scans):
    save(scans[0], tmp_path / "odd" / "a b" / "ü.png")
    save(scans[1], tmp_path / "odd" / "c" / "x.png")
    buffer = io.StringIO()
    json.dump(inspection.report(jaxmed.data.load(str(tmp_path / "odd"), 16)), buffer)
    assert json.loads(buffer.getvalue())["classes"] == {"a b": 1, "c": 1}
