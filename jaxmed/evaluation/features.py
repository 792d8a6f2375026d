"""In-domain feature extractors: images -> vectors, from a model trained on the medical images themselves.

FID and its relatives are usually computed on ImageNet Inception features, which know
nothing of MRI and cannot be downloaded here anyway. jaxmed embeds images with a model
trained on the real images of the domain, restored from its workdir:

* a **VAE** (`jaxmed train vae`): the encoder's posterior mean, `latent_dim` numbers. It
  needs no labels, so it works for any data set, and it is what `jaxmed evaluate` trains
  when given no extractor. Its features describe what a VAE reconstructs (anatomy,
  contrast, layout) more than fine texture.
* a **classifier** (`jaxmed train classifier`): the input of its last dense layer
  (`SeedCNN.features`, `ResNet18.features`) with the best-validation weights. Its features
  are only as good as the classifier: one near chance level (hard labels, too little
  data) embeds little.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from jaxmed.errors import CheckpointError
from jaxmed.training import sharding
from jaxmed.training.restore import restore_run

WANTED = "a jaxmed VAE or finished classifier workdir (a feature extractor)"


@dataclasses.dataclass(frozen=True)
class FeatureExtractor:
    """A restored model that maps images to feature vectors.

    Attributes:
      workdir: where it was restored from.
      model: its config's model name ("vae", "seed_cnn", "resnet18").
      image_size, channels: the images it takes.
      about: what eval.json records of it (its step; a classifier's test accuracy).
      embed: a batch of images (B, H, W, C) -> (B, F) features, jitted.
    """

    workdir: Path
    model: str
    image_size: int
    channels: int
    about: dict
    embed: Callable[[np.ndarray], jax.Array]

    def __call__(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """(N, F) float32 features of images (N, H, W, C) in [-1, 1], in fixed-size batches (one compilation)."""
        expected = (self.image_size, self.image_size, self.channels)
        if images.ndim != 4 or images.shape[1:] != expected:
            raise ValueError(f"the feature extractor in {self.workdir} takes images of shape (N, {expected[0]}, "
                             f"{expected[1]}, {expected[2]}), got {images.shape}")
        return sharding.map_in_fixed_batches(self.embed, images, batch_size)


def load_feature_extractor(workdir: Path | str) -> FeatureExtractor:
    """The feature extractor of a workdir whose family embeds images (see the module docstring).

    Raises:
      CheckpointError: the folder holds no such run, or no checkpoint restores.
    """
    run = restore_run(workdir, WANTED)
    embed = run.family.feature_embedding(run.config, run.definition, run.state)
    if embed is None:
        raise CheckpointError(f"{run.workdir.config}: a {run.config.model!r} run; a feature extractor is "
                              f"{WANTED.removesuffix(' (a feature extractor)')}")
    about = {"step": int(run.state.step)}
    if run.workdir.eval.is_file():
        about["test_accuracy"] = json.loads(run.workdir.eval.read_text()).get("accuracy")
    return FeatureExtractor(run.workdir.root, run.config.model, run.config.image_size, run.config.channels, about,
                            embed)
