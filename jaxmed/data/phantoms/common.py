"""What the brain and lung phantoms share: argument checks, chunked rendering, noise fields, windows.

The helpers here are the building blocks of `brain_mri` and `lung_ct`; a trailing
underscore (``ramp_``, ``lerp_``) marks a function that works in place, because
rendering is dozens of full-image passes and temporaries would dominate the time.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import os
import threading
from collections.abc import Callable, Iterator

import numpy as np

F32 = np.float32


@dataclasses.dataclass(frozen=True)
class PhantomSet:
    """A labelled set of phantom images.

    Attributes:
        images: (N, H, W) float32 in [0, 1].
        labels: (N,) int32 class indices into ``class_names``.
        masks: (N, H, W) bool lesion masks, all False for the negative class.
        class_names: Names of the classes, negative class first.
    """

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    class_names: tuple[str, ...]


def _is_int(x) -> bool:
    """True for Python and numpy integers, but not for bools."""
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def validate_arguments(n, fraction, fraction_name: str, size, difficulty, seed) -> None:
    """Raise ValueError with a one-line message for the first bad argument."""
    if not _is_int(n) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    try:
        fraction_ok = 0.0 <= float(fraction) <= 1.0  # False for NaN
    except (TypeError, ValueError):
        fraction_ok = False
    if not fraction_ok:
        raise ValueError(f"{fraction_name} must be a number in [0, 1], got {fraction!r}")
    if not _is_int(size) or not 16 <= size <= 512:
        raise ValueError(f"size must be an integer in [16, 512], got {size!r}")
    try:
        difficulty_ok = 0.0 < float(difficulty) < float("inf")  # False for NaN
    except (TypeError, ValueError):
        difficulty_ok = False
    if not difficulty_ok:
        raise ValueError(f"difficulty must be a finite number > 0, got {difficulty!r}")
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def draw_labels(n: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Exactly ``round(n * fraction)`` positive labels (1) at seeded random positions, the rest 0."""
    n_pos = int(round(n * fraction))
    labels = np.zeros(n, np.int32)
    labels[rng.permutation(n)[:n_pos]] = 1
    return labels


# Pixels rendered per chunk. Small chunks keep the working set of a few dozen
# temporaries inside the CPU caches, which is several times faster than large ones.
_CHUNK_PIXELS = 2**19
# Chunks are rendered on up to this many threads.
_MAX_THREADS = 4


class Scratch:
    """Float32 work buffers reused from chunk to chunk.

    Rendering is dozens of full-image passes; allocating fresh temporaries for each
    chunk makes the OS fault in new pages every time, which costs more than the
    arithmetic. Buffers are handed out by name, so one name must not be live twice.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def __call__(self, name: str, shape: tuple[int, ...], dtype=F32) -> np.ndarray:
        n = int(np.prod(shape))
        buf = self._buffers.get(name)
        if buf is None or buf.size < n or buf.dtype != dtype:
            buf = self._buffers[name] = np.empty(n, dtype)
        return buf[:n].reshape(shape)


def generate(
    n: int, fraction: float, seed: int,
    render: Callable[[np.random.Generator, np.ndarray, Scratch], tuple[np.ndarray, np.ndarray]],
    class_names: tuple[str, ...], size: int,
) -> PhantomSet:
    """Draw labels, then render chunk by chunk, each chunk from its own child seed.

    The chunk size depends only on `size`, and each chunk writes its own slice, so the
    output is bit-identical however the chunks are scheduled; they are spread over a
    few threads because numpy releases the GIL inside its array loops.
    """
    chunk = int(np.clip(_CHUNK_PIXELS // (size * size), 1, 256))
    label_seq, *chunk_seqs = np.random.SeedSequence(seed).spawn(1 + -(-n // chunk))
    labels = draw_labels(n, fraction, np.random.default_rng(label_seq))
    images = np.empty((n, size, size), F32)
    masks = np.empty((n, size, size), bool)
    local = threading.local()

    def work(i: int) -> None:
        if not hasattr(local, "scratch"):
            local.scratch = Scratch()
        sl = slice(i * chunk, min(n, (i + 1) * chunk))
        images[sl], masks[sl] = render(np.random.default_rng(chunk_seqs[i]), labels[sl], local.scratch)

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = min(_MAX_THREADS, len(chunk_seqs), cpus)
    if workers <= 1:
        for i in range(len(chunk_seqs)):
            work(i)
    else:
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            for fut in [pool.submit(work, i) for i in range(len(chunk_seqs))]:
                fut.result()
    return PhantomSet(images=images, labels=labels, masks=masks, class_names=class_names)


@functools.lru_cache(maxsize=64)
def _field_basis(size: int, nodes: int) -> np.ndarray:
    """Gaussian interpolation matrix (size, nodes + 4) with unit-norm rows.

    A field K @ W @ K.T with W white noise is smooth with correlation length ~1/nodes
    of the image and has exactly unit variance at every pixel because the rows are
    normalised; two extra nodes each side keep it stationary up to the border.
    """
    spacing = 1.0 / nodes
    pos = (np.arange(size) + 0.5) / size
    centres = (np.arange(-2, nodes + 2) + 0.5) * spacing
    k = np.exp(-0.5 * ((pos[:, None] - centres[None, :]) / spacing) ** 2)
    k /= np.sqrt((k**2).sum(axis=1, keepdims=True))
    return k.astype(F32)


# OpenBLAS hands a matrix product to its thread pool above ~64**3 multiply-adds; on a
# busy machine that hand-off costs far more than the product, so fields are computed
# in column blocks that stay below it.
_BLAS_SINGLE_THREAD = 64**3


def smooth_field(rng: np.random.Generator, count: int, size: int, nodes: int, amp=1.0) -> np.ndarray:
    """(count, size, size) zero-mean smooth random fields with standard deviation `amp`.

    `amp` is a scalar or one value per image; each field is K @ W @ K.T with W white noise.
    """
    k = _field_basis(size, nodes)
    m = k.shape[1]
    w = rng.standard_normal((count, m, m), dtype=F32)
    w *= np.asarray(amp, F32).reshape(-1, 1, 1)
    left = k @ w  # (b, size, m)
    cols = max(1, _BLAS_SINGLE_THREAD // (size * m))
    if cols >= size:
        return left @ k.T
    out = np.empty((count, size, size), F32)
    for c0 in range(0, size, cols):
        out[:, :, c0 : c0 + cols] = left @ k[c0 : c0 + cols].T
    return out


@functools.lru_cache(maxsize=16)
def _harmonic_basis(orders: tuple[int, ...], k: int) -> np.ndarray:
    """(2 * len(orders), k + 1) rows cos(m phi), sin(m phi) on linspace(-pi, pi, k + 1)."""
    phi = np.linspace(-np.pi, np.pi, k + 1)
    angles = np.multiply.outer(orders, phi)
    return np.concatenate([np.cos(angles), np.sin(angles)]).astype(F32)


def harmonic_table(amp: np.ndarray, phase: np.ndarray, orders: tuple[int, ...], k: int) -> np.ndarray:
    """Per-row sum_m amp_m cos(m phi + phase_m) tabulated on k + 1 angles in [-pi, pi]."""
    coef = np.concatenate([amp * np.cos(phase), -amp * np.sin(phase)], axis=-1).astype(F32)
    return coef @ _harmonic_basis(orders, k)


def add_rician_noise_(img: np.ndarray, sigma: np.ndarray, rng: np.random.Generator, scratch: Scratch) -> None:
    """In place: img <- |img + sigma (n1 + i n2)|, clipped to [0, 1].

    Box-Muller gives the modulus R and the angle of the complex Gaussian directly, so
    the magnitude is sqrt(s^2 + R (2 s cos(angle) + R)) with R already scaled by sigma.
    The two uniforms per pixel are 16-bit slices of raw generator output: several times
    cheaper than normals, and the tail this truncates (beyond 4.7 sigma) is invisible.
    """
    n = img.size
    bits = rng.bit_generator.random_raw((n + 1) // 2).view(np.uint16)
    radius = np.multiply(bits[:n].reshape(img.shape), F32(1 / 65536), out=scratch("noise_r", img.shape))
    np.subtract(1.0, radius, out=radius)  # (0, 1]: log stays finite
    np.log(radius, out=radius)
    radius *= -2.0
    np.sqrt(radius, out=radius)
    radius *= sigma
    cos_a = scratch("noise_c", img.shape)
    np.multiply(bits[n : 2 * n].reshape(img.shape), F32(2 * np.pi / 65536), out=cos_a)
    np.cos(cos_a, out=cos_a)
    cos_a *= img
    cos_a *= 2.0
    cos_a += radius
    cos_a *= radius
    img *= img
    img += cos_a
    np.maximum(img, 0.0, out=img)
    np.sqrt(img, out=img)
    np.minimum(img, 1.0, out=img)


def table_index(x, lo: float, hi: float, k: int, scratch=None, name=None, centred: bool = True):
    """Flat indices into a stack of per-image 1-D tables of k entries covering [lo, hi].

    With ``centred`` the entries are bin centres (nearest bin); otherwise they are the
    k nodes of ``linspace(lo, hi, k)`` (nearest node). Per-pixel functions of a single
    coordinate (radius, angle) are evaluated once per image on the table and gathered,
    which replaces many full-image passes with one.
    """
    n_bins = k if centred else k - 1
    t = np.subtract(x, lo, out=scratch(name + "_f", x.shape) if scratch else None)
    t *= F32(n_bins / (hi - lo))
    if not centred:
        t += 0.5
    np.clip(t, 0, k - 1, out=t)
    idx = scratch(name, x.shape, np.intp) if scratch else np.empty(x.shape, np.intp)
    np.copyto(idx, t, casting="unsafe")  # truncation == floor for t >= 0
    idx += (np.arange(x.shape[0]) * k).reshape(-1, *([1] * (x.ndim - 1)))
    return idx


def lookup(tables: np.ndarray, idx: np.ndarray, out=None) -> np.ndarray:
    """Gather per-image tables (b, k) at flat indices from `table_index`."""
    # Indices are always in range; mode="wrap" just skips numpy's bounds checking.
    return np.take(tables.ravel(), idx, out=out, mode="wrap")


class Window:
    """Same-sized windows, one per selected image, for rendering a local structure.

    Per-image basic slicing (a memcpy each) is much cheaper than fancy indexing.
    """

    def __init__(self, idx: np.ndarray, r0: np.ndarray, c0: np.ndarray, h: int, w: int, size: int):
        self.idx, self.h, self.w = idx, h, w
        self.full = h == size and w == size
        # Pixel-centre coordinates of the window, (n, h, 1) rows and (n, 1, w) columns.
        self.ys = (r0[:, None, None] + np.arange(h, dtype=F32)[None, :, None] + 0.5).astype(F32)
        self.xs = (c0[:, None, None] + np.arange(w, dtype=F32)[None, None, :] + 0.5).astype(F32)
        self._slices = [
            (i, slice(r, r + h), slice(c, c + w)) for i, r, c in zip(idx.tolist(), r0.tolist(), c0.tolist())
        ]

    def get(self, arr: np.ndarray) -> np.ndarray:
        """A copy of `arr` inside the windows, (n, h, w)."""
        if self.full:
            return arr[self.idx]
        return np.stack([arr[sl] for sl in self._slices])

    def put(self, arr: np.ndarray, val: np.ndarray) -> None:
        """Writes `val` (n, h, w) into `arr` inside the windows."""
        if self.full:
            arr[self.idx] = val
        else:
            for sl, x in zip(self._slices, val):
                arr[sl] = x

    def subtract(self, arr: np.ndarray, val: np.ndarray) -> None:
        """Subtracts `val` from `arr` inside the windows."""
        for sl, x in zip(self._slices, val):
            arr[sl] -= x

    def union(self, arr: np.ndarray, val: np.ndarray) -> None:
        """ORs the boolean `val` into `arr` inside the windows."""
        for sl, x in zip(self._slices, val):
            arr[sl] |= x


def windows(select, row, col, half_h, half_w, size: int) -> Iterator[Window]:
    """Yield `Window` groups to render a structure only around where it is.

    For the images where `select` is true, windows of about 2*half_h x 2*half_w pixels
    (per-image half sizes) are centred on (row, col) and clipped to the image. Images
    are grouped by window side, rounded up to a multiple of 16, so each group is one
    vectorised pass over few pixels when the structure is small.
    """
    sel = np.flatnonzero(select)
    if not sel.size:
        return
    half_h = np.broadcast_to(half_h, select.shape)[sel]
    half_w = np.broadcast_to(half_w, select.shape)[sel]
    side_h = np.minimum(16 * np.ceil(2 * half_h / 16), size).astype(int)
    side_w = np.minimum(16 * np.ceil(2 * half_w / 16), size).astype(int)
    row = np.broadcast_to(row, select.shape)[sel]
    col = np.broadcast_to(col, select.shape)[sel]
    for h, w in sorted(set(zip(side_h.tolist(), side_w.tolist()))):
        grp = np.flatnonzero((side_h == h) & (side_w == w))
        r0 = np.clip(np.round(row[grp]).astype(int) - h // 2, 0, size - h)
        c0 = np.clip(np.round(col[grp]).astype(int) - w // 2, 0, size - w)
        yield Window(sel[grp], r0, c0, h, w, size)


def ramp(x: np.ndarray, width) -> np.ndarray:
    """Anti-aliased step: 0 for x << 0, 1 for x >> 0, linear over `width`."""
    return np.clip(x / width + 0.5, 0.0, 1.0)


def ramp_(x: np.ndarray, width) -> np.ndarray:
    """In-place `ramp`."""
    x *= 1.0 / width if np.isscalar(width) else (1.0 / width).astype(F32)
    x += 0.5
    return np.clip(x, 0.0, 1.0, out=x)


def lerp_(img: np.ndarray, value, weight: np.ndarray, tmp=None) -> None:
    """In place: img <- img + weight * (value - img)."""
    tmp = np.subtract(value, img, out=tmp)
    tmp *= weight
    img += tmp


def per_image(v) -> np.ndarray:
    """Per-image parameters (b,) -> broadcastable (b, 1, 1) float32."""
    return np.asarray(v, F32).reshape(-1, 1, 1)


def skew_small(u: np.ndarray, difficulty: float) -> np.ndarray:
    """Map uniform draws in [0, 1] towards 0 (small / faint) as difficulty grows.

    The exponent is tuned so that at difficulty 1 about 30 % of the draws fall in the
    lowest fifth of the range (tiny lesions) and at 0.5 only ~3 %.
    """
    return u ** (1.35 * difficulty**1.5)
