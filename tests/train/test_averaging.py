"""Moving averages of weights: the shared update rule, and the classifier's averaged weights."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxmed.families.classifier import FAMILY as CLASSIFIER
from jaxmed.families.classifier import AveragedClassifierState, ClassifierConfig
from jaxmed.training import averaging, runner


def test_decay_warms_up_to_its_target():
    np.testing.assert_allclose(averaging.decay_at(jnp.asarray(1.0), 0.999), 2 / 11)
    np.testing.assert_allclose(averaging.decay_at(jnp.asarray(10_000.0), 0.999), 0.999)


def test_update_is_the_exponential_moving_average():
    average = {"w": jnp.zeros(3)}
    for step in range(1, 201):
        average = averaging.update(average, {"w": jnp.full(3, float(step))}, jnp.asarray(step), 0.9)
    # With decay 0.9 the average of a ramp trails it by about decay / (1 - decay) = 9 steps.
    np.testing.assert_allclose(average["w"], 200 - 9, atol=0.01)


def test_the_classifier_validates_keeps_and_tests_its_averaged_weights(tmp_path):
    config = ClassifierConfig.tiny(epochs=1, ema_decay=0.9)
    result = runner.run(CLASSIFIER, config, tmp_path, progress=False)
    state = result.state
    assert isinstance(state, AveragedClassifierState)
    leaves = jax.tree.leaves
    # The only epoch is the best one: the kept weights are the average, not the last step's weights.
    assert all(np.array_equal(best, average) for best, average in zip(leaves(state.best_params),
                                                                        leaves(state.ema_params)))
    assert not all(np.array_equal(best, live) for best, live in zip(leaves(state.best_params), leaves(state.params)))
