"""Predictions averaged over flips of the input or over models, for classifiers on small data.

Test-time augmentation: a classifier trained with random flips has seen each image
flipped and unflipped, and its probabilities for the two differ by chance; their mean
is a less noisy prediction at the cost of one more forward pass per flip. Ensembling
(e.g. the models of the K cross-validation folds) averages out the variance of training
on a small data set in the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp


def predict_with_flips(predict_fn: Callable[[jax.Array], jax.Array], images_NxHxWxC: jax.typing.ArrayLike, *,
                       horizontal: bool = True, vertical: bool = False) -> jax.Array:
    """Class probabilities averaged over the identity and the chosen flips of the images.

    With both flips, the views are identity, left-right, up-down and both (a 180° turn).
    Vertical flips are off by default: anatomy has a top and bottom (a chest X-ray is never
    upside down), while left-right mirror images are plausible for most scans.

    Args:
      predict_fn: maps (N, H, W, C) images to (N, C') class probabilities (not logits:
        averaging logits is a different mean).
      images_NxHxWxC: the images.
      horizontal: add the left-right mirror (flip of the W axis).
      vertical: add the up-down mirror (flip of the H axis).

    Returns:
      (N, C') mean probabilities over the views.

    Raises:
      ValueError: if the images are not of rank 4.
    """
    images = jnp.asarray(images_NxHxWxC)
    if images.ndim != 4:
        raise ValueError(f"images must be (N, H, W, C), got shape {images.shape}")
    views = [images]
    if horizontal:
        views.append(jnp.flip(images, axis=2))
    if vertical:
        views += [jnp.flip(view, axis=1) for view in list(views)]
    return ensemble_probabilities([predict_fn(view) for view in views])


def ensemble_probabilities(probabilities: Sequence[jax.typing.ArrayLike]) -> jax.Array:
    """The mean of several (N, C) probability arrays (models, or views of the inputs).

    Args:
      probabilities: one (N, C) array per member, all of one shape.

    Returns:
      (N, C) mean probabilities (rows still sum to 1 if every member's do).

    Raises:
      ValueError: if there are no members or their shapes differ.
    """
    if not probabilities:
        raise ValueError("ensemble_probabilities needs at least one array of probabilities")
    shapes = {tuple(jnp.shape(member)) for member in probabilities}
    if len(shapes) != 1:
        raise ValueError(f"probabilities of the members differ in shape: {sorted(shapes)}")
    return jnp.mean(jnp.stack([jnp.asarray(member) for member in probabilities]), axis=0)
