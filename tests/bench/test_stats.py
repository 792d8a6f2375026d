"""The timing method shared by jaxmed and its peers: percentiles, summaries, warm-up and grouping."""

import numpy as np
import pytest

from jaxmed.bench import stats


@pytest.mark.parametrize("q", [0, 10, 25, 50, 90, 100])
def test_percentile_matches_numpy(q):
    values = list(np.random.default_rng(0).normal(size=17))
    assert stats.percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_summary_is_in_milliseconds_and_ordered():
    summary = stats.summarize_ms([0.003, 0.001, 0.002, 0.010])
    assert summary["median_ms"] == pytest.approx(2.5)
    assert summary["min_ms"] == pytest.approx(1.0) and summary["max_ms"] == pytest.approx(10.0)
    assert summary["p10_ms"] <= summary["median_ms"] <= summary["p90_ms"]
    assert summary["samples"] == 4


def test_first_call_and_warmup_are_not_timed_samples():
    calls, synced = [], []
    samples, first_s = stats.time_samples(lambda: calls.append(1) or len(calls), synced.append, warmup=2, repeats=3)
    assert len(calls) == 1 + 2 + 3
    assert len(samples) == 3 and first_s >= 0
    assert synced[-1] == len(calls)  # each sample waits for its last call's result


def test_fast_calls_are_grouped_to_the_minimum_sample_time():
    calls, synced = [], []
    samples, _ = stats.time_samples(lambda: calls.append(1) or len(calls), synced.append, warmup=0, repeats=2,
                                    min_sample_s=0.005)
    assert len(calls) > 1 + 2  # grouped: more calls than samples
    assert all(s < 0.005 for s in samples)  # per-call times, not per-sample
    assert synced == list(range(1, len(calls) + 1))  # every call waited for, so calls never overlap


def test_bad_counts_are_rejected():
    with pytest.raises(ValueError):
        stats.time_samples(lambda: None, lambda _: None, repeats=0)
