"""Pixel-value statistics of image batches: the histogram distance reported in eval.json.

Images are NHWC float arrays in [-1, 1], the model's output range, with C = 1 or 3.
Values outside [-1, 1] are clipped, and NaN/inf raise, because a diverged generator
should fail loudly rather than score a plausible number.
"""

from __future__ import annotations

import numpy as np


def checked_images(images: object, name: str = "images") -> np.ndarray:
    """Validates an NHWC image batch and returns it as float64, clipped to [-1, 1].

    Args:
        images: NHWC array (NumPy or JAX) with C = 1 or 3.
        name: What to call the batch in error messages.

    Returns:
        The batch as a float64 NumPy array, clipped to [-1, 1].

    Raises:
        ValueError: On a wrong rank, empty batch, channel count other than 1 or 3, or
            non-finite values.
    """
    arr = np.asarray(images)
    if arr.ndim != 4:
        raise ValueError(f"{name} must be NHWC (rank 4), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty, got shape {arr.shape}")
    if arr.shape[-1] not in (1, 3):
        raise ValueError(f"{name} must have 1 or 3 channels, got shape {arr.shape}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return np.clip(arr, -1.0, 1.0)


def checked_pair(real: object, generated: object) -> tuple[np.ndarray, np.ndarray]:
    """Validates two image batches that are to be compared with each other.

    Args:
        real: NHWC array of real images.
        generated: NHWC array of generated images, same C as ``real`` (N, H and W may differ).

    Returns:
        Both batches as by :func:`checked_images`.

    Raises:
        ValueError: As for :func:`checked_images`, or on mismatched channel counts.
    """
    r = checked_images(real, "real")
    g = checked_images(generated, "generated")
    if r.shape[-1] != g.shape[-1]:
        raise ValueError(
            f"real and generated have different channel counts: {r.shape[-1]} vs {g.shape[-1]}"
        )
    return r, g


def pixel_histograms(
    real: np.ndarray, generated: np.ndarray, bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Density histograms of both batches over ``bins`` equal bins of [-1, 1].

    Args:
        real: Real images, already through :func:`checked_pair`.
        generated: Generated images, likewise.
        bins: Number of bins, >= 1.

    Returns:
        ``(density_real, density_generated, edges)``.

    Raises:
        ValueError: If ``bins`` is not a positive integer.
    """
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    edges = np.linspace(-1.0, 1.0, bins + 1)
    h_real, _ = np.histogram(real, bins=edges, density=True)
    h_gen, _ = np.histogram(generated, bins=edges, density=True)
    return h_real, h_gen, edges


def wasserstein_from_densities(h_real: np.ndarray, h_gen: np.ndarray, edges: np.ndarray) -> float:
    """The 1-D Wasserstein distance between two piecewise-constant densities on the same bins.

    Args:
        h_real: Density of the real pixels per bin.
        h_gen: Density of the generated pixels per bin.
        edges: The ``len(h_real) + 1`` bin edges.

    Returns:
        ``sum |CDF_real - CDF_gen| * bin_width`` over the bins.
    """
    # In 1-D, W1 = integral |F_real - F_gen| dx; with piecewise-constant
    # densities we evaluate the CDFs at the bin edges (a Riemann sum).
    widths = np.diff(edges)
    cdf_real = np.cumsum(h_real * widths)
    cdf_gen = np.cumsum(h_gen * widths)
    return float(np.sum(np.abs(cdf_real - cdf_gen) * widths))


def pixel_histogram_distance(real: np.ndarray, generated: np.ndarray, *, bins: int = 64) -> float:
    """1-D Wasserstein (earth mover's) distance between pixel-value histograms.

    All pixels of each batch (all channels pooled, clipped to [-1, 1]) are
    binned into ``bins`` equal bins over [-1, 1]; the distance is
    ``sum_i |CDF_real(e_i) - CDF_gen(e_i)| * bin_width``, i.e. mass sits at bin
    centres. It is 0 for identical distributions, symmetric, at most
    ``2 - 2/bins`` (all mass moved from -1 to 1), and grows with how far pixel mass must
    move (unlike total variation, it keeps increasing as two distributions
    drift further apart). It is the number
    `jaxmed.viz.generation.plot_pixel_distribution` prints on its figure.

    Args:
        real: NHWC array of real images in [-1, 1].
        generated: NHWC array of generated images in [-1, 1], same C as ``real``
            (N, H and W may differ).
        bins: Number of histogram bins.

    Returns:
        The distance, in pixel-value units.

    Raises:
        ValueError: On a wrong rank, empty batch, mismatched channel counts,
            non-finite values or ``bins < 1``.
    """
    r, g = checked_pair(real, generated)
    return wasserstein_from_densities(*pixel_histograms(r, g, bins))
