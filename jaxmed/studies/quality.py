"""The synthetic images themselves: FID, KID, precision, recall and copies against the seed's real test minority.

Measured in the features of a VAE trained once per seed on that seed's whole training
split (never its test split), as `jaxmed evaluate` measures a generator.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from jaxmed.evaluation import generators as generator_evaluation
from jaxmed.evaluation.features import load_feature_extractor


def measure_synthetic(synthetic: np.ndarray, real_minority: np.ndarray, test_minority: np.ndarray,
                      extractor_dir: Path, out_dir: Path, seed: int) -> dict[str, Any]:
    """One generator's images against the test split's minority; writes out_dir/eval.json and out_dir/plots/.

    Args:
      synthetic: the generator's images.
      real_minority: the real images it trained on (for copies).
      test_minority: the seed's real test images of the minority class (never seen by the generator).
      extractor_dir: the seed's feature extractor (`jaxmed.evaluation.generators.train_feature_extractor`).
      out_dir: where the full comparison goes.
      seed: seeds KID's subsets.

    Returns:
      The comparison's headline numbers (`jaxmed.evaluation.generators.headline`).
    """
    comparison = generator_evaluation.compare_with_real(synthetic, real_minority, test_minority,
                                                        load_feature_extractor(extractor_dir), seed=seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "eval.json").write_text(json.dumps(comparison.report, indent=2) + "\n")
    comparison.write_plots(out_dir / "plots")
    quality = generator_evaluation.headline(comparison.report)
    print("    synthetic images: " + ", ".join(f"{key} {value:.3g}" for key, value in quality.items()
                                               if value is not None), file=sys.stderr, flush=True)
    return quality


def mean_quality(per_seed: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The mean over seeds of each quality measure (measures with no value in any seed left out)."""
    means = {}
    for key in generator_evaluation.HEADLINE_KEYS:
        values = [seed[key] for seed in per_seed.values() if seed.get(key) is not None]
        if values:
            means[key] = float(np.mean(values))
    return means
