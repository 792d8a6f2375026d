"""Generative metrics against closed forms, brute force and constructed sets with known answers."""

import numpy as np
import pytest
import scipy.linalg

from jaxmed.metrics import generative

RNG = np.random.default_rng(0)


def test_frechet_distance_of_diagonal_gaussians_is_the_closed_form():
    # For diagonal covariances the distance is |mu1 - mu2|^2 + sum (s1 - s2)^2; large
    # samples of known Gaussians get close to it.
    mean_1, mean_2 = np.array([0.0, 1.0, -2.0]), np.array([0.5, 1.0, 0.0])
    std_1, std_2 = np.array([1.0, 2.0, 0.5]), np.array([1.5, 1.0, 0.5])
    a = mean_1 + std_1 * RNG.standard_normal((200_000, 3))
    b = mean_2 + std_2 * RNG.standard_normal((200_000, 3))
    expected = np.sum((mean_1 - mean_2) ** 2) + np.sum((std_1 - std_2) ** 2)
    assert generative.frechet_distance(a, b) == pytest.approx(expected, rel=0.02)


def test_frechet_distance_equals_the_sqrtm_formula_on_correlated_features():
    a = RNG.standard_normal((300, 8)) @ RNG.standard_normal((8, 8))
    b = RNG.standard_normal((250, 8)) @ RNG.standard_normal((8, 8)) + 0.3
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = (np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(cov_a) + np.trace(cov_b)
                - 2 * np.trace(scipy.linalg.sqrtm(cov_a @ cov_b).real))
    assert generative.frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    assert generative.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_kernel_distance_matches_brute_force_and_separates_shifted_sets():
    a, b = RNG.standard_normal((12, 3)), RNG.standard_normal((12, 3)) + 1.0

    def k(x, y):
        return (x @ y / 3 + 1) ** 3

    brute = (sum(k(a[i], a[j]) for i in range(12) for j in range(12) if i != j) / 132
             + sum(k(b[i], b[j]) for i in range(12) for j in range(12) if i != j) / 132
             - 2 * sum(k(a[i], b[j]) for i in range(12) for j in range(12)) / 144)
    # One subset of the whole sets is the plain unbiased estimate.
    mean, std = generative.kernel_distance(a, b, subsets=1, subset_size=12)
    assert mean == pytest.approx(brute, rel=1e-9) and std == 0.0

    same = generative.kernel_distance(RNG.standard_normal((400, 4)), RNG.standard_normal((400, 4)), subsets=20,
                                      subset_size=200)
    shifted = generative.kernel_distance(RNG.standard_normal((400, 4)), RNG.standard_normal((400, 4)) + 0.5,
                                         subsets=20, subset_size=200)
    assert abs(same[0]) < 3 * same[1] + 1e-3
    assert shifted[0] > 10 * same[1] + 0.05


def test_pairwise_distances_and_nearest_neighbours_are_exact():
    a, b = RNG.standard_normal((7, 5)), RNG.standard_normal((9, 5))
    brute = np.linalg.norm(a[:, None] - b[None], axis=-1)
    np.testing.assert_allclose(generative.pairwise_distances(a, b), brute, rtol=1e-5, atol=1e-5)
    index, distance = generative.nearest_neighbours(a, b)
    np.testing.assert_array_equal(index, brute.argmin(1))
    np.testing.assert_allclose(distance, brute.min(1), rtol=1e-5)


def test_precision_recall_of_identical_disjoint_and_collapsed_sets():
    real = RNG.standard_normal((300, 2))
    same = generative.precision_recall(real, real)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    # Every point lies in its own ball and about k others' on average: density near 1.
    assert 0.8 < same["density"] < 1.6

    far = generative.precision_recall(real, real + 100.0)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}

    # A generator that only reproduces one corner of the data: faithful, not diverse.
    corner = real[(real[:, 0] > 0.5) & (real[:, 1] > 0.5)]
    collapsed = generative.precision_recall(real, corner + 0.01 * RNG.standard_normal(corner.shape))
    assert collapsed["precision"] > 0.9
    assert collapsed["recall"] < 0.35 and collapsed["coverage"] < 0.35


def test_diversity_is_the_mean_distance_between_different_rows():
    points = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 4.0]])
    assert generative.diversity(points) == pytest.approx((5 + 4 + 3) / 3, rel=1e-6)
    assert generative.diversity(np.repeat(points[:1], 5, axis=0)) == 0.0


def test_data_copying_z_is_negative_for_copies_and_positive_for_a_generator_far_from_the_data():
    train, held_out = RNG.standard_normal((500, 4)), RNG.standard_normal((300, 4))
    copies = train[:300] + 1e-3 * RNG.standard_normal((300, 4))
    fresh = RNG.standard_normal((300, 4))
    off = RNG.standard_normal((300, 4)) * 3.0
    copied, honest, missing = (generative.data_copying_test(train, held_out, generated)
                               for generated in (copies, fresh, off))
    assert copied["z"] < -10 and copied["p_value"] < 1e-10
    assert abs(honest["z"]) < 3
    assert missing["z"] > 5
    assert copied["median_distance_generated"] < copied["median_distance_held_out"]


@pytest.mark.parametrize("bad, message", [(np.zeros((1, 3)), "N >= 2"), (np.zeros(5), "N >= 2"),
                                          (np.full((3, 2), np.nan), "non-finite")])
def test_bad_feature_arrays_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        generative.frechet_distance(bad, np.zeros((3, 3)))


def test_sets_of_different_widths_are_refused():
    with pytest.raises(ValueError, match="differ in width"):
        generative.precision_recall(np.zeros((10, 3)), np.zeros((10, 4)))


def test_kernel_distance_subsets_default_to_half_the_smaller_set_so_they_vary():
    a, b = RNG.standard_normal((40, 3)), RNG.standard_normal((30, 3)) + 0.2
    _, spread = generative.kernel_distance(a, b, subsets=10)
    assert spread > 0
    with pytest.raises(ValueError, match="subset_size <= 30"):
        generative.kernel_distance(a, b, subset_size=31)


def test_k_means_finds_separated_clusters():
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = np.concatenate([centre + 0.1 * RNG.standard_normal((50, 2)) for centre in centres])
    found = generative.k_means(points, 3, seed=1)
    np.testing.assert_allclose(sorted(map(tuple, np.round(found))), sorted(map(tuple, centres)), atol=0.5)


def test_data_copying_cells_find_copying_confined_to_one_region():
    # Two regions. In A the generator copies training samples; in B it spreads too wide (a
    # generator that misses the data). Globally the two pull Z in opposite directions; the
    # cells see each.
    def region(centre, n, spread=1.0):
        return centre + spread * RNG.standard_normal((n, 4))

    a, b = np.zeros(4), np.full(4, 20.0)
    train = np.concatenate([region(a, 100), region(b, 100)])
    held_out = np.concatenate([region(a, 60), region(b, 60)])
    generated = np.concatenate([train[:60] + 1e-3 * RNG.standard_normal((60, 4)), region(b, 60, spread=2.5)])
    result = generative.data_copying_test(train, held_out, generated, cells=2)
    assert result["cells"] == 2 and result["cells_used"] == 2
    assert min(result["cell_z"]) < -5 and max(result["cell_z"]) > 3
    assert abs(result["c_t"]) < abs(min(result["cell_z"]))

    honest = generative.data_copying_test(train, held_out, np.concatenate([region(a, 60), region(b, 60)]), cells=2)
    assert all(abs(z) < 3 for z in honest["cell_z"]) and abs(honest["c_t"]) < 3
    # Too few training samples for two cells by default: the cell form is left out.
    assert generative.data_copying_test(train[:60], held_out, generated)["c_t"] is None
