"""Paired differences, their intervals, the detectable difference and the verdicts, against hand computation."""

import math

import pytest
from scipy import stats

from jaxmed.studies.statistics import detectable_difference, paired_difference, summarize_values, verdict


def test_paired_difference_matches_a_hand_computed_case():
    deltas = [0.02, 0.05, -0.01, 0.04]
    # By hand: mean 0.1 / 4 = 0.025; squared deviations 0.000025 + 0.000625 + 0.001225 + 0.000225 = 0.0021,
    # SD = sqrt(0.0021 / 3); standard error SD / 2.
    sd = math.sqrt(0.0021 / 3)
    half = stats.t.ppf(0.975, 3) * sd / 2
    result = paired_difference(deltas)
    assert result["n"] == 4
    assert result["mean"] == pytest.approx(0.025)
    assert result["sd"] == pytest.approx(sd)
    assert (result["low"], result["high"]) == pytest.approx((0.025 - half, 0.025 + half))
    assert result["detectable"] == pytest.approx((stats.t.ppf(0.975, 3) + stats.t.ppf(0.8, 3)) * sd / 2)
    # t(0.975, 3) = 3.182, t(0.80, 3) = 0.978: the detectable difference is about 4.16 standard errors.
    assert result["detectable"] == pytest.approx(4.160 * sd / 2, rel=1e-3)


def test_too_few_seeds_give_no_interval_and_no_power():
    assert paired_difference([0.1]) == {"mean": 0.1, "sd": None, "n": 1, "low": None, "high": None,
                                        "detectable": None}
    assert paired_difference([None, float("nan")])["mean"] is None
    assert paired_difference([0.1, None, 0.3])["n"] == 2
    assert detectable_difference(0.1, 1) is None
    assert "cannot be judged" in verdict(paired_difference([0.1]))


def test_verdicts_in_plain_words():
    helped = paired_difference([0.10, 0.12, 0.11])
    assert verdict(helped).startswith("helped: +0.110 AUC (95% CI +0.")
    assert verdict(paired_difference([-0.10, -0.12, -0.11])).startswith("hurt: -0.110 AUC")
    unclear = paired_difference([0.05, -0.04, 0.01])
    assert verdict(unclear).startswith(f"no detectable effect larger than {unclear['detectable']:.3f} AUC")


def test_summarize_values_skips_missing():
    assert summarize_values([0.5, None, 0.7]) == {"mean": pytest.approx(0.6), "std": pytest.approx(math.sqrt(0.02)),
                                                  "values": [0.5, None, 0.7]}
    assert summarize_values([None])["mean"] is None
