"""Paired differences over repeated splits, their Student-t intervals, the detectable effect, and verdicts.

Every arm is trained on the same split as the baseline arm within a seed, so the study
compares them seed by seed: the per-seed differences d_1..d_n have mean m and standard
deviation s (ddof 1); the 95% interval is m ± t_{0.975, n-1} s / sqrt(n). The smallest
difference a paired t-test of this size would detect with 80% power at two-sided
alpha 0.05 is (t_{0.975, n-1} + t_{0.80, n-1}) s / sqrt(n): an interval that includes
zero then rules out effects larger than that, not effects in general.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 0.05
POWER = 0.80


def paired_difference(deltas: Sequence[float | None]) -> dict:
    """Mean, SD, 95% interval and the difference detectable at 80% power of per-seed paired differences.

    Args:
      deltas: arm minus baseline, one per seed; None or non-finite values (a metric that could
        not be computed) are left out.

    Returns:
      {"mean", "sd", "n", "low", "high", "detectable"}: None where n is too small (no mean
      without values, no SD, interval or detectable difference with fewer than 2).
    """
    values = np.asarray([d for d in deltas if d is not None and np.isfinite(d)], np.float64)
    n = len(values)
    result = {"mean": float(values.mean()) if n else None, "sd": None, "n": n, "low": None, "high": None,
              "detectable": None}
    if n < 2:
        return result
    sd = float(values.std(ddof=1))
    standard_error = sd / np.sqrt(n)
    half = float(stats.t.ppf(1 - ALPHA / 2, n - 1) * standard_error)
    result.update(sd=sd, low=result["mean"] - half, high=result["mean"] + half,
                  detectable=detectable_difference(sd, n))
    return result


def detectable_difference(sd: float, n: int) -> float | None:
    """The smallest true mean difference a two-sided paired t-test (alpha 0.05) detects with 80% power.

    Returns:
      (t_{0.975, n-1} + t_{0.80, n-1}) * sd / sqrt(n), or None with fewer than 2 pairs.
    """
    if n < 2:
        return None
    return float((stats.t.ppf(1 - ALPHA / 2, n - 1) + stats.t.ppf(POWER, n - 1)) * sd / np.sqrt(n))


def verdict(difference: dict, metric: str = "AUC") -> str:
    """Plain words for one paired difference: helped, hurt, or the largest effect it does not rule out.

    Args:
      difference: a `paired_difference` result.
      metric: the metric's name in the sentence.
    """
    if difference["n"] < 2:
        return f"cannot be judged: {difference['n']} paired seed(s), at least 2 are needed"
    mean, low, high = difference["mean"], difference["low"], difference["high"]
    interval = f"(95% CI {low:+.3f}, {high:+.3f})"
    if low > 0:
        return f"helped: {mean:+.3f} {metric} {interval}"
    if high < 0:
        return f"hurt: {mean:+.3f} {metric} {interval}"
    return (f"no detectable effect larger than {difference['detectable']:.3f} {metric} "
            f"(mean {mean:+.3f}, 95% CI {low:+.3f}, {high:+.3f})")


def summarize_values(values: Sequence[float | None]) -> dict:
    """Mean and SD (ddof 1) of one arm's per-seed values, with the values; None values are left out."""
    finite = [float(v) for v in values if v is not None and np.isfinite(v)]
    return {"mean": float(np.mean(finite)) if finite else None,
            "std": float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0, "values": list(values)}
