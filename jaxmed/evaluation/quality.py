"""Generator quality measured during training: FID, KID and precision/recall in in-domain features.

A generative run with `eval.fid` measures its generator every `eval.every` steps against
real images, so the best step can be kept (and sampled) rather than the last one, which on
small data sets is often worse. The features come from a VAE trained once on the run's own
data in W/feature_extractor (`jaxmed.evaluation.generators.train_feature_extractor`), the
same extractor `jaxmed evaluate` uses by default; the reference images are those `jaxmed
evaluate` compares with (unseen phantoms for phantom sources), embedded once per run.
"""

from __future__ import annotations

import jax
import numpy as np

from jaxmed.config import GenerativeConfig
from jaxmed.evaluation.features import load_feature_extractor
from jaxmed.evaluation.generators import reference_images, train_feature_extractor
from jaxmed.families.base import Generator
from jaxmed.families.generative import sample_images
from jaxmed.metrics import generative
from jaxmed.training.workdir import Workdir

# Offset of the generated images' noise (and the reference subset) from the run seed.
QUALITY_SEED_OFFSET = 4_000_037
# What each measurement logs (metrics.jsonl, TensorBoard).
QUALITY_KEYS = ("fid", "kid", "precision", "recall")


class QualityProbe:
    """Measures a generator's images against fixed real features (built on first use, once per process)."""

    def __init__(self, config: GenerativeConfig, workdir: Workdir, training_images: np.ndarray):
        self.config, self.workdir, self.training_images = config, workdir, training_images
        self._extractor = None
        self._real_features = None

    def _prepare(self, progress: bool) -> None:
        folder = self.workdir.root / "feature_extractor"
        train_feature_extractor(self.config, self.training_images, folder, steps=self.config.eval.feature_steps,
                                progress=progress)
        self._extractor = load_feature_extractor(folder)
        reference, _ = reference_images(self.config)
        count = min(len(reference), self.config.eval.fid_images)
        rows = np.random.default_rng(self.config.seed + QUALITY_SEED_OFFSET).choice(len(reference), count,
                                                                                       replace=False)
        self._real_features = self._extractor(reference[np.sort(rows)])

    def measure(self, generator: Generator, state, placement=None, *, progress: bool = False) -> dict[str, float]:
        """{"fid", "kid", "precision", "recall"} of `eval.fid_images` images from `generator` at `state`."""
        if self._extractor is None:
            self._prepare(progress)
        z = jax.random.normal(jax.random.key(self.config.seed + QUALITY_SEED_OFFSET),
                              (self.config.eval.fid_images, generator.latent_dim))
        generated = sample_images(generator.generate, state, z, self.config.batch_size, placement)
        if not np.all(np.isfinite(generated)):
            return {key: float("nan") for key in QUALITY_KEYS}
        features = self._extractor(generated)
        kid, _ = generative.kernel_distance(self._real_features, features, seed=self.config.seed)
        pr = generative.precision_recall(self._real_features, features)
        return {"fid": generative.frechet_distance(self._real_features, features), "kid": kid,
                "precision": pr["precision"], "recall": pr["recall"]}
