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
import functools
import json
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np
from flax import nnx
from jax.sharding import SingleDeviceSharding

from jaxmed.errors import CheckpointError
from jaxmed.train import config as config_lib
from jaxmed.train import sharding
from jaxmed.train.checkpoint import Checkpoints, abstract_like
from jaxmed.train.classifier_steps import classifier_definition, init_classifier_state
from jaxmed.train.config import ClassifierConfig, VaeConfig
from jaxmed.train.sampling import restore_from_workdir
from jaxmed.train.vae_state import vae_definition
from jaxmed.train.workdir import Workdir


@functools.partial(jax.jit, static_argnums=0)
def _classifier_features(model_def: nnx.GraphDef, params: nnx.State, model_state: nnx.State, images_BxHxWxC):
    model = nnx.merge(model_def, params, model_state, copy=True)
    model.eval()
    return model.features(images_BxHxWxC).astype(np.float32)


@functools.partial(jax.jit, static_argnums=0)
def _posterior_means(model_def: nnx.GraphDef, params: nnx.State, stats: nnx.State, images_BxHxWxC):
    model = nnx.merge(model_def, params, stats, copy=True)
    model.eval()
    mean_BxZ, _ = model.encoder(images_BxHxWxC)
    return mean_BxZ.astype(np.float32)


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
    """The feature extractor of a VAE workdir or of a finished classifier workdir (see the module docstring).

    Raises:
      CheckpointError: the folder is neither, or no checkpoint restores.
    """
    paths = Workdir(Path(workdir))
    model_name = paths.saved_model("a jaxmed VAE or classifier workdir (a feature extractor)")
    if model_name in VaeConfig.MODELS:
        return _vae_extractor(paths)
    if model_name in ClassifierConfig.MODELS:
        return _classifier_extractor(paths)
    raise CheckpointError(f"{paths.config}: a {model_name!r} run; a feature extractor is a jaxmed VAE or classifier "
                          f"workdir")


def _vae_extractor(paths: Workdir) -> FeatureExtractor:
    config, _, state = restore_from_workdir(paths.root)
    embed = functools.partial(_posterior_means, vae_definition(config).model, state.params, state.stats)
    return FeatureExtractor(paths.root, config.model, config.image_size, config.channels,
                            {"step": int(state.step)}, embed)


def _classifier_extractor(paths: Workdir) -> FeatureExtractor:
    if not paths.eval.is_file():
        raise CheckpointError(f"{paths.eval}: missing; a classifier is a feature extractor once its training finished")
    try:
        report = json.loads(paths.eval.read_text())
        class_names, accuracy = report["class_names"], report.get("accuracy")
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
        raise CheckpointError(f"{paths.eval}: unreadable ({error!r})") from None
    config = config_lib.load(ClassifierConfig, paths.config)
    # The schedule's length does not change the state's shapes: 1 step is as good as any.
    definition = classifier_definition(config, len(class_names), total_steps=1)
    with Checkpoints(paths.checkpoints, keep=config.checkpoint.keep) as checkpoints:
        abstract = jax.eval_shape(lambda key: init_classifier_state(config, definition, key), jax.random.key(0))
        state, _, _ = checkpoints.restore(abstract_like(abstract, SingleDeviceSharding(jax.devices()[0])))
    embed = functools.partial(_classifier_features, definition.model, state.best_params, state.best_model_state)
    return FeatureExtractor(paths.root, config.model, config.image_size, config.channels,
                            {"step": int(state.step), "test_accuracy": accuracy}, embed)
