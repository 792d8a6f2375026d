"""Mixed precision: precision=bf16 computes in bfloat16, keeps parameters, optimizer states and losses float32."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend import core as jax_core

from jaxmed.families.base import Task
from jaxmed.families.classifier import FAMILY as CLASSIFIER
from jaxmed.families.classifier import ClassifierConfig
from jaxmed.families.gan import FAMILY as GAN
from jaxmed.families.gan import GanConfig, gan_train_step

FP32 = GanConfig.tiny()
BF16 = GanConfig.tiny(precision="bf16")
STEPS = 3


def real_batch(index):
    return jax.random.uniform(jax.random.key(index), (FP32.batch_size, 32, 32, 1), minval=-1, maxval=1)


def float_dtypes(tree):
    return {leaf.dtype for leaf in jax.tree.leaves(tree) if jnp.issubdtype(leaf.dtype, jnp.floating)}


def operand_dtypes(jaxpr, wanted) -> set:
    """Operand dtypes of the equations `wanted(eqn)` selects in `jaxpr`, including nested ones."""
    found = set()
    for eqn in jaxpr.eqns:
        if wanted(eqn):
            found.update(var.aval.dtype for var in eqn.invars)
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                if isinstance(sub, jax_core.ClosedJaxpr):
                    found |= operand_dtypes(sub.jaxpr, wanted)
                elif isinstance(sub, jax_core.Jaxpr):
                    found |= operand_dtypes(sub, wanted)
    return found


def heavy_operand_dtypes(jaxpr) -> set:
    """Operand dtypes of every XLA convolution and matrix product in `jaxpr`, including nested ones."""
    return operand_dtypes(jaxpr, lambda eqn: eqn.primitive.name in ("conv_general_dilated", "dot_general"))


def onednn_conv_operand_dtypes(jaxpr) -> set:
    """Operand dtypes of every oneDNN convolution custom call in `jaxpr`, including nested ones."""
    return operand_dtypes(jaxpr, lambda eqn: eqn.primitive.name == "ffi_call"
                          and "conv2d" in str(eqn.params.get("target_name", "")))


def gan_definition(config):
    return GAN.definition(config, Task(class_names=(), total_steps=config.steps))


def train(config):
    definition = gan_definition(config)
    state = GAN.init_state(config, definition, jax.random.key(config.seed))
    step = GAN.make_train_step(definition)
    history = []
    for index in range(STEPS):
        state, metrics = step(state, {"image": real_batch(index)})
        history.append(metrics)
    return state, history


def gan_step_jaxpr(config):
    definition = gan_definition(config)
    state = jax.eval_shape(lambda key: GAN.init_state(config, definition, key), jax.random.key(0))
    return jax.make_jaxpr(lambda s, x: gan_train_step(definition, s, x))(state, real_batch(0)).jaxpr


def test_bf16_gan_step_runs_its_convolutions_and_matmuls_in_bfloat16():
    for config, expected in ((BF16, {jnp.dtype(jnp.bfloat16)}), (FP32, {jnp.dtype(jnp.float32)})):
        # Forward and backward: every convolution and matmul, including the weight gradients.
        jaxpr = gan_step_jaxpr(dataclasses.replace(config, conv_backend="xla"))
        assert heavy_operand_dtypes(jaxpr) == expected, config.precision


@pytest.mark.onednn
def test_bf16_gan_step_on_onednn_runs_convolutions_in_bfloat16_and_dense_layers_in_float32():
    """XLA:CPU would widen a bfloat16 matmul to float32 anyway (`jaxmed.nn.dense_dtype`); oneDNN's convolutions
    take the bfloat16 operands."""
    jaxpr = gan_step_jaxpr(dataclasses.replace(BF16, conv_backend="onednn"))
    assert heavy_operand_dtypes(jaxpr) == {jnp.dtype(jnp.float32)}
    assert jnp.dtype(jnp.bfloat16) in onednn_conv_operand_dtypes(jaxpr)


@pytest.mark.slow
def test_bf16_gan_keeps_float32_state_and_losses_and_trains_close_to_fp32():
    fp32_state, fp32_history = train(FP32)
    bf16_state, bf16_history = train(BF16)
    # Parameters, BatchNorm statistics, EMA and both Adam states stay float32.
    assert float_dtypes(bf16_state) == {jnp.dtype(jnp.float32)}
    for fp32_metrics, bf16_metrics in zip(fp32_history, bf16_history):
        for name, value in bf16_metrics.items():
            assert value.dtype == jnp.float32 and np.isfinite(value), name
            # bf16 keeps 8 bits of mantissa: over a few steps the losses stay within a few percent.
            np.testing.assert_allclose(value, fp32_metrics[name], rtol=0.05, atol=0.02, err_msg=name)
    # ... but they are not the float32 numbers: the computation really ran in bfloat16.
    assert any(float(bf16[name]) != float(fp32[name]) for bf16, fp32 in zip(bf16_history, fp32_history)
               for name in bf16)
    moved = [np.max(np.abs(np.asarray(a) - np.asarray(b))) for a, b in
             zip(jax.tree.leaves(bf16_state.generator_params), jax.tree.leaves(GAN.init_state(
                 BF16, gan_definition(BF16), jax.random.key(BF16.seed)).generator_params))]
    assert min(moved) > 0  # every parameter tensor was updated


@pytest.mark.slow
def test_bf16_classifier_keeps_float32_parameters_and_loss():
    config = ClassifierConfig.tiny(precision="bf16", augment=False)  # the step sees `images` as they are
    definition = CLASSIFIER.definition(config, Task(class_names=("0", "1"), total_steps=10), np.ones(2))
    state = CLASSIFIER.init_state(config, definition, jax.random.key(0))
    images = jax.random.uniform(jax.random.key(1), (config.batch_size, 32, 32, 1), minval=-1, maxval=1)
    labels = jnp.arange(config.batch_size) % 2
    new_state, metrics = CLASSIFIER.make_train_step(definition)(state, {"image": images, "label": labels})
    assert float_dtypes((new_state.params, new_state.opt_state, new_state.model_state)) == {jnp.dtype(jnp.float32)}
    assert metrics["loss"].dtype == jnp.float32 and np.isfinite(metrics["loss"])
    # Two balanced classes at initialisation: the cross-entropy is near log 2.
    np.testing.assert_allclose(metrics["loss"], np.log(2), atol=0.3)


@pytest.mark.onednn
def test_bf16_seed_cnn_step_on_onednn_keeps_dense_layers_float32_and_learns():
    """On oneDNN's backend the dense layers of a bfloat16 classifier compute in float32 (XLA:CPU would widen a
    bfloat16 matmul anyway); parameters and Adam's moments stay float32 and a few steps fit a fixed batch."""
    config = ClassifierConfig.tiny(model="seed_cnn", precision="bf16", augment=False, conv_backend="onednn",
                                   dropout_rate=0.0)
    definition = CLASSIFIER.definition(config, Task(class_names=("0", "1"), total_steps=10), np.ones(2))
    state = CLASSIFIER.init_state(config, definition, jax.random.key(0))
    batch = {"image": jax.random.uniform(jax.random.key(1), (config.batch_size, 32, 32, 1), minval=-1, maxval=1),
             "label": jnp.arange(config.batch_size) % 2}
    step = CLASSIFIER.make_train_step(definition)

    jaxpr = jax.make_jaxpr(lambda s, b: step(s, b))(state, batch).jaxpr
    assert heavy_operand_dtypes(jaxpr) == {jnp.dtype(jnp.float32)}  # the convolutions are oneDNN custom calls
    losses = []
    for _ in range(4):
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    assert float_dtypes((state.params, state.opt_state)) == {jnp.dtype(jnp.float32)}
    assert losses[-1] < 0.5 * losses[0], losses
