"""The few-image GAN blocks composed as a step uses them: DiffAugment, R1 through it, LeCam, ADA, SN state.

This is the calling pattern the GAN step follows (functional, `nnx.merge(graph, params,
stats, copy=True)` as in `jaxmed.train.gan_steps`): real and fake images are augmented
before every discriminator call, in D's loss and in G's; R1 is taken on the real images
through the same augmentation as their logits (ADA's form), with D in evaluation mode
so that the spectral norms' u is not updated inside the inner gradient (a training-mode
module raises flax's TraceContextError there), and built with conv_backend="xla" (R1
differentiates D twice; the oneDNN convolutions' gradients have no gradient of their own).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxmed.losses import discriminator_loss, generator_loss, lecam, lecam_anchors, r1_penalty
from jaxmed.models.resnet_gan import Discriminator, Generator
from jaxmed.nn.ada import real_sign_mean, update_probability
from jaxmed.nn.diffaugment import augment

# A jitted step with R1, LeCam and DiffAugment: long to compile.
pytestmark = pytest.mark.slow

R1_GAMMA = 1.0
LECAM_WEIGHT = 0.3


def losses(graphs, params, stats, real, z, labels, key, p, anchors):
    generator_graph, discriminator_graph = graphs
    generator_params, discriminator_params = params
    generator_stats, discriminator_stats = stats
    generator = nnx.merge(generator_graph, generator_params, generator_stats, copy=True)
    discriminator = nnx.merge(discriminator_graph, discriminator_params, discriminator_stats, copy=True)
    real_key, fake_key = jax.random.split(key)
    fake = generator(z, labels)
    real_logits = discriminator(augment(real, real_key, p), labels)
    fake_logits = discriminator(augment(fake, fake_key, p), labels)
    # R1 on the un-augmented reals, through their augmentation; D frozen (eval) for this pass.
    frozen = nnx.merge(discriminator_graph, discriminator_params, discriminator_stats, copy=True)
    frozen.eval()
    r1 = r1_penalty(lambda images: frozen(augment(images, real_key, p), labels), real)
    d_loss = (discriminator_loss(real_logits, fake_logits, "hinge") + R1_GAMMA / 2 * r1
              + LECAM_WEIGHT * lecam(real_logits, fake_logits, *anchors))
    g_loss = generator_loss(fake_logits, "hinge")
    new_stats = (nnx.state(generator, nnx.BatchStat), nnx.state(discriminator, nnx.BatchStat))
    return (d_loss, g_loss), (new_stats, real_logits, fake_logits, r1)


@pytest.fixture(scope="module")
def networks():
    generator = Generator(32, 1, 16, num_classes=2, base_features=8, max_features=16, rngs=nnx.Rngs(0))
    # R1 differentiates D's gradient: oneDNN's convolution gradients are not differentiable again, XLA's are.
    discriminator = Discriminator(32, 1, num_classes=2, base_features=8, max_features=16, conv_backend="xla",
                                  rngs=nnx.Rngs(1))
    return nnx.split(generator, nnx.Param, nnx.BatchStat), nnx.split(discriminator, nnx.Param, nnx.BatchStat)


def test_one_regularised_step_composes_under_jit(networks):
    (generator_graph, generator_params, generator_stats), (discriminator_graph, discriminator_params,
                                                           discriminator_stats) = networks
    graphs = (generator_graph, discriminator_graph)
    real = jax.random.uniform(jax.random.key(0), (4, 32, 32, 1), minval=-1, maxval=1)
    z = jax.random.normal(jax.random.key(1), (4, 16))
    labels = jnp.array([0, 1, 1, 0])

    @jax.jit
    def step(params, stats, p, anchors):
        def loss_pair(params):
            return losses(graphs, params, stats, real, z, labels, jax.random.key(2), p, anchors)

        (d_loss, g_loss), pullback, (new_stats, real_logits, fake_logits, r1) = jax.vjp(loss_pair, params,
                                                                                        has_aux=True)
        (d_grads,) = pullback((jnp.ones(()), jnp.zeros(())))
        new_p = update_probability(p, real_sign_mean(real_logits), real.shape[0], images_to_full=400)
        return d_loss, g_loss, d_grads, new_stats, r1, new_p, lecam_anchors(*anchors, real_logits, fake_logits)

    params = (generator_params, discriminator_params)
    stats = (generator_stats, discriminator_stats)
    anchors = (jnp.float32(0.0), jnp.float32(0.0))
    d_loss, g_loss, d_grads, new_stats, r1, new_p, new_anchors = step(params, stats, jnp.float32(0.5), anchors)

    assert np.isfinite([float(d_loss), float(g_loss)]).all()
    assert float(r1) > 0
    discriminator_grads = jax.tree.leaves(d_grads[1])
    assert all(np.isfinite(np.asarray(leaf)).all() for leaf in discriminator_grads)
    assert sum(float(jnp.sum(jnp.abs(leaf))) for leaf in discriminator_grads) > 0
    # The discriminator's spectral vectors moved (training-mode calls); p moved by 4/400 either way.
    old_u, new_u = jax.tree.leaves(discriminator_stats), jax.tree.leaves(new_stats[1])
    assert any(not np.allclose(a, b) for a, b in zip(old_u, new_u))
    assert abs(float(new_p) - 0.5) == pytest.approx(0.01)
    assert all(np.isfinite(float(anchor)) for anchor in new_anchors)
