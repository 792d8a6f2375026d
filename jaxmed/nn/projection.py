"""The projection discriminator's head (Miyato & Koyama 2018): logit = w.h + b + <embed(y), h>.

A conditional discriminator that concatenates the label to its input learns the
class poorly; the projection head instead adds the inner product of the pooled
features h with a learned class embedding, which is the form the optimal
discriminator takes under a log-linear class model, and is what SNGAN and BigGAN use.
Both the linear layer and the embedding are spectrally normalised by default (as in
those models), the embedding as a bias-free Linear applied to one-hot labels so that
`jaxmed.nn.spectral_norm.SpectralNorm` wraps it unchanged. With `num_classes=0` the
head is the unconditional linear layer alone. `strength` scales the class term (0: the
head is unconditional), for conditioning phased in during training.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmed.errors import UsageError
from jaxmed.nn.spectral_norm import SpectralNorm

WEIGHT_INIT = nnx.initializers.xavier_uniform()


def _maybe_spectral(layer: nnx.Module, spectral_norm: bool, rngs: nnx.Rngs) -> nnx.Module:
    return SpectralNorm(layer, rngs=rngs) if spectral_norm else layer


class ProjectionHead(nnx.Module):
    """Features (B, F) and optional labels (B,) -> one logit per row, float32 (B,).

    Args:
      features: F, the pooled feature size.
      num_classes: classes of the labels (0: unconditional, labels must be None).
      spectral_norm: wrap both layers in `SpectralNorm`.
      dtype: computation dtype (None: float32).
      rngs: initialisation keys.
    """

    def __init__(self, features: int, num_classes: int = 0, *, spectral_norm: bool = True, dtype=None,
                 rngs: nnx.Rngs):
        self.num_classes = num_classes
        self.linear = _maybe_spectral(nnx.Linear(features, 1, kernel_init=WEIGHT_INIT, dtype=dtype, rngs=rngs),
                                      spectral_norm, rngs)
        self.embed = nnx.data(None if num_classes == 0 else _maybe_spectral(
            nnx.Linear(num_classes, features, use_bias=False, kernel_init=WEIGHT_INIT, dtype=dtype, rngs=rngs),
            spectral_norm, rngs))

    def __call__(self, features_BxF: jax.Array, labels_B: jax.Array | None = None,
                 strength: jax.Array | float = 1.0) -> jax.Array:
        check_labels(self.num_classes, labels_B)
        logits_B = self.linear(features_BxF)[:, 0].astype(jnp.float32)
        if self.embed is not None:
            class_vectors = self.embed(jax.nn.one_hot(labels_B, self.num_classes, dtype=features_BxF.dtype))
            logits_B = logits_B + strength * jnp.sum((class_vectors * features_BxF).astype(jnp.float32), axis=-1)
        return logits_B


def check_labels(num_classes: int, labels_B: jax.Array | None) -> None:
    """Raises UsageError unless labels are given exactly when the model is conditional (num_classes > 0)."""
    if num_classes > 0 and labels_B is None:
        raise UsageError(f"this model is conditional on {num_classes} classes: pass labels")
    if num_classes == 0 and labels_B is not None:
        raise UsageError("this model is unconditional (num_classes=0): labels must be None")
