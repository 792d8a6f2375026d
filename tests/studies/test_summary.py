"""study.json and report.md from hand-made results: the uninformative rule, verdicts, power, figures."""

import pytest

from jaxmed.studies import report, summary
from jaxmed.studies.arms import study_arms
from jaxmed.studies.config import StudyConfig

ARM_AUC = {"real": 0.70, "augment": 0.72, "gan+augment+synthetic_x1": 0.80, "gan+augment+synthetic_x2": 0.60,
           "gan+filtered_x1": 0.73, "gan+tstr": 0.65}


def _results(config, all_real_auc):
    """Per-seed metrics: each arm's AUC as in ARM_AUC with a small seed-dependent wobble."""
    arms = study_arms(config.generators, config.synthetic_ratios, config.filter_ratio)
    wobble = {0: 0.0, 1: 0.01, 2: -0.01}
    results = {}
    for model in config.classifiers:
        results[model] = {}
        for count in config.minority_train_counts:
            results[model][str(count)] = {}
            for arm in arms:
                auc = all_real_auc if arm.name == "all_real" else ARM_AUC[arm.name]
                results[model][str(count)][arm.name] = {
                    str(seed): {"roc_auc": auc + wobble[seed] * (arm.name == "gan+filtered_x1"), "recall": 0.5,
                                "specificity": 0.6 + 0.01 * seed, "f1": None if arm.name == "real" else 0.55,
                                "accuracy": 0.6, "synthetic_images": 12 if arm.generator else 0}
                    for seed in range(config.seeds)}
    return results


def _config(**overrides):
    return StudyConfig.tiny(seeds=3, synthetic_ratios="1,2", minority_class="tumor", **overrides)


def _quality(config):
    per_seed = {str(seed): {"fid": 10.0 + seed, "kid": 0.1, "precision": 0.5, "recall": 0.4, "copies": 0,
                            "data_copying_z": None} for seed in range(config.seeds)}
    return {"gan": {str(count): per_seed for count in config.minority_train_counts}}


def _filtering(config):
    return {"gan": {str(count): {"seed_cnn": {str(seed): {"candidates": 24, "accepted": 10, "used": 10, "wanted": 12}
                                              for seed in range(config.seeds)}}
                    for count in config.minority_train_counts}}


def test_a_classifier_that_does_not_learn_the_task_gives_no_verdicts(tmp_path):
    config = _config()
    result = summary.summarize(config, _results(config, all_real_auc=0.74), _quality(config), _filtering(config))
    assert result["informative"] is False
    assert result["informative_by_classifier"]["seed_cnn"]["all_real_auc"] == pytest.approx(0.74)
    assert result["verdicts"] == {}
    assert "uninformative" in result["summary"] and "helped" not in result["summary"]
    # The differences are still recorded, for whoever wants to look.
    assert result["differences"]["seed_cnn"]["12"]["gan+augment+synthetic_x1"]["roc_auc"]["mean"] == \
        pytest.approx(0.08)
    text = report.write_report(result, tmp_path).read_text()
    assert "**no, uninformative**" in text and "No verdicts" in text and "helped:" not in text


def test_verdicts_power_and_report_of_an_informative_study(tmp_path):
    config = _config()
    result = summary.summarize(config, _results(config, all_real_auc=0.9), _quality(config), _filtering(config))
    assert result["informative"] is True
    verdicts = result["verdicts"]["seed_cnn"]["12"]
    # Constant differences over seeds: SD 0, so the interval is the point and the verdict decisive.
    assert verdicts["gan+augment+synthetic_x1"].startswith("helped: +0.080 AUC")
    assert verdicts["gan+augment+synthetic_x2"].startswith("hurt: -0.120 AUC")
    assert verdicts["gan+filtered_x1"].startswith("no detectable effect larger than")
    assert set(verdicts) == set(ARM_AUC) - {"augment"} | {"all_real"}
    power = result["power_statement"]["seed_cnn"]["12"]
    assert power["roc_auc"]["n"] == 3 and "would go undetected at 80% power" in power["roc_auc"]["text"]
    assert result["differences"]["seed_cnn"]["12"]["real"]["f1"]["n"] == 0  # real's F1 was never computed
    assert result["synthetic_quality"]["gan"]["12"]["mean"]["fid"] == pytest.approx(11.0)
    text = report.write_report(result, tmp_path).read_text()
    assert "| `gan+augment+synthetic_x1` | helped: +0.080 AUC" in text
    assert "- AUC: with 3 paired seeds, differences smaller than" in text
    assert "| gan | 12 | 11.0 | 0.100 | 0.50 | 0.40 | 0 | n/a |" in text
    assert "30 of 72 candidates" in text
    for image in ("plots/arms_seed_cnn_count12.png", "plots/effect_vs_ratio_seed_cnn_count12.png"):
        assert f"]({image})" in text and (tmp_path / image).stat().st_size > 0
    assert "One scarcity level only" in text


def test_several_scarcities_get_an_effect_vs_scarcity_figure(tmp_path):
    config = _config(minority_train_counts="12,24")
    result = summary.summarize(config, _results(config, all_real_auc=0.9), _quality(config), _filtering(config))
    text = report.write_report(result, tmp_path).read_text()
    assert "](plots/effect_vs_scarcity_seed_cnn.png)" in text
    assert (tmp_path / "plots" / "effect_vs_scarcity_seed_cnn.png").is_file()
