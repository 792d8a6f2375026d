"""Procedural medical-image phantoms: the embedded default data set.

Two generators produce labelled image sets deterministically from a seed, with no
download, in vectorised numpy (chunks of ~2**19 pixels rendered on a few threads;
10,000 128x128 brain slices take seconds to tens of seconds on a 2-core CPU):

`brain`
    Axial brain MRI slices with a **T1-weighted post-contrast (T1-Gd)** look: air ~0,
    bright scalp fat, dark cortical bone with a mid-grey diploe, a thin dark CSF rim,
    white matter brighter than grey matter, dark CSF in the ventricles, sulci and the
    interhemispheric fissure, and an enhancing superior sagittal sinus. The cortex is a
    grey ribbon of fixed thickness along the surface and along sulci that run in from
    it (irregularly spaced, tilted and of varying depth, with a shallower second set in
    between); deep grey nuclei appear at low slice levels. The slice level moves from
    the basal ganglia / third ventricle through the lateral-ventricle bodies to the
    centrum semiovale and vertex, changing ventricle shape and head size. Head shape
    (ellipse axes plus a smooth random warp), size, rotation, centre offset, atrophy
    and tissue intensities vary per image; acquisition adds a smooth multiplicative
    bias field and Rician noise (magnitude of a complex Gaussian). Class ``tumor`` adds
    1-3 lesions inside the brain, log-uniform in size from a few pixels to a large mass,
    with an irregular outline (radius modulated by angular harmonics): an enhancing rim,
    a necrotic core in most larger ones, hypointense vasogenic edema weighted towards
    white matter, and mass effect (a radial displacement field warps the coordinates at
    which the brain anatomy is rendered, so nearby ventricles, fissure and cortex are
    pushed away). A fifth of the lesions are non-enhancing (hypointense) instead.
    ``masks`` mark the lesion itself (rim + core), **not** the edema.

`lung`
    Lung CT patches (default 64x64; pixel spacing 0.7 mm at size 64, the field of view
    is fixed at 44.8 mm so other sizes resample the same anatomy) rendered in Hounsfield
    units and windowed to the lung window (centre -600, width 1500 HU) into [0, 1]:
    textured parenchyma (~ -850 HU) with a gravity gradient, tapering branching vessels
    (random-walk polylines drawn as soft tubes whose thin parts fade by partial volume),
    through-plane vessel disks and sub-millimetre dots, airways (air lumen with a
    soft-tissue wall, in cross-section beside their companion artery or running in the
    plane), in ~30 % of patches a chest wall with an extrapleural fat layer at one edge,
    and correlated CT noise. Class ``nodule`` adds one nodule of 3-30 mm diameter:
    solid (-30..80 HU, sometimes spiculated), part-solid (ground glass with a solid
    core) or ground-glass (-700..-300 HU, hazy, vessels stay visible through it);
    isolated, attached to a vessel, or juxta-pleural. ``masks`` mark the nodule extent
    inside the lung (any part overlapping the chest wall is excluded).

`difficulty` (default 1.0, > 0) shifts the positive class towards small, faint lesions
and raises the noise: at 1.0 about a quarter of brain lesions are at most ~4 pixels
across (at 128x128) and many have low contrast, so a classifier is not trivially
perfect; at 0.5 lesions are mostly large and obvious; at 2.0 most are small and faint.
In the lung, difficulty also makes ground-glass nodules more common and fainter.

Labels only add lesions: an image's anatomy, bias and noise draws do not depend on
the class fraction, so e.g. ``brain(n, tumor_fraction=0.0)`` and
``brain(n, tumor_fraction=1.0)`` with the same n, size and seed are matched pairs
differing only by the lesions and their effects (mass effect, edema; for a
juxta-pleural nodule also the chest wall it needs).

Limits: these are caricatures for method development, not anatomy. Brain slices are
supratentorial only (no orbits, cerebellum or brainstem), there is one contrast and
no partial-volume physics beyond anti-aliased edges, and lesion appearance is not
calibrated against real tumour statistics. Lung patches have no fissures, emphysema,
fibrosis or motion artefacts; ribs are omitted (they saturate to white in the lung
window anyway); CT noise is white plus box-blurred Gaussian rather than a modelled
noise power spectrum. Output for the same arguments is bit-identical on one machine
and numpy/BLAS build (it does not depend on thread scheduling); other builds may
differ in the last bits.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import os
import threading

import numpy as np
import scipy.ndimage

__all__ = ["PhantomSet", "brain", "lung"]

_F32 = np.float32

# Lung window used for display/training of the lung patches.
_LUNG_WINDOW_LOW = -600.0 - 750.0
_LUNG_WINDOW_WIDTH = 1500.0
# Lung patches always cover this field of view (0.7 mm pixels at the default size 64).
_LUNG_FOV_MM = 44.8


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


# --------------------------------------------------------------------------- helpers


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _validate(n, fraction, fraction_name: str, size, difficulty, seed) -> None:
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


def _make_labels(n: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    n_pos = int(round(n * fraction))
    labels = np.zeros(n, np.int32)
    labels[rng.permutation(n)[:n_pos]] = 1
    return labels


# Pixels rendered per chunk. Small chunks keep the working set of a few dozen
# temporaries inside the CPU caches, which is several times faster than large ones.
_CHUNK_PIXELS = 2**19
# Chunks are rendered on up to this many threads.
_MAX_THREADS = 4


class _Scratch:
    """Float32 work buffers reused from chunk to chunk.

    Rendering is dozens of full-image passes; allocating fresh temporaries for each
    chunk makes the OS fault in new pages every time, which costs more than the
    arithmetic. Buffers are handed out by name, so one name must not be live twice.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def __call__(self, name: str, shape: tuple[int, ...], dtype=_F32) -> np.ndarray:
        n = int(np.prod(shape))
        buf = self._buffers.get(name)
        if buf is None or buf.size < n or buf.dtype != dtype:
            buf = self._buffers[name] = np.empty(n, dtype)
        return buf[:n].reshape(shape)


def _generate(
    n: int, fraction: float, seed: int, render, class_names: tuple[str, ...], size: int
) -> PhantomSet:
    """Draw labels, then render chunk by chunk, each chunk from its own child seed.

    The chunk size depends only on `size`, and each chunk writes its own slice, so the
    output is bit-identical however the chunks are scheduled; they are spread over a
    few threads because numpy releases the GIL inside its array loops.
    """
    chunk = int(np.clip(_CHUNK_PIXELS // (size * size), 1, 256))
    label_seq, *chunk_seqs = np.random.SeedSequence(seed).spawn(1 + -(-n // chunk))
    labels = _make_labels(n, fraction, np.random.default_rng(label_seq))
    images = np.empty((n, size, size), _F32)
    masks = np.empty((n, size, size), bool)
    local = threading.local()

    def work(i: int) -> None:
        if not hasattr(local, "scratch"):
            local.scratch = _Scratch()
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
    return k.astype(_F32)


# OpenBLAS hands a matrix product to its thread pool above ~64**3 multiply-adds; on a
# busy machine that hand-off costs far more than the product, so fields are computed
# in column blocks that stay below it.
_BLAS_SINGLE_THREAD = 64**3


def _smooth_field(rng: np.random.Generator, b: int, size: int, nodes: int, amp=1.0) -> np.ndarray:
    """(b, size, size) zero-mean smooth random fields with standard deviation `amp`
    (a scalar or one value per image): K @ W @ K.T per image."""
    k = _field_basis(size, nodes)
    m = k.shape[1]
    w = rng.standard_normal((b, m, m), dtype=_F32)
    w *= np.asarray(amp, _F32).reshape(-1, 1, 1)
    left = k @ w  # (b, size, m)
    cols = max(1, _BLAS_SINGLE_THREAD // (size * m))
    if cols >= size:
        return left @ k.T
    out = np.empty((b, size, size), _F32)
    for c0 in range(0, size, cols):
        out[:, :, c0 : c0 + cols] = left @ k[c0 : c0 + cols].T
    return out


@functools.lru_cache(maxsize=16)
def _harmonic_basis(orders: tuple[int, ...], k: int) -> np.ndarray:
    """(2 * len(orders), k + 1) rows cos(m phi), sin(m phi) on linspace(-pi, pi, k + 1)."""
    phi = np.linspace(-np.pi, np.pi, k + 1)
    angles = np.multiply.outer(orders, phi)
    return np.concatenate([np.cos(angles), np.sin(angles)]).astype(_F32)


def _harmonic_table(amp: np.ndarray, phase: np.ndarray, orders: tuple[int, ...], k: int) -> np.ndarray:
    """Per-row sum_m amp_m cos(m phi + phase_m) tabulated on k + 1 angles in [-pi, pi]."""
    coef = np.concatenate([amp * np.cos(phase), -amp * np.sin(phase)], axis=-1).astype(_F32)
    return coef @ _harmonic_basis(orders, k)


def _rician_(img: np.ndarray, sigma: np.ndarray, rng: np.random.Generator, scratch: _Scratch) -> None:
    """In place: img <- |img + sigma (n1 + i n2)|, clipped to [0, 1].

    Box-Muller gives the modulus R and the angle of the complex Gaussian directly, so
    the magnitude is sqrt(s^2 + R (2 s cos(angle) + R)) with R already scaled by sigma.
    The two uniforms per pixel are 16-bit slices of raw generator output: several times
    cheaper than normals, and the tail this truncates (beyond 4.7 sigma) is invisible.
    """
    n = img.size
    bits = rng.bit_generator.random_raw((n + 1) // 2).view(np.uint16)
    radius = np.multiply(bits[:n].reshape(img.shape), _F32(1 / 65536), out=scratch("noise_r", img.shape))
    np.subtract(1.0, radius, out=radius)  # (0, 1]: log stays finite
    np.log(radius, out=radius)
    radius *= -2.0
    np.sqrt(radius, out=radius)
    radius *= sigma
    cos_a = scratch("noise_c", img.shape)
    np.multiply(bits[n : 2 * n].reshape(img.shape), _F32(2 * np.pi / 65536), out=cos_a)
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


def _table_index(x, lo: float, hi: float, k: int, scratch=None, name=None, centred: bool = True):
    """Flat indices into a stack of per-image 1-D tables of k entries covering [lo, hi].

    With ``centred`` the entries are bin centres (nearest bin); otherwise they are the
    k nodes of ``linspace(lo, hi, k)`` (nearest node). Per-pixel functions of a single
    coordinate (radius, angle) are evaluated once per image on the table and gathered,
    which replaces many full-image passes with one.
    """
    n_bins = k if centred else k - 1
    t = np.subtract(x, lo, out=scratch(name + "_f", x.shape) if scratch else None)
    t *= _F32(n_bins / (hi - lo))
    if not centred:
        t += 0.5
    np.clip(t, 0, k - 1, out=t)
    idx = scratch(name, x.shape, np.intp) if scratch else np.empty(x.shape, np.intp)
    np.copyto(idx, t, casting="unsafe")  # truncation == floor for t >= 0
    idx += (np.arange(x.shape[0]) * k).reshape(-1, *([1] * (x.ndim - 1)))
    return idx


def _lookup(tables: np.ndarray, idx: np.ndarray, out=None) -> np.ndarray:
    """Gather per-image tables (b, k) at flat indices from `_table_index`."""
    # Indices are always in range; mode="wrap" just skips numpy's bounds checking.
    return np.take(tables.ravel(), idx, out=out, mode="wrap")


class _Window:
    """Same-sized windows, one per selected image, for rendering a local structure.

    Per-image basic slicing (a memcpy each) is much cheaper than fancy indexing.
    """

    def __init__(self, idx: np.ndarray, r0: np.ndarray, c0: np.ndarray, h: int, w: int, size: int):
        self.idx, self.h, self.w = idx, h, w
        self.full = h == size and w == size
        # Pixel-centre coordinates of the window, (n, h, 1) rows and (n, 1, w) columns.
        self.ys = (r0[:, None, None] + np.arange(h, dtype=_F32)[None, :, None] + 0.5).astype(_F32)
        self.xs = (c0[:, None, None] + np.arange(w, dtype=_F32)[None, None, :] + 0.5).astype(_F32)
        self._slices = [
            (i, slice(r, r + h), slice(c, c + w)) for i, r, c in zip(idx.tolist(), r0.tolist(), c0.tolist())
        ]

    def get(self, arr: np.ndarray) -> np.ndarray:
        if self.full:
            return arr[self.idx]
        return np.stack([arr[sl] for sl in self._slices])

    def put(self, arr: np.ndarray, val: np.ndarray) -> None:
        if self.full:
            arr[self.idx] = val
        else:
            for sl, x in zip(self._slices, val):
                arr[sl] = x

    def sub(self, arr: np.ndarray, val: np.ndarray) -> None:
        for sl, x in zip(self._slices, val):
            arr[sl] -= x

    def ior(self, arr: np.ndarray, val: np.ndarray) -> None:
        for sl, x in zip(self._slices, val):
            arr[sl] |= x


def _windows(select, row, col, half_h, half_w, size: int):
    """Yield `_Window` groups to render a structure only around where it is.

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
        yield _Window(sel[grp], r0, c0, h, w, size)


def _ramp(x: np.ndarray, width) -> np.ndarray:
    """Anti-aliased step: 0 for x << 0, 1 for x >> 0, linear over `width`."""
    return np.clip(x / width + 0.5, 0.0, 1.0)


def _ramp_(x: np.ndarray, width) -> np.ndarray:
    """In-place `_ramp`."""
    x *= 1.0 / width if np.isscalar(width) else (1.0 / width).astype(_F32)
    x += 0.5
    return np.clip(x, 0.0, 1.0, out=x)


def _lerp_(img: np.ndarray, value, weight: np.ndarray, tmp=None) -> None:
    """In place: img <- img + weight * (value - img)."""
    tmp = np.subtract(value, img, out=tmp)
    tmp *= weight
    img += tmp


def _col(v) -> np.ndarray:
    """Per-image parameters (b,) -> broadcastable (b, 1, 1) float32."""
    return np.asarray(v, _F32).reshape(-1, 1, 1)


def _skew(u: np.ndarray, difficulty: float) -> np.ndarray:
    """Map uniform draws in [0, 1] towards 0 (small / faint) as difficulty grows.

    The exponent is tuned so that at difficulty 1 about 30 % of the draws fall in the
    lowest fifth of the range (tiny lesions) and at 0.5 only ~3 %.
    """
    return u ** (1.35 * difficulty**1.5)


# ----------------------------------------------------------------------------- brain


def _brain_params(rng: np.random.Generator, labels: np.ndarray, size: int, difficulty: float) -> dict:
    """Per-image scalars for one chunk (drawn for every lesion slot of every image so the
    random stream does not depend on the labels)."""
    b = labels.size
    p: dict = {}
    level = rng.uniform(0.2, 0.95, b)  # 0.2 basal ganglia ... 0.95 near the vertex
    vertex = np.clip((level - 0.65) / 0.3, 0, 1) ** 2
    a = 0.66 * rng.uniform(0.92, 1.1, b) * (1 - 0.3 * vertex)  # left-right semi-axis
    bax = a * rng.uniform(1.1, 1.3, b)  # anterior-posterior semi-axis
    cx, cy = rng.uniform(-0.06, 0.06, (2, b))
    bax = np.minimum(bax, 0.9 - np.hypot(cx, cy))  # keep the whole head in the field of view
    a = np.minimum(a, bax)
    atrophy = rng.uniform(0.7, 1.7, b)
    t_scalp = rng.uniform(0.035, 0.06, b)
    t_skull = rng.uniform(0.04, 0.07, b)
    t_csf = rng.uniform(0.008, 0.016, b) * atrophy
    p.update(
        level=level, a=a, bax=bax, cx=cx, cy=cy, atrophy=atrophy,
        theta=np.clip(rng.normal(0.0, 0.12, b), -0.35, 0.35),
        t_scalp=t_scalp, t_skull=t_skull, t_csf=t_csf,
        rho_b=1.0 - t_scalp - t_skull - t_csf,  # brain surface in head-normalised radius
    )
    wm = rng.uniform(0.58, 0.66, b)
    gm = wm - rng.uniform(0.11, 0.17, b)
    p.update(
        wm=wm, gm=gm, csf=rng.uniform(0.06, 0.13, b), deep=gm + rng.uniform(0.02, 0.06, b),
        scalp=rng.uniform(0.72, 0.88, b), bone=rng.uniform(0.02, 0.07, b),
        diploe=rng.uniform(0.2, 0.45, b), sinus=rng.uniform(0.7, 0.9, b),
        gain=rng.uniform(0.9, 1.08, b),
        sigma=rng.uniform(0.015, 0.035, b) * (0.6 + 0.4 * difficulty),
    )
    # Cortex and ventricles.
    n1 = rng.integers(20, 30, b)
    p.update(
        n_sulci=n1,
        irregular=rng.uniform(-1, 1, (b, 4)) * n1[:, None] / (4.0 * np.arange(1, 5)),
        irregular_phase=rng.uniform(0, 2 * np.pi, (b, 4)),
        tilt=rng.uniform(-10, 10, (b, 4)),
        tilt_phase=rng.uniform(0, 2 * np.pi, (b, 4)),
        cortex=rng.uniform(0.045, 0.065, b),
        vent_centre=rng.normal(0.02, 0.03, b),
        vent_curve=rng.uniform(0.1, 0.25, b),
    )

    # Lesions.
    slots = 3
    n_les = rng.choice([1, 2, 3], size=b, p=[0.6, 0.28, 0.12])
    active = (labels[:, None] == 1) & (np.arange(slots)[None, :] < n_les[:, None])
    size_t = _skew(rng.uniform(0, 1, (b, slots)), difficulty)
    a_brain = a * p["rho_b"]
    b_brain = bax * p["rho_b"]
    a_brain_px = a_brain * size / 2
    r_min = np.maximum(0.035 * a_brain_px, 1.15)[:, None]
    r_max = np.maximum(0.42 * a_brain_px, 2.0)[:, None]
    r_px = r_min * (r_max / r_min) ** size_t
    r_norm = r_px * 2.0 / size
    # Centre sampled in the brain ellipse far enough from the surface for the whole
    # (harmonically enlarged) outline to stay inside.
    reach = np.clip(0.85 - 1.35 * r_norm / a_brain[:, None], 0.0, 1.0)
    rad_c = reach * np.sqrt(rng.uniform(0, 1, (b, slots)))
    ang_c = rng.uniform(0, 2 * np.pi, (b, slots))
    # Outline harmonics m = 2..6 with decaying amplitude; tiny lesions stay round.
    coef = rng.uniform(0, 1, (b, slots, 5)) * np.array([0.14, 0.08, 0.05, 0.03, 0.02])
    coef *= np.minimum(1.0, r_px[..., None] / 3)
    enhancing = rng.uniform(0, 1, (b, slots)) > 0.2
    necrotic = enhancing & (r_px > 4.0) & (rng.uniform(0, 1, (b, slots)) > 0.25)
    p.update(
        les_active=active, les_r_px=r_px, les_r=r_norm,
        les_u=rad_c * np.cos(ang_c) * a_brain[:, None],
        les_v=rad_c * np.sin(ang_c) * b_brain[:, None],
        les_coef=coef, les_phase=rng.uniform(0, 2 * np.pi, (b, slots, 5)),
        kappa=0.12 + 0.88 * (0.35 * size_t + 0.65 * _skew(rng.uniform(0, 1, (b, slots)), difficulty)),
        core_frac=np.where(necrotic, rng.uniform(0.35, 0.8, (b, slots)), -1.0),
        rim_gain=np.where(enhancing, rng.uniform(0.2, 0.36, (b, slots)), -rng.uniform(0.18, 0.3, (b, slots))),
        core_val=rng.uniform(0.1, 0.25, (b, slots)),
        les_base=wm[:, None] * rng.uniform(0.95, 1.03, (b, slots)),
        edema_ext=rng.uniform(0.2, 1.3, (b, slots)) * (r_px > 3),
        edema_str=rng.uniform(0.15, 0.35, (b, slots)),
        push=rng.uniform(0.25, 0.65, (b, slots)),
    )
    return p


def _brain_chunk(
    rng: np.random.Generator, labels: np.ndarray, size: int, difficulty: float, scratch: _Scratch
) -> tuple[np.ndarray, np.ndarray]:
    """Render one chunk of brain slices: (images, masks); `images` is a scratch buffer."""
    b = labels.size
    shp = (b, size, size)
    p = _brain_params(rng, labels, size, difficulty)
    px = 2.0 / size  # one pixel in normalised [-1, 1] image units
    grid = ((np.arange(size) + 0.5) * px - 1.0).astype(_F32)
    xs, ys = grid[None, None, :], grid[None, :, None]
    a, bax, rho_b = p["a"], p["bax"], p["rho_b"]
    t_scalp, t_skull, t_csf = p["t_scalp"], p["t_skull"], p["t_csf"]
    a_brain, b_brain = a * rho_b, bax * rho_b
    atrophy, level = p["atrophy"], p["level"]
    cos_t, sin_t = np.cos(p["theta"]), np.sin(p["theta"])
    tmp = scratch("tmp", shp)

    def to_pixel(uu, vv):
        """Head-frame point -> (row, col) pixel coordinates (inverse rotation)."""
        shape = (-1,) + (1,) * (np.ndim(uu) - 1)
        c, s, x0, y0 = (np.reshape(q, shape) for q in (cos_t, sin_t, p["cx"], p["cy"]))
        x = x0 + c * uu - s * vv
        y = y0 + s * uu + c * vv
        return (y + 1) / px - 0.5, (x + 1) / px - 0.5

    # ---- head frame (u: left-right, v: anterior(-) to posterior(+)); a smooth random
    # warp makes the head outline and all anatomy irregular.
    ct, st = _col(cos_t), _col(sin_t)
    dx, dy = xs - _col(p["cx"]), ys - _col(p["cy"])
    u = np.add(ct * dx, st * dy, out=scratch("u", shp))
    v = np.subtract(ct * dy, st * dx, out=scratch("v", shp))
    u += _smooth_field(rng, b, size, 4, 0.015)
    v += _smooth_field(rng, b, size, 4, 0.015)

    # Head-normalised radius: 1 at the skin, rho_b at the brain surface.
    rho = np.multiply(u, _col(1 / a), out=scratch("rho", shp))
    rho *= rho
    np.multiply(v, _col(1 / bax), out=tmp)
    tmp *= tmp
    rho += tmp
    np.sqrt(rho, out=rho)

    # Everything that depends on rho alone (scalp, skull, diploe, CSF rim, brain weight,
    # mass-effect fade, sinus radial extent) is a per-image 1-D profile looked up once.
    k_r, r_max = 1024, 1.25
    r = ((np.arange(k_r) + 0.5) * (r_max / k_r))[None, :]
    w_rho = px / a[:, None]  # one pixel in rho units (anti-aliasing width)
    ramp1 = lambda x: np.clip(x / w_rho + 0.5, 0, 1)  # noqa: E731
    inner = (1 - t_scalp - t_skull)[:, None]
    head = p["scalp"][:, None] * ramp1(1 - r)
    head += ramp1((1 - t_scalp)[:, None] - r) * (p["bone"][:, None] - head)
    diploe_w = ramp1(0.22 * t_skull[:, None] - np.abs(r - (1 - t_scalp - 0.5 * t_skull)[:, None]))
    head += diploe_w * (p["diploe"][:, None] - head)
    head += ramp1(inner - r) * (p["csf"][:, None] - head)
    tables = np.stack([
        head,
        ramp1(rho_b[:, None] - r),  # brain weight
        np.clip((rho_b[:, None] - r) / 0.15, 0, 1),  # mass effect fades to 0 at the skull
        # Superior sagittal sinus, radially: from the CSF rim into the inner table.
        ramp1(np.minimum(r - (rho_b - 0.6 * t_csf)[:, None], (inner + 0.3 * t_skull[:, None]) - r)),
    ]).astype(_F32)
    ridx = _table_index(rho, 0.0, r_max, k_r, scratch, "ridx")
    img = _lookup(tables[0], ridx, scratch("img", shp))
    brain_w = _lookup(tables[1], ridx, scratch("brain_w", shp))

    def radial(table: int, win: _Window) -> np.ndarray:
        """A radial profile inside a window only (for structures that are local)."""
        sub = win.get(rho)
        return _lookup(tables[table][win.idx], _table_index(sub, 0.0, r_max, k_r), out=sub)

    # ---- brain-frame coordinates, displaced by the lesions' mass effect
    active = p["les_active"]
    un = np.multiply(u, _col(1 / a_brain), out=scratch("un", shp))
    vn = np.multiply(v, _col(1 / b_brain), out=scratch("vn", shp))
    les_row, les_col = to_pixel(p["les_u"], p["les_v"])
    for k in range(active.shape[1]):
        # Displacement push * |p - c| * exp(-|p - c|^2 / 2 s^2), radially outwards: it is
        # monotone (no folding) because push < 1 and negligible beyond ~3.5 s (the window).
        half = 4.6 * p["les_r_px"][:, k] + 3
        for win in _windows(active[:, k], les_row[:, k], les_col[:, k], half, half, size):
            idx = win.idx
            du = win.get(u) - _col(p["les_u"][idx, k])
            dv = win.get(v) - _col(p["les_v"][idx, k])
            f = du * du
            f += dv * dv
            f *= _col(-0.5 / (1.3 * p["les_r"][idx, k]) ** 2)
            np.exp(f, out=f)
            f *= radial(2, win)
            f *= _col(p["push"][idx, k])
            du *= f
            du *= _col(1 / a_brain[idx])
            dv *= f
            dv *= _col(1 / b_brain[idx])
            win.sub(un, du)
            win.sub(vn, dv)
    rn = np.multiply(un, un, out=scratch("rn", shp))
    rn += np.multiply(vn, vn, out=tmp)
    np.sqrt(rn, out=rn)  # 0 at the brain centre, 1 at its surface
    ang = np.arctan2(vn, un, out=scratch("ang", shp))  # +pi/2 = posterior

    # ---- cortex: sulci are lines running in from the surface, an integer number around
    # the brain (so the pattern closes), with irregular spacing (angle-only phase), tilt
    # growing with depth, small wiggles and per-sulcus depth; the cortex is a ribbon of
    # fixed thickness along the surface and both walls of every sulcus.
    k_a = 1024
    atab = np.stack([
        _harmonic_table(p["irregular"], p["irregular_phase"], (1, 2, 3, 4), k_a),
        _harmonic_table(p["tilt"], p["tilt_phase"], (1, 2, 3, 4), k_a),
    ])
    aidx = _table_index(ang, -np.pi, np.pi, k_a + 1, scratch, "aidx", centred=False)
    phase = _lookup(atab[0], aidx, scratch("phase", shp))
    tilt = _lookup(atab[1], aidx, scratch("tilt", shp))

    dd = np.subtract(1.0, rn, out=scratch("dd", shp))  # depth below the brain surface
    tilt *= dd
    phase += tilt
    phase += _smooth_field(rng, b, size, 10, 1.6)
    pix = _col(px / a_brain)  # one pixel in brain-radius units
    cortex = _col(p["cortex"])
    half_sulcus = _col(0.005 * atrophy) + 0.35 * pix
    sulc_depth = _smooth_field(rng, b, size, 10, (0.1 + 0.05 * atrophy) * 0.35)
    sulc_depth += _col(0.1 + 0.05 * atrophy)
    # Signed "inside" distances (brain-radius units), combined with min (and) / max (or),
    # then one anti-aliasing ramp each. A second, shallower set of sulci sits between
    # the main ones.
    gm = np.subtract(cortex, dd, out=scratch("gm", shp))  # surface ribbon
    sulc = scratch("sulc", shp)
    sulc.fill(-1.0)
    x, dist, reach = scratch("x", shp), scratch("dist", shp), scratch("reach", shp)
    n1 = p["n_sulci"]
    for n_s, offset, depth_scale in ((n1, 0.0, 1.0), (np.round(1.7 * n1), np.pi, 0.4)):
        np.multiply(phase, _col(n_s / n1), out=x)
        x += np.multiply(ang, _col(n_s), out=dist)
        x += _F32(offset)
        x *= _F32(1 / (2 * np.pi))
        np.rint(x, out=dist)
        np.subtract(x, dist, out=dist)
        np.abs(dist, out=dist)
        dist *= _col(2 * np.pi / n_s)
        dist *= rn  # distance to the nearest sulcus axis
        np.multiply(sulc_depth, _F32(depth_scale), out=reach)
        reach -= dd  # > 0 where this sulcus reaches
        np.subtract(half_sulcus, dist, out=x)
        np.minimum(x, reach, out=x)
        np.maximum(sulc, x, out=sulc)
        x += cortex  # (min(a, b) + c == min(a + c, b + c))
        np.maximum(gm, x, out=gm)
    _ramp_(gm, pix)
    _ramp_(sulc, pix)

    tissue = _smooth_field(rng, b, size, 10, 1.0)  # white-matter texture, reused for lesions
    texture = scratch("texture", shp)
    np.copyto(texture, tissue)
    tissue *= 0.02
    tissue += _col(p["wm"])
    _lerp_(tissue, _col(p["gm"]), gm, tmp)
    _lerp_(tissue, _col(p["csf"]), sulc, tmp)

    # ---- deep structures, rendered in windows around the brain centre and only for
    # the slice levels where they exist
    vc = p["vent_centre"]
    centre_row, centre_col = to_pixel(0.0, 0.0)
    # Extra reach: mass effect (<~0.2 brain radius) and the elastic warp.
    slack = 0.2 * a_brain + 0.03

    def brain_box(ext_u, ext_v):
        """Half extents (rows, cols) in pixels of a brain-frame box, rotated."""
        eu, ev = ext_u * a_brain + slack, ext_v * b_brain + slack
        hy = np.abs(cos_t) * ev + np.abs(sin_t) * eu
        hx = np.abs(cos_t) * eu + np.abs(sin_t) * ev
        return hy / px + 2, hx / px + 2

    deep_lvl = np.clip((0.55 - level) / 0.1, 0, 1)  # lentiform nucleus and thalamus
    for win in _windows(deep_lvl > 0, centre_row, centre_col, *brain_box(0.45, 0.32), size):
        idx = win.idx
        au, vv = np.abs(win.get(un)), win.get(vn)
        lent = ((au - 0.33) * 10.0) ** 2 + ((vv + 0.05) * 5.0) ** 2
        thal = ((au - 0.12) * 10.0) ** 2 + ((vv - 0.16) * (1 / 0.12)) ** 2
        w = np.minimum(lent, thal, out=lent)
        np.subtract(1.0, w, out=w)
        _ramp_(w, 0.3)
        w *= _col(deep_lvl[idx])
        t = win.get(tissue)
        _lerp_(t, _col(p["deep"][idx]), w)
        win.put(tissue, t)

    # Lateral ventricles: ")(" bands around |un| = w0 + curve * q^2, widest at the
    # frontal horns and atria, pinched in the middle lower down (separate horns); the
    # third ventricle is a midline slit at the lowest levels.
    vent_size = np.exp(-(((level - 0.45) / 0.16) ** 2)) * np.sqrt(atrophy)
    vent_size *= np.clip((0.72 - level) / 0.08, 0, 1)
    half_len = 0.25 + 0.3 * vent_size
    vent_box = brain_box(0.5, np.abs(vc) + half_len + 0.05)
    for win in _windows(vent_size > 0, centre_row, centre_col, *vent_box, size):
        idx = win.idx
        au, vv = np.abs(win.get(un)), win.get(vn)
        q2 = (vv - _col(vc[idx])) * _col(1 / half_len[idx])
        q2 *= q2
        centre = q2 * _col(p["vent_curve"][idx])
        centre += _col(0.05 + 0.03 * atrophy[idx])
        np.subtract(au, centre, out=centre)
        np.abs(centre, out=centre)
        thick = 0.025 + 0.07 * q2
        thick *= _col(vent_size[idx])
        mid_gap = _col(np.clip((0.42 - level[idx]) / 0.15, 0, 1))
        thick *= 1.0 - 0.9 * mid_gap * np.exp(q2 * (-1 / 0.15))
        q2 *= q2
        q2 *= q2
        np.subtract(1.0, q2, out=q2)
        thick *= q2  # negative past the ends, closing the ventricle
        thick -= centre
        thick *= 1 / 0.02
        np.clip(thick, 0, 1, out=thick)
        low = np.clip((0.42 - level[idx]) / 0.12, 0, 1)
        third = _ramp(0.018 * _col(atrophy[idx]) - au, 0.015) * _ramp(0.12 - np.abs(vv - 0.02), 0.03)
        third *= _col(low)
        np.maximum(thick, third, out=thick)
        t = win.get(tissue)
        _lerp_(t, _col(p["csf"][idx]), thick)
        win.put(tissue, t)

    # Interhemispheric fissure in front of and behind the ventricles (full length higher
    # up), lined by medial cortex; rendered in a strip window along the midline.
    fis_half_u = 3.0 * px / a_brain + 0.01  # medial cortex half width, un units
    for win in _windows(np.ones(b, bool), centre_row, centre_col, *brain_box(fis_half_u, 1.05), size):
        idx = win.idx
        aun, vv = np.abs(win.get(un)), win.get(vn)
        fis_len = np.abs(vv - _col(vc[idx]))
        fis_len -= _col(0.1 + 0.45 * vent_size[idx])
        _ramp_(fis_len, 0.05)
        pix_i = _col(px / a_brain[idx])
        t = win.get(tissue)
        w = _ramp_(2.5 * pix_i - aun, pix_i)
        w *= fis_len
        _lerp_(t, _col(p["gm"][idx]), w)
        w = _ramp_(_col(0.006 * atrophy[idx]) + 0.3 * pix_i - aun, pix_i)
        w *= fis_len
        _lerp_(t, _col(p["csf"][idx]), w)
        win.put(tissue, t)

    _lerp_(img, tissue, brain_w, tmp)
    # Superior sagittal sinus (enhancing on T1-Gd): a small triangle-ish spot at the
    # posterior midline, between the brain surface and the inner table of the skull.
    sin_row, sin_col = to_pixel(0.0, bax * (1 - t_scalp - t_skull))
    for win in _windows(np.ones(b, bool), sin_row, sin_col, 6.0, 6.0, size):
        w = radial(3, win)
        w *= _ramp_(0.04 - np.abs(win.get(ang) - _F32(np.pi / 2)), 0.02)
        t = win.get(img)
        _lerp_(t, _col(p["sinus"][win.idx]), w)
        win.put(img, t)

    # ---- lesions, rendered in output space (the lesion causes the warp, it is not warped)
    masks = np.zeros(shp, bool)
    half_px = _F32(size / 2.0)
    k_l = 512
    outline_max = 1.0 + p["les_coef"].sum(axis=2)
    for k in range(active.shape[1]):
        # + margin for the elastic warp of the head frame.
        half = p["les_r_px"][:, k] * outline_max[:, k] * (1.0 + 2.0 * p["edema_ext"][:, k]) + 5
        for win in _windows(active[:, k], les_row[:, k], les_col[:, k], half, half, size):
            idx = win.idx
            n_i = idx.size
            du = win.get(u) - _col(p["les_u"][idx, k])
            du *= half_px
            dv = win.get(v) - _col(p["les_v"][idx, k])
            dv *= half_px
            ang_l = np.arctan2(dv, du)
            dist = du
            dist *= du
            dv *= dv
            dist += dv
            np.sqrt(dist, out=dist)
            outline = _harmonic_table(p["les_coef"][idx, k], p["les_phase"][idx, k], (2, 3, 4, 5, 6), k_l)
            outline += 1.0
            outline *= p["les_r_px"][idx, k][:, None].astype(_F32)
            rad = _lookup(outline, _table_index(ang_l, -np.pi, np.pi, k_l + 1, centred=False))
            d = dist / rad
            bw = win.get(brain_w)
            sub = win.get(img)
            kap = _col(p["kappa"][idx, k])
            # Vasogenic edema: hypointense halo that spreads along white matter, so it is
            # weighted by how WM-like the unlesioned anatomy is.
            e = np.maximum(d - 1.0, 0.0)
            e *= _col(1 / np.maximum(p["edema_ext"][idx, k], 1e-3))
            e *= e
            np.negative(e, out=e)
            np.exp(e, out=e)
            e *= bw
            wm_like = (sub - _col(p["gm"][idx])) * _col(1 / (p["wm"][idx] - p["gm"][idx]))
            np.clip(wm_like, 0.0, 1.0, out=wm_like)
            wm_like *= 0.7
            wm_like += 0.3
            e *= wm_like
            e *= -kap * _col(p["edema_str"][idx, k] * (p["edema_ext"][idx, k] > 0))
            e += 1.0
            sub *= e
            alpha = np.subtract(rad, dist, out=rad)
            _ramp_(alpha, 1.0)
            alpha *= bw
            tex = win.get(texture)
            # The lesion replaces the tissue it occupies (sulci and ventricles do not
            # show through); its contrast against white matter scales with kappa.
            base = _col(p["les_base"][idx, k])
            rim_w = np.multiply(tex, 0.12)
            rim_w += 1.0
            rim_w *= _col(p["core_frac"][idx, k])
            np.subtract(d, rim_w, out=rim_w)
            _ramp_(rim_w, 0.15)
            rim = base + kap * _col(p["rim_gain"][idx, k])
            core = base + kap * (_col(p["core_val"][idx, k]) - base)
            val = rim_w
            val *= rim - core
            val += core
            tex *= 0.08
            tex += 1.0
            val *= tex
            _lerp_(sub, val, alpha)
            win.put(img, sub)
            m = d < 1.0
            m &= win.get(rho) < _col(rho_b[idx])
            # Guarantee at least the pixel nearest the centre even for the tiniest lesions.
            nearest = np.argmin(dist.reshape(n_i, -1), axis=1)
            m.reshape(n_i, -1)[np.arange(n_i), nearest] = True
            win.ior(masks, m)

    # ---- acquisition: smooth multiplicative bias field, then Rician noise
    bias = _smooth_field(rng, b, size, 2, 0.12)
    bias += _smooth_field(rng, b, size, 1, 0.05)
    bias += _col(np.log(p["gain"]))
    np.exp(bias, out=bias)
    img *= bias
    _rician_(img, _col(p["sigma"]), rng, scratch)
    return img, masks


def brain(
    n: int, *, size: int = 128, tumor_fraction: float = 0.5, difficulty: float = 1.0, seed: int = 0
) -> PhantomSet:
    """Generate axial T1 post-contrast brain MRI phantom slices (see module docstring).

    Args:
        n: Number of images, >= 1.
        size: Image side in pixels, in [16, 512]. Anatomy is defined relative to the
            field of view, so every size shows a whole head.
        tumor_fraction: Fraction of images with tumour, in [0, 1]. Exactly
            ``round(n * tumor_fraction)`` images are positive, at positions shuffled by
            the seed, so rare classes (e.g. 0.0035 of 10,000 -> 35) are exact.
        difficulty: > 0. Higher gives smaller, fainter lesions and more noise; 1.0
            includes many lesions only a few pixels across, 0.5 is mostly large ones.
        seed: Non-negative integer; the same arguments give bit-identical arrays.

    Returns:
        A `PhantomSet`: ``images`` (n, size, size) float32 in [0, 1], ``labels`` (n,)
        int32, ``masks`` (n, size, size) bool marking each lesion's enhancing rim and
        core (edema excluded; all False for ``no_tumor``), and ``class_names``
        ``("no_tumor", "tumor")``.

    Raises:
        ValueError: If an argument is out of range or of the wrong type.
    """
    _validate(n, tumor_fraction, "tumor_fraction", size, difficulty, seed)
    difficulty = float(difficulty)
    return _generate(
        n, tumor_fraction, seed,
        lambda rng, lab, scratch: _brain_chunk(rng, lab, size, difficulty, scratch),
        ("no_tumor", "tumor"), size,
    )


# ------------------------------------------------------------------------------ lung


def lung(
    n: int, *, size: int = 64, nodule_fraction: float = 0.5, difficulty: float = 1.0, seed: int = 0
) -> PhantomSet:
    """Generate lung CT phantom patches in the lung window (see module docstring).

    Args:
        n: Number of patches, >= 1.
        size: Patch side in pixels, in [16, 512]. The field of view is fixed at
            44.8 mm, i.e. 0.7 mm pixels at the default 64.
        nodule_fraction: Fraction of patches with a nodule, in [0, 1]. Exactly
            ``round(n * nodule_fraction)`` patches are positive, at positions shuffled
            by the seed.
        difficulty: > 0. Higher gives smaller nodules, more and fainter ground-glass
            ones, and more noise.
        seed: Non-negative integer; the same arguments give bit-identical arrays.

    Returns:
        A `PhantomSet`: ``images`` (n, size, size) float32 in [0, 1] (HU through the
        lung window, centre -600 / width 1500), ``labels`` (n,) int32, ``masks``
        (n, size, size) bool marking the nodule inside the lung (all False for
        ``no_nodule``), and ``class_names`` ``("no_nodule", "nodule")``.

    Raises:
        ValueError: If an argument is out of range or of the wrong type.
    """
    _validate(n, nodule_fraction, "nodule_fraction", size, difficulty, seed)
    difficulty = float(difficulty)
    return _generate(
        n, nodule_fraction, seed,
        lambda rng, lab, scratch: _lung_chunk(rng, lab, size, difficulty, scratch),
        ("no_nodule", "nodule"), size,
    )


def _lung_params(rng: np.random.Generator, labels: np.ndarray, size: int, difficulty: float) -> dict:
    """Per-image scalars for one chunk of lung patches (pixel units unless noted).

    Everything is drawn for every image so the random stream does not depend on labels.
    """
    b = labels.size
    mm = _LUNG_FOV_MM / size  # pixel spacing
    p: dict = {}
    p.update(
        base=rng.uniform(-885.0, -830.0, b),
        grad=rng.uniform(0.0, 45.0, b),  # gravity-dependent density gradient across the patch
        grad_ang=rng.uniform(0, 2 * np.pi, b),
        vessel_hu=rng.uniform(20.0, 60.0, b),
        noise=rng.uniform(15.0, 35.0, b) * (0.6 + 0.4 * difficulty),
    )

    # Vessel trees: a chain of 3 tapering segments entering the patch, with a 2-segment
    # side branch at each of its first two joints (random-walk directions).
    segs = []
    centre = size / 2.0
    for tree in range(2):
        present = rng.uniform(0, 1, b) < (1.0 if tree == 0 else 0.8)
        ang0 = rng.uniform(0, 2 * np.pi, b)
        x = centre + 0.72 * size * np.cos(ang0)
        y = centre + 0.72 * size * np.sin(ang0)
        heading = ang0 + np.pi + rng.normal(0, 0.45, b)
        radius = rng.uniform(0.45, 1.7, b) / mm
        # Out-of-plane tilt lowers a segment's apparent density (partial volume).
        strength = rng.uniform(0.6, 1.0, b)
        joints = []
        for j in range(3):
            length = rng.uniform(0.3, 0.5, b) * size
            heading = heading + rng.normal(0, 0.3, b)
            x1, y1 = x + length * np.cos(heading), y + length * np.sin(heading)
            r1 = radius * (rng.uniform(0.75, 0.9, b) if j < 2 else rng.uniform(0.3, 0.6, b))
            segs.append((x, y, x1, y1, radius, r1, present, strength))
            joints.append((x1, y1, r1, heading))
            x, y, radius = x1, y1, r1
        for jx, jy, jr, jh in joints[:2]:
            on = present & (rng.uniform(0, 1, b) < 0.75)
            h = jh + np.where(rng.uniform(0, 1, b) < 0.5, -1, 1) * rng.uniform(0.5, 1.1, b)
            r = jr * rng.uniform(0.5, 0.8, b)
            st = strength * rng.uniform(0.7, 1.0, b)
            for j in range(2):
                length = rng.uniform(0.15, 0.3, b) * size
                h = h + rng.normal(0, 0.3, b)
                x1, y1 = jx + length * np.cos(h), jy + length * np.sin(h)
                r1 = r * (rng.uniform(0.7, 0.9, b) if j == 0 else rng.uniform(0.2, 0.5, b))
                segs.append((jx, jy, x1, y1, r, r1, on, st))
                jx, jy, r = x1, y1, r1
    # Vessels running through the slice: disks (p0 == p1) of a few sizes.
    for _ in range(3):
        cx, cy = rng.uniform(0, size, (2, b))
        r = rng.uniform(0.5, 1.8, b) / mm
        segs.append((cx, cy, cx, cy, r, r, rng.uniform(0, 1, b) < 0.6, np.ones(b)))
    p["vessels"] = segs
    p["dots"] = rng.integers(3, 11, b)  # sub-millimetre vessel cross-sections

    # Airways: a cross-section (air lumen, soft-tissue wall) beside its companion artery,
    # and sometimes an airway running in the slice plane.
    ring = rng.uniform(0, 1, b) < 0.45
    lumen = rng.uniform(0.8, 2.6, b) / mm
    wall = np.maximum(0.7, lumen * rng.uniform(0.3, 0.5, b))
    ax, ay = rng.uniform(0.2, 0.8, (2, b)) * size
    art_ang = rng.uniform(0, 2 * np.pi, b)
    art_r = (lumen + wall) * rng.uniform(0.7, 1.0, b)
    art_d = lumen + wall + art_r + 0.4
    art_x, art_y = ax + art_d * np.cos(art_ang), ay + art_d * np.sin(art_ang)
    p["vessels"].append((art_x, art_y, art_x, art_y, art_r, art_r, ring, np.ones(b)))
    airways = [(ax, ay, ax, ay, lumen, lumen, wall, ring)]
    # The in-plane airway enters from outside the patch and narrows as it leaves the slice.
    tube = rng.uniform(0, 1, b) < 0.15
    ang = rng.uniform(0, 2 * np.pi, b)
    tx, ty = centre + 0.75 * size * np.cos(ang), centre + 0.75 * size * np.sin(ang)
    length = rng.uniform(0.6, 1.1, b) * size
    heading = ang + np.pi + rng.normal(0, 0.4, b)
    t_lumen = rng.uniform(0.6, 1.6, b) / mm
    airways.append((tx, ty, tx + length * np.cos(heading), ty + length * np.sin(heading), t_lumen,
                    0.4 * t_lumen, np.maximum(0.7, 0.35 * t_lumen), tube))
    p["airways"] = airways
    p["wall_hu"] = rng.uniform(-100.0, -60.0, b)

    # Nodule (one per positive patch).
    size_t = _skew(rng.uniform(0, 1, b), difficulty)
    d_max = min(30.0, 0.8 * _LUNG_FOV_MM)
    diameter = 3.0 * (d_max / 3.0) ** size_t
    r_nod = np.maximum(diameter / 2 / mm, 0.8)
    p_ggo = np.clip(0.15 + 0.15 * difficulty, 0.05, 0.6)
    kind = rng.uniform(0, 1, b)
    kind = np.where(kind < p_ggo, 2, np.where(kind < p_ggo + 0.2, 1, 0))  # 0 solid, 1 part-solid, 2 GGO
    attach = rng.choice(3, size=b, p=[0.55, 0.25, 0.2])  # isolated, vessel, pleura
    coef = rng.uniform(0, 1, (b, 5)) * np.array([0.12, 0.08, 0.05, 0.03, 0.02])
    coef *= np.minimum(1, r_nod / 3)[:, None]  # tiny nodules stay round
    p.update(
        nod_r=r_nod, nod_kind=kind, nod_attach=attach, nod_coef=coef,
        nod_phase=rng.uniform(0, 2 * np.pi, (b, 5)),
        spiculated=(kind == 0) & (r_nod > 3) & (rng.uniform(0, 1, b) < 0.35),
        spic_n=rng.integers(5, 10, b),
        spic_amp=rng.uniform(0.25, 0.6, b),
        spic_phase=rng.uniform(0, 2 * np.pi, b),
        solid_hu=rng.uniform(-30.0, 80.0, b),
        ggo_hu=-700.0 + 400.0 * _skew(rng.uniform(0, 1, b), difficulty),
        core_frac=rng.uniform(0.3, 0.6, b),
        core_off=rng.uniform(-0.25, 0.25, (2, b)),
        nod_uv=rng.uniform(0, 1, (2, b)),
        nod_t=rng.uniform(0.2, 0.8, b), nod_side=np.where(rng.uniform(0, 1, b) < 0.5, -1.0, 1.0),
        nod_gap=rng.uniform(0.3, 0.9, b),
    )

    # Chest wall at one edge: half plane (slightly curved) beyond the pleura.
    has_wall = (rng.uniform(0, 1, b) < 0.3) | ((labels == 1) & (attach == 2))
    p.update(
        has_wall=has_wall,
        wall_ang=rng.uniform(0, 2 * np.pi, b),
        wall_off=rng.uniform(0.22, 0.42, b) * size,
        wall_curv=rng.uniform(-1, 1, b) * 0.006 * 64 / size,
        fat_depth=rng.uniform(0.5, 2.5, b) / mm,
        fat_thick=rng.uniform(1.0, 4.0, b) / mm,
        muscle_hu=rng.uniform(30.0, 60.0, b),
        fat_hu=rng.uniform(-120.0, -80.0, b),
        tau=rng.uniform(-0.25, 0.25, b) * size,
    )
    return p


def _draw_segments(acc: np.ndarray, segs, size: int, pv_full: float = 0.9) -> None:
    """Max-composite soft tapering tubes (segments with radii r0 -> r1) into `acc`.

    Values are partial-volume fractions: 1 inside, an anti-aliased edge, and thin tubes
    (radius below ~`pv_full` px) only partly filling their pixels, so small vessels are
    fainter, as in CT. Each segment is rendered only in a window around it.
    """
    x0, y0, x1, y1, r0, r1, on, strength = segs
    rmax = np.maximum(r0, r1)
    half_w = np.abs(x1 - x0) / 2 + rmax + 2
    half_h = np.abs(y1 - y0) / 2 + rmax + 2
    for win in _windows(on, (y0 + y1) / 2 - 0.5, (x0 + x1) / 2 - 0.5, half_h, half_w, size):
        i = win.idx
        ex, ey = _col(x1[i] - x0[i]), _col(y1[i] - y0[i])
        inv_l2 = 1.0 / np.maximum(ex * ex + ey * ey, 1e-6)
        dxp, dyp = win.xs - _col(x0[i]), win.ys - _col(y0[i])
        t = dxp * (ex * inv_l2) + dyp * (ey * inv_l2)
        np.clip(t, 0.0, 1.0, out=t)
        qx = dxp - t * ex
        qy = dyp - t * ey
        qx *= qx
        qy *= qy
        qx += qy
        d = np.sqrt(qx, out=qx)
        r = t * _col(r1[i] - r0[i])
        r += _col(r0[i])
        v = _ramp(r - d, 1.0)
        np.minimum(r, pv_full, out=r)
        r *= _col(strength[i] / pv_full)
        v *= r
        cur = win.get(acc)
        np.maximum(cur, v, out=cur)
        win.put(acc, cur)


def _lung_chunk(
    rng: np.random.Generator, labels: np.ndarray, size: int, difficulty: float, scratch: _Scratch
) -> tuple[np.ndarray, np.ndarray]:
    """Render one chunk of lung patches: (images, masks); `images` is a scratch buffer."""
    b = labels.size
    shp = (b, size, size)
    p = _lung_params(rng, labels, size, difficulty)
    grid = (np.arange(size) + 0.5).astype(_F32)
    xs, ys = grid[None, None, :], grid[None, :, None]
    centre = size / 2.0
    tmp = scratch("tmp", shp)

    # ---- parenchyma: density, gravity gradient, texture at two scales
    hu = scratch("hu", shp)
    gx = _col(p["grad"] * np.cos(p["grad_ang"]) / size)
    gy = _col(p["grad"] * np.sin(p["grad_ang"]) / size)
    np.add(gx * (xs - centre), gy * (ys - centre), out=hu)
    hu += _col(p["base"])
    hu += _smooth_field(rng, b, size, 4, 14.0)
    texture = _smooth_field(rng, b, size, 10)  # also the nodules' internal texture
    hu += 9.0 * texture

    # ---- vessels: tapering tubes, through-plane disks and sub-millimetre dots
    ves = scratch("ves", shp)
    ves.fill(0.0)
    for seg in p["vessels"]:
        _draw_segments(ves, seg, size)
    dots = np.zeros(shp, _F32)
    n_dots = int(p["dots"].max())
    which = np.arange(n_dots)[None, :] < p["dots"][:, None]
    flat = rng.integers(0, size * size, (b, n_dots)) + (np.arange(b) * size * size)[:, None]
    amp = rng.uniform(0.25, 0.6, (b, n_dots)).astype(_F32)
    np.add.at(dots.reshape(-1), flat[which], amp[which] * _F32(2 * np.pi * 0.7**2))
    scipy.ndimage.gaussian_filter(dots, sigma=0.7, axes=(1, 2), output=dots, truncate=3.0)
    np.maximum(ves, dots, out=ves)
    _lerp_(hu, _col(p["vessel_hu"]), ves, tmp)

    # ---- airways: soft-tissue wall, air lumen
    for x0, y0, x1, y1, r0, r1, wall, on in p["airways"]:
        if not on.any():
            continue
        outer = np.zeros(shp, _F32)
        inner = np.zeros(shp, _F32)
        _draw_segments(outer, (x0, y0, x1, y1, r0 + wall, r1 + wall, on, np.ones(b)), size, pv_full=0.5)
        _draw_segments(inner, (x0, y0, x1, y1, r0, r1, on, np.ones(b)), size, pv_full=0.5)
        _lerp_(hu, _col(p["wall_hu"]), outer, tmp)
        _lerp_(hu, _F32(-995.0), inner, tmp)

    # ---- nodule
    masks = np.zeros(shp, bool)
    wall_n = np.stack([np.cos(p["wall_ang"]), np.sin(p["wall_ang"])])  # lung -> chest wall
    r = p["nod_r"]
    # Centre: isolated nodules anywhere in the lung; vessel-attached ones beside a point
    # on the first vessel; juxta-pleural ones just inside the pleura.
    m = np.minimum(r + 2, centre - 2)
    nx = m + p["nod_uv"][0] * (size - 2 * m)
    ny = m + p["nod_uv"][1] * (size - 2 * m)
    vx0, vy0, vx1, vy1, vr0, *_ = p["vessels"][1]  # second segment of the main tree
    t = p["nod_t"]
    px_, py_ = vx0 + t * (vx1 - vx0), vy0 + t * (vy1 - vy0)
    seg_len = np.maximum(np.hypot(vx1 - vx0, vy1 - vy0), 1e-6)
    off = p["nod_side"] * (r * p["nod_gap"] + vr0)
    vx = px_ - off * (vy1 - vy0) / seg_len
    vy = py_ + off * (vx1 - vx0) / seg_len
    depth = np.maximum(r * p["nod_gap"] * 0.7, 2.5)
    jx = centre + wall_n[0] * (p["wall_off"] - depth) - wall_n[1] * p["tau"]
    jy = centre + wall_n[1] * (p["wall_off"] - depth) + wall_n[0] * p["tau"]
    nx = np.where(p["nod_attach"] == 1, vx, np.where(p["nod_attach"] == 2, jx, nx))
    ny = np.where(p["nod_attach"] == 1, vy, np.where(p["nod_attach"] == 2, jy, ny))
    # Keep non-pleural nodules clear of the chest wall, and every centre in the patch.
    proj = (nx - centre) * wall_n[0] + (ny - centre) * wall_n[1]
    clear = np.maximum(0, proj - (p["wall_off"] - 0.6 * r - 2.5))
    push = np.where(p["has_wall"] & (p["nod_attach"] != 2), clear, 0)
    nx, ny = nx - push * wall_n[0], ny - push * wall_n[1]
    nx, ny = np.clip(nx, 1.5, size - 1.5), np.clip(ny, 1.5, size - 1.5)

    k_l = 512
    outline = _harmonic_table(p["nod_coef"], p["nod_phase"], (2, 3, 4, 5, 6), k_l)
    phil = np.linspace(-np.pi, np.pi, k_l + 1)[None, :]
    spikes = np.maximum(0.0, np.cos(p["spic_n"][:, None] * phil + p["spic_phase"][:, None])) ** 12
    outline += (p["spiculated"] * p["spic_amp"])[:, None] * spikes
    outline += 1.0
    outline *= r[:, None]
    outline = outline.astype(_F32)
    half = outline.max(axis=1) + 4
    tex_amp = np.where(p["nod_kind"] == 0, 12.0, 35.0)
    for win in _windows(labels == 1, ny - 0.5, nx - 0.5, half, half, size):
        i = win.idx
        n_i = i.size
        du, dv = win.xs - _col(nx[i]), win.ys - _col(ny[i])
        ang = np.arctan2(dv, du)
        dist = np.sqrt(du * du + dv * dv)
        rad = _lookup(outline[i], _table_index(ang, -np.pi, np.pi, k_l + 1, centred=False))
        cur = win.get(hu)
        tex = win.get(texture)
        tex *= _col(tex_amp[i])
        kind = _col(p["nod_kind"][i])
        # Ground glass (GGO and the halo of part-solid nodules): hazy edge, raises density
        # without hiding vessels.
        g = _ramp(rad - dist, 2.5) * (kind > 0)
        target = _col(p["ggo_hu"][i]) + tex
        g *= np.maximum(target - cur, 0.0)
        cur += g
        # Solid component: the whole nodule when solid, an off-centre core when part-solid.
        core_r = np.where(p["nod_kind"][i] == 1, p["core_frac"][i], 1.0)
        cdx = du - _col(np.where(p["nod_kind"][i] == 1, p["core_off"][0][i] * r[i], 0.0))
        cdy = dv - _col(np.where(p["nod_kind"][i] == 1, p["core_off"][1][i] * r[i], 0.0))
        sdist = np.sqrt(cdx * cdx + cdy * cdy)
        sw = _ramp(rad * _col(core_r) - sdist, 1.0) * (kind < 2)
        _lerp_(cur, _col(p["solid_hu"][i]) + tex, sw)
        win.put(hu, cur)
        mk = dist < rad
        nearest = np.argmin(dist.reshape(n_i, -1), axis=1)
        mk.reshape(n_i, -1)[np.arange(n_i), nearest] = True
        win.put(masks, mk)

    # ---- chest wall beyond the pleura: muscle with an extrapleural fat layer
    mid = np.full(b, centre - 0.5)
    for win in _windows(p["has_wall"], mid, mid, size, size, size):
        i = win.idx
        nxi, nyi = _col(wall_n[0][i]), _col(wall_n[1][i])
        ddx, ddy = win.xs - centre, win.ys - centre
        along = ddx * -nyi + ddy * nxi
        depth_px = ddx * nxi + ddy * nyi
        depth_px += _col(p["wall_curv"][i]) * along * along
        depth_px -= _col(p["wall_off"][i])  # > 0 inside the chest wall
        cur = win.get(hu)
        fat = _ramp(depth_px - _col(p["fat_depth"][i]), 1.0)
        fat *= _ramp(_col(p["fat_depth"][i] + p["fat_thick"][i]) - depth_px, 1.0)
        wall_val = _col(p["muscle_hu"][i]) + fat * _col(p["fat_hu"][i] - p["muscle_hu"][i])
        ww = _ramp(depth_px, 1.0)
        _lerp_(cur, wall_val, ww)
        win.put(hu, cur)
        mk = win.get(masks)
        mk &= depth_px < 0
        win.put(masks, mk)
    if np.any(labels == 1):
        # The pleural cut may have removed the centre pixel of a juxta-pleural nodule.
        pos = np.flatnonzero((labels == 1) & ~masks.reshape(b, -1).any(axis=1))
        rows = np.clip(ny[pos].astype(int), 0, size - 1)
        cols = np.clip(nx[pos].astype(int), 0, size - 1)
        masks[pos, rows, cols] = True

    # ---- CT noise: the reconstruction kernel correlates neighbouring pixels, so mix
    # white noise with a box-blurred copy of itself (each part scaled to unit variance)
    noise = rng.standard_normal(shp, dtype=_F32)
    smooth = scipy.ndimage.uniform_filter(noise, size=(1, 3, 3), mode="wrap")
    smooth *= 3.0
    noise *= 0.6
    noise += 0.8 * smooth
    noise *= _col(p["noise"])
    hu += noise

    # ---- lung window (centre -600, width 1500 HU) into [0, 1]
    hu -= _F32(_LUNG_WINDOW_LOW)
    hu *= _F32(1.0 / _LUNG_WINDOW_WIDTH)
    np.clip(hu, 0.0, 1.0, out=hu)
    return hu, masks
