"""Test-time flips and ensembles average the right views."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmed.inference import ensemble_probabilities, predict_with_flips


def _left_bright(images):
    """Not flip-invariant: the positive probability is the brightness of the top-left pixel, in [0, 1]."""
    positive = images[:, 0, 0, 0]
    return jnp.stack([1 - positive, positive], axis=1)


def _images():
    images = np.zeros((2, 4, 4, 1), np.float32)
    images[0, 0, 0] = 1.0  # top-left
    images[1, 0, 3] = 1.0  # top-right: top-left after a left-right flip
    images[1, 3, 3] = 0.5  # bottom-right: top-left after both flips
    return images


def test_horizontal_flip_averages_the_mirror_image():
    probabilities = predict_with_flips(_left_bright, _images())
    np.testing.assert_allclose(probabilities[:, 1], [0.5, 0.5])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)


def test_both_flips_average_four_views():
    probabilities = predict_with_flips(_left_bright, _images(), vertical=True)
    # Image 0: 1 (identity) + 0 + 0 + 0; image 1: 0 + 1 (left-right) + 0 (up-down) + 0.5 (both).
    np.testing.assert_allclose(probabilities[:, 1], [0.25, 1.5 / 4])


def test_no_flips_is_the_plain_prediction_and_works_under_jit():
    images = _images()
    np.testing.assert_allclose(predict_with_flips(_left_bright, images, horizontal=False), _left_bright(images))
    jitted = jax.jit(lambda x: predict_with_flips(_left_bright, x, vertical=True))
    np.testing.assert_allclose(jitted(images), predict_with_flips(_left_bright, images, vertical=True))


def test_ensemble_is_the_mean_and_checks_shapes():
    first, second = np.array([[0.2, 0.8]]), np.array([[0.6, 0.4]])
    np.testing.assert_allclose(ensemble_probabilities([first, second]), [[0.4, 0.6]])
    with pytest.raises(ValueError, match="at least one"):
        ensemble_probabilities([])
    with pytest.raises(ValueError, match="differ in shape"):
        ensemble_probabilities([first, np.ones((2, 2))])
