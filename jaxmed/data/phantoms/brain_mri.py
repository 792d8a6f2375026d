"""Axial T1 post-contrast brain MRI phantoms: head layers, cortex, deep structures, tumours, acquisition.

Coordinates: the image spans [-1, 1] in both axes; the head frame (u left-right, v
anterior(-) to posterior(+)) is rotated and warped with the head, and the brain frame
divides it by the brain's semi-axes (1 at the brain surface), displaced by each
lesion's mass effect. Rendering a chunk is a sequence of steps, each a function below,
that draw from one random stream in a fixed order; the order is part of the output.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxmed.data.phantoms.common import (
    F32,
    PhantomSet,
    Scratch,
    Window,
    add_rician_noise_,
    generate,
    harmonic_table,
    lerp_,
    lookup,
    per_image,
    ramp,
    ramp_,
    skew_small,
    smooth_field,
    table_index,
    validate_arguments,
    windows,
)

CLASS_NAMES = ("no_tumor", "tumor")
# Up to this many lesions per tumour image (each slot is drawn for every image).
LESION_SLOTS = 3
# Entries of the per-image lookup tables over head radius, brain angle and lesion angle.
_RADIUS_TABLE_SIZE = 1024
_RADIUS_TABLE_MAX = 1.25
_ANGLE_TABLE_SIZE = 1024
_LESION_OUTLINE_TABLE_SIZE = 512


@dataclasses.dataclass(frozen=True)
class _BrainParams:
    """Per-image draws for one chunk: (n,) arrays, (n, LESION_SLOTS) for lesions.

    Lengths are in normalised image units (the image spans 2) unless named ``_px``;
    intensities are in [0, 1] before the bias field and noise.
    """

    slice_level: np.ndarray  # 0.2 basal ganglia ... 0.95 near the vertex
    semi_axis_lr: np.ndarray  # head semi-axis, left-right
    semi_axis_ap: np.ndarray  # head semi-axis, anterior-posterior
    centre_x: np.ndarray
    centre_y: np.ndarray
    atrophy: np.ndarray
    rotation: np.ndarray  # radians
    scalp_thickness: np.ndarray  # the next three in head-normalised radius
    skull_thickness: np.ndarray
    csf_rim_thickness: np.ndarray
    brain_surface: np.ndarray  # head-normalised radius of the brain surface
    white_matter: np.ndarray
    grey_matter: np.ndarray
    csf: np.ndarray
    deep_grey: np.ndarray
    scalp: np.ndarray
    bone: np.ndarray
    diploe: np.ndarray
    sinus: np.ndarray
    gain: np.ndarray
    noise_sigma: np.ndarray
    n_sulci: np.ndarray
    sulcus_spacing_amplitude: np.ndarray  # (n, 4) angular harmonics 1..4
    sulcus_spacing_phase: np.ndarray
    sulcus_tilt_amplitude: np.ndarray
    sulcus_tilt_phase: np.ndarray
    cortex_thickness: np.ndarray  # brain-radius units
    ventricle_offset: np.ndarray  # brain-frame v of the ventricles' middle
    ventricle_curvature: np.ndarray
    lesion_active: np.ndarray
    lesion_radius_px: np.ndarray
    lesion_radius: np.ndarray
    lesion_u: np.ndarray  # head-frame centre
    lesion_v: np.ndarray
    outline_amplitude: np.ndarray  # (n, slots, 5) outline harmonics 2..6
    outline_phase: np.ndarray
    contrast: np.ndarray  # 0.12 faint ... 1 full contrast against white matter
    core_fraction: np.ndarray  # necrotic core radius / lesion radius, -1 for none
    rim_gain: np.ndarray  # > 0 enhancing, < 0 hypointense
    core_value: np.ndarray
    lesion_base: np.ndarray
    edema_extent: np.ndarray  # in lesion radii, 0 for none
    edema_strength: np.ndarray
    push: np.ndarray  # mass-effect strength, < 1 so the warp does not fold


def _draw_params(rng: np.random.Generator, labels: np.ndarray, size: int, difficulty: float) -> _BrainParams:
    """Draws every image's parameters, for every lesion slot, so the random stream does not depend on labels."""
    count = labels.size
    # Head shape and layers.
    level = rng.uniform(0.2, 0.95, count)
    vertex = np.clip((level - 0.65) / 0.3, 0, 1) ** 2
    semi_axis_lr = 0.66 * rng.uniform(0.92, 1.1, count) * (1 - 0.3 * vertex)
    semi_axis_ap = semi_axis_lr * rng.uniform(1.1, 1.3, count)
    centre_x, centre_y = rng.uniform(-0.06, 0.06, (2, count))
    semi_axis_ap = np.minimum(semi_axis_ap, 0.9 - np.hypot(centre_x, centre_y))  # the whole head in view
    semi_axis_lr = np.minimum(semi_axis_lr, semi_axis_ap)
    atrophy = rng.uniform(0.7, 1.7, count)
    scalp_thickness = rng.uniform(0.035, 0.06, count)
    skull_thickness = rng.uniform(0.04, 0.07, count)
    csf_rim_thickness = rng.uniform(0.008, 0.016, count) * atrophy
    rotation = np.clip(rng.normal(0.0, 0.12, count), -0.35, 0.35)
    brain_surface = 1.0 - scalp_thickness - skull_thickness - csf_rim_thickness

    # Tissue intensities and acquisition.
    white_matter = rng.uniform(0.58, 0.66, count)
    grey_matter = white_matter - rng.uniform(0.11, 0.17, count)
    csf = rng.uniform(0.06, 0.13, count)
    deep_grey = grey_matter + rng.uniform(0.02, 0.06, count)
    scalp = rng.uniform(0.72, 0.88, count)
    bone = rng.uniform(0.02, 0.07, count)
    diploe = rng.uniform(0.2, 0.45, count)
    sinus = rng.uniform(0.7, 0.9, count)
    gain = rng.uniform(0.9, 1.08, count)
    noise_sigma = rng.uniform(0.015, 0.035, count) * (0.6 + 0.4 * difficulty)

    # Cortex and ventricles.
    n_sulci = rng.integers(20, 30, count)
    sulcus_spacing_amplitude = rng.uniform(-1, 1, (count, 4)) * n_sulci[:, None] / (4.0 * np.arange(1, 5))
    sulcus_spacing_phase = rng.uniform(0, 2 * np.pi, (count, 4))
    sulcus_tilt_amplitude = rng.uniform(-10, 10, (count, 4))
    sulcus_tilt_phase = rng.uniform(0, 2 * np.pi, (count, 4))
    cortex_thickness = rng.uniform(0.045, 0.065, count)
    ventricle_offset = rng.normal(0.02, 0.03, count)
    ventricle_curvature = rng.uniform(0.1, 0.25, count)

    # Lesions: log-uniform radius between a few pixels and a large mass, skewed small by difficulty.
    shape = (count, LESION_SLOTS)
    lesions_per_image = rng.choice([1, 2, 3], size=count, p=[0.6, 0.28, 0.12])
    active = (labels[:, None] == 1) & (np.arange(LESION_SLOTS)[None, :] < lesions_per_image[:, None])
    size_draw = skew_small(rng.uniform(0, 1, shape), difficulty)
    brain_lr = semi_axis_lr * brain_surface
    brain_ap = semi_axis_ap * brain_surface
    brain_lr_px = brain_lr * size / 2
    radius_min = np.maximum(0.035 * brain_lr_px, 1.15)[:, None]
    radius_max = np.maximum(0.42 * brain_lr_px, 2.0)[:, None]
    radius_px = radius_min * (radius_max / radius_min) ** size_draw
    radius = radius_px * 2.0 / size
    # Centre sampled in the brain ellipse far enough from the surface for the whole
    # (harmonically enlarged) outline to stay inside.
    reach = np.clip(0.85 - 1.35 * radius / brain_lr[:, None], 0.0, 1.0)
    centre_radius = reach * np.sqrt(rng.uniform(0, 1, shape))
    centre_angle = rng.uniform(0, 2 * np.pi, shape)
    # Outline harmonics m = 2..6 with decaying amplitude; tiny lesions stay round.
    outline_amplitude = rng.uniform(0, 1, (*shape, 5)) * np.array([0.14, 0.08, 0.05, 0.03, 0.02])
    outline_amplitude *= np.minimum(1.0, radius_px[..., None] / 3)
    enhancing = rng.uniform(0, 1, shape) > 0.2
    necrotic = enhancing & (radius_px > 4.0) & (rng.uniform(0, 1, shape) > 0.25)
    outline_phase = rng.uniform(0, 2 * np.pi, (*shape, 5))
    contrast = 0.12 + 0.88 * (0.35 * size_draw + 0.65 * skew_small(rng.uniform(0, 1, shape), difficulty))
    core_fraction = np.where(necrotic, rng.uniform(0.35, 0.8, shape), -1.0)
    rim_gain = np.where(enhancing, rng.uniform(0.2, 0.36, shape), -rng.uniform(0.18, 0.3, shape))
    core_value = rng.uniform(0.1, 0.25, shape)
    lesion_base = white_matter[:, None] * rng.uniform(0.95, 1.03, shape)
    edema_extent = rng.uniform(0.2, 1.3, shape) * (radius_px > 3)
    edema_strength = rng.uniform(0.15, 0.35, shape)
    push = rng.uniform(0.25, 0.65, shape)
    return _BrainParams(
        slice_level=level, semi_axis_lr=semi_axis_lr, semi_axis_ap=semi_axis_ap, centre_x=centre_x,
        centre_y=centre_y, atrophy=atrophy, rotation=rotation, scalp_thickness=scalp_thickness,
        skull_thickness=skull_thickness, csf_rim_thickness=csf_rim_thickness, brain_surface=brain_surface,
        white_matter=white_matter, grey_matter=grey_matter, csf=csf, deep_grey=deep_grey, scalp=scalp, bone=bone,
        diploe=diploe, sinus=sinus, gain=gain, noise_sigma=noise_sigma, n_sulci=n_sulci,
        sulcus_spacing_amplitude=sulcus_spacing_amplitude, sulcus_spacing_phase=sulcus_spacing_phase,
        sulcus_tilt_amplitude=sulcus_tilt_amplitude, sulcus_tilt_phase=sulcus_tilt_phase,
        cortex_thickness=cortex_thickness, ventricle_offset=ventricle_offset, ventricle_curvature=ventricle_curvature,
        lesion_active=active, lesion_radius_px=radius_px, lesion_radius=radius,
        lesion_u=centre_radius * np.cos(centre_angle) * brain_lr[:, None],
        lesion_v=centre_radius * np.sin(centre_angle) * brain_ap[:, None],
        outline_amplitude=outline_amplitude, outline_phase=outline_phase, contrast=contrast,
        core_fraction=core_fraction, rim_gain=rim_gain, core_value=core_value, lesion_base=lesion_base,
        edema_extent=edema_extent, edema_strength=edema_strength, push=push,
    )


class _Frame:
    """Pixel geometry of one chunk: head-frame points to pixels, and brain-frame boxes to window sizes."""

    def __init__(self, params: _BrainParams, size: int):
        self.size = size
        self.pixel = 2.0 / size  # one pixel in normalised [-1, 1] image units
        self.params = params
        self.cos, self.sin = np.cos(params.rotation), np.sin(params.rotation)
        self.brain_lr = params.semi_axis_lr * params.brain_surface
        self.brain_ap = params.semi_axis_ap * params.brain_surface
        # Extra reach of a deep structure: mass effect (<~0.2 brain radius) and the elastic warp.
        self.slack = 0.2 * self.brain_lr + 0.03

    def to_pixel(self, u, v) -> tuple[np.ndarray, np.ndarray]:
        """Head-frame point(s), one leading entry per image -> (row, col) pixel coordinates."""
        shape = (-1,) + (1,) * (np.ndim(u) - 1)
        cos, sin, x0, y0 = (np.reshape(q, shape) for q in (self.cos, self.sin, self.params.centre_x,
                                                           self.params.centre_y))
        x = x0 + cos * u - sin * v
        y = y0 + sin * u + cos * v
        return (y + 1) / self.pixel - 0.5, (x + 1) / self.pixel - 0.5

    def centre_pixel(self) -> tuple[np.ndarray, np.ndarray]:
        """(row, col) of every brain's centre."""
        return self.to_pixel(0.0, 0.0)

    def brain_box(self, extent_u, extent_v) -> tuple[np.ndarray, np.ndarray]:
        """Half extents (rows, cols) in pixels of a brain-frame box, rotated with the head."""
        half_u, half_v = extent_u * self.brain_lr + self.slack, extent_v * self.brain_ap + self.slack
        half_rows = np.abs(self.cos) * half_v + np.abs(self.sin) * half_u
        half_cols = np.abs(self.cos) * half_u + np.abs(self.sin) * half_v
        return half_rows / self.pixel + 2, half_cols / self.pixel + 2


# Rows of the radial profile tables (functions of the head-normalised radius alone).
_HEAD, _BRAIN_WEIGHT, _MASS_EFFECT_FADE, _SINUS_RADIAL = range(4)


class _RadialProfiles:
    """Per-image profiles over the head radius: head layers, brain weight, mass-effect fade, sinus.

    Everything that depends on the radius alone is tabulated once per image and gathered,
    which replaces many full-image passes with one.
    """

    def __init__(self, params: _BrainParams, frame: _Frame, head_radius: np.ndarray):
        self.head_radius = head_radius
        r = ((np.arange(_RADIUS_TABLE_SIZE) + 0.5) * (_RADIUS_TABLE_MAX / _RADIUS_TABLE_SIZE))[None, :]
        edge = frame.pixel / params.semi_axis_lr[:, None]  # one pixel in radius units (anti-aliasing width)

        def inside(x):
            return np.clip(x / edge + 0.5, 0, 1)

        scalp_t, skull_t = params.scalp_thickness, params.skull_thickness
        brain_surface = params.brain_surface[:, None]
        inner_table = (1 - scalp_t - skull_t)[:, None]
        head = params.scalp[:, None] * inside(1 - r)
        head += inside((1 - scalp_t)[:, None] - r) * (params.bone[:, None] - head)
        diploe = inside(0.22 * skull_t[:, None] - np.abs(r - (1 - scalp_t - 0.5 * skull_t)[:, None]))
        head += diploe * (params.diploe[:, None] - head)
        head += inside(inner_table - r) * (params.csf[:, None] - head)
        self.tables = np.stack([
            head,
            inside(brain_surface - r),
            np.clip((brain_surface - r) / 0.15, 0, 1),  # mass effect fades to 0 at the skull
            # Superior sagittal sinus, radially: from the CSF rim into the inner table.
            inside(np.minimum(r - (params.brain_surface - 0.6 * params.csf_rim_thickness)[:, None],
                              (inner_table + 0.3 * skull_t[:, None]) - r)),
        ]).astype(F32)

    def everywhere(self, table: int, index: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Profile `table` at every pixel, given the pixels' table `index`."""
        return lookup(self.tables[table], index, out)

    def in_window(self, table: int, window: Window) -> np.ndarray:
        """Profile `table` inside a window only (for structures that are local)."""
        radius = window.get(self.head_radius)
        index = table_index(radius, 0.0, _RADIUS_TABLE_MAX, _RADIUS_TABLE_SIZE)
        return lookup(self.tables[table][window.idx], index, out=radius)


def _head_coordinates(rng, params: _BrainParams, frame: _Frame, scratch: Scratch) -> tuple[np.ndarray, np.ndarray]:
    """(u, v) head-frame coordinates of every pixel; a smooth random warp makes all anatomy irregular."""
    count, size = params.rotation.size, frame.size
    shape = (count, size, size)
    grid = ((np.arange(size) + 0.5) * frame.pixel - 1.0).astype(F32)
    xs, ys = grid[None, None, :], grid[None, :, None]
    cos, sin = per_image(frame.cos), per_image(frame.sin)
    dx, dy = xs - per_image(params.centre_x), ys - per_image(params.centre_y)
    u = np.add(cos * dx, sin * dy, out=scratch("u", shape))
    v = np.subtract(cos * dy, sin * dx, out=scratch("v", shape))
    u += smooth_field(rng, count, size, 4, 0.015)
    v += smooth_field(rng, count, size, 4, 0.015)
    return u, v


def _head_radius(u: np.ndarray, v: np.ndarray, params: _BrainParams, scratch: Scratch, tmp: np.ndarray) -> np.ndarray:
    """Head-normalised radius: 1 at the skin, `brain_surface` at the brain surface."""
    radius = np.multiply(u, per_image(1 / params.semi_axis_lr), out=scratch("rho", u.shape))
    radius *= radius
    np.multiply(v, per_image(1 / params.semi_axis_ap), out=tmp)
    tmp *= tmp
    radius += tmp
    np.sqrt(radius, out=radius)
    return radius


def _brain_coordinates(u: np.ndarray, v: np.ndarray, params: _BrainParams, frame: _Frame, profiles: _RadialProfiles,
                       lesion_pixels: tuple[np.ndarray, np.ndarray],
                       scratch: Scratch) -> tuple[np.ndarray, np.ndarray]:
    """Brain-frame coordinates (1 at the brain surface), pushed away from each lesion by its mass effect.

    The displacement push * |p - c| * exp(-|p - c|^2 / 2 s^2) points radially outwards: it
    is monotone (no folding) because push < 1, and negligible beyond ~3.5 s (the window).
    """
    brain_u = np.multiply(u, per_image(1 / frame.brain_lr), out=scratch("un", u.shape))
    brain_v = np.multiply(v, per_image(1 / frame.brain_ap), out=scratch("vn", u.shape))
    lesion_row, lesion_col = lesion_pixels
    active = params.lesion_active
    for slot in range(active.shape[1]):
        half = 4.6 * params.lesion_radius_px[:, slot] + 3
        for window in windows(active[:, slot], lesion_row[:, slot], lesion_col[:, slot], half, half, frame.size):
            idx = window.idx
            du = window.get(u) - per_image(params.lesion_u[idx, slot])
            dv = window.get(v) - per_image(params.lesion_v[idx, slot])
            falloff = du * du
            falloff += dv * dv
            falloff *= per_image(-0.5 / (1.3 * params.lesion_radius[idx, slot]) ** 2)
            np.exp(falloff, out=falloff)
            falloff *= profiles.in_window(_MASS_EFFECT_FADE, window)
            falloff *= per_image(params.push[idx, slot])
            du *= falloff
            du *= per_image(1 / frame.brain_lr[idx])
            dv *= falloff
            dv *= per_image(1 / frame.brain_ap[idx])
            window.subtract(brain_u, du)
            window.subtract(brain_v, dv)
    return brain_u, brain_v


def _cortex(rng, params: _BrainParams, frame: _Frame, brain_radius: np.ndarray, brain_angle: np.ndarray,
            scratch: Scratch) -> tuple[np.ndarray, np.ndarray]:
    """(grey-matter weight, sulcal-CSF weight) of the cortical ribbon and its sulci.

    Sulci are lines running in from the surface, an integer number around the brain (so
    the pattern closes), with irregular spacing (angle-only phase), tilt growing with
    depth, small wiggles and per-sulcus depth; the cortex is a ribbon of fixed thickness
    along the surface and both walls of every sulcus. A second, shallower set of sulci
    sits between the main ones.
    """
    count, size = brain_radius.shape[0], frame.size
    shape = brain_radius.shape
    angle_tables = np.stack([
        harmonic_table(params.sulcus_spacing_amplitude, params.sulcus_spacing_phase, (1, 2, 3, 4), _ANGLE_TABLE_SIZE),
        harmonic_table(params.sulcus_tilt_amplitude, params.sulcus_tilt_phase, (1, 2, 3, 4), _ANGLE_TABLE_SIZE),
    ])
    angle_index = table_index(brain_angle, -np.pi, np.pi, _ANGLE_TABLE_SIZE + 1, scratch, "aidx", centred=False)
    phase = lookup(angle_tables[0], angle_index, scratch("phase", shape))
    tilt = lookup(angle_tables[1], angle_index, scratch("tilt", shape))

    depth = np.subtract(1.0, brain_radius, out=scratch("dd", shape))  # below the brain surface
    tilt *= depth
    phase += tilt
    phase += smooth_field(rng, count, size, 10, 1.6)
    atrophy = params.atrophy
    pixel = per_image(frame.pixel / frame.brain_lr)  # one pixel in brain-radius units
    cortex = per_image(params.cortex_thickness)
    half_sulcus = per_image(0.005 * atrophy) + 0.35 * pixel
    sulcus_depth = smooth_field(rng, count, size, 10, (0.1 + 0.05 * atrophy) * 0.35)
    sulcus_depth += per_image(0.1 + 0.05 * atrophy)
    # Signed "inside" distances (brain-radius units), combined with min (and) / max (or),
    # then one anti-aliasing ramp each.
    grey = np.subtract(cortex, depth, out=scratch("gm", shape))  # surface ribbon
    sulci = scratch("sulc", shape)
    sulci.fill(-1.0)
    inside, distance, reach = scratch("x", shape), scratch("dist", shape), scratch("reach", shape)
    n_main = params.n_sulci
    for n_sulci, offset, depth_scale in ((n_main, 0.0, 1.0), (np.round(1.7 * n_main), np.pi, 0.4)):
        np.multiply(phase, per_image(n_sulci / n_main), out=inside)
        inside += np.multiply(brain_angle, per_image(n_sulci), out=distance)
        inside += F32(offset)
        inside *= F32(1 / (2 * np.pi))
        np.rint(inside, out=distance)
        np.subtract(inside, distance, out=distance)
        np.abs(distance, out=distance)
        distance *= per_image(2 * np.pi / n_sulci)
        distance *= brain_radius  # to the nearest sulcus axis
        np.multiply(sulcus_depth, F32(depth_scale), out=reach)
        reach -= depth  # > 0 where this sulcus reaches
        np.subtract(half_sulcus, distance, out=inside)
        np.minimum(inside, reach, out=inside)
        np.maximum(sulci, inside, out=sulci)
        inside += cortex  # (min(a, b) + c == min(a + c, b + c))
        np.maximum(grey, inside, out=grey)
    ramp_(grey, pixel)
    ramp_(sulci, pixel)
    return grey, sulci


def _deep_grey_nuclei(tissue: np.ndarray, brain_u: np.ndarray, brain_v: np.ndarray, params: _BrainParams,
                      frame: _Frame) -> None:
    """Lentiform nuclei and thalami, at the low slice levels where they exist (in place)."""
    weight_by_level = np.clip((0.55 - params.slice_level) / 0.1, 0, 1)
    for window in windows(weight_by_level > 0, *frame.centre_pixel(), *frame.brain_box(0.45, 0.32), frame.size):
        idx = window.idx
        lateral, posterior = np.abs(window.get(brain_u)), window.get(brain_v)
        lentiform = ((lateral - 0.33) * 10.0) ** 2 + ((posterior + 0.05) * 5.0) ** 2
        thalamus = ((lateral - 0.12) * 10.0) ** 2 + ((posterior - 0.16) * (1 / 0.12)) ** 2
        weight = np.minimum(lentiform, thalamus, out=lentiform)
        np.subtract(1.0, weight, out=weight)
        ramp_(weight, 0.3)
        weight *= per_image(weight_by_level[idx])
        values = window.get(tissue)
        lerp_(values, per_image(params.deep_grey[idx]), weight)
        window.put(tissue, values)


def _ventricle_size(params: _BrainParams) -> np.ndarray:
    """Lateral-ventricle size per image: largest mid-way up, none near the vertex, larger with atrophy."""
    level = params.slice_level
    size = np.exp(-(((level - 0.45) / 0.16) ** 2)) * np.sqrt(params.atrophy)
    size *= np.clip((0.72 - level) / 0.08, 0, 1)
    return size


def _ventricles(tissue: np.ndarray, brain_u: np.ndarray, brain_v: np.ndarray, params: _BrainParams, frame: _Frame,
                ventricle_size: np.ndarray) -> None:
    """Lateral ventricles and, at the lowest levels, the third ventricle (in place).

    The lateral ventricles are ")(" bands around |u| = w0 + curve * q^2, widest at the
    frontal horns and atria, pinched in the middle lower down (separate horns); the third
    ventricle is a midline slit.
    """
    level, atrophy, offset = params.slice_level, params.atrophy, params.ventricle_offset
    half_length = 0.25 + 0.3 * ventricle_size
    box = frame.brain_box(0.5, np.abs(offset) + half_length + 0.05)
    for window in windows(ventricle_size > 0, *frame.centre_pixel(), *box, frame.size):
        idx = window.idx
        lateral, posterior = np.abs(window.get(brain_u)), window.get(brain_v)
        along = (posterior - per_image(offset[idx])) * per_image(1 / half_length[idx])  # q, squared next
        along *= along
        band_distance = along * per_image(params.ventricle_curvature[idx])
        band_distance += per_image(0.05 + 0.03 * atrophy[idx])
        np.subtract(lateral, band_distance, out=band_distance)
        np.abs(band_distance, out=band_distance)
        thickness = 0.025 + 0.07 * along
        thickness *= per_image(ventricle_size[idx])
        pinch = per_image(np.clip((0.42 - level[idx]) / 0.15, 0, 1))
        thickness *= 1.0 - 0.9 * pinch * np.exp(along * (-1 / 0.15))
        along *= along
        along *= along
        np.subtract(1.0, along, out=along)
        thickness *= along  # negative past the ends, closing the ventricle
        thickness -= band_distance
        thickness *= 1 / 0.02
        np.clip(thickness, 0, 1, out=thickness)
        low = np.clip((0.42 - level[idx]) / 0.12, 0, 1)
        third = ramp(0.018 * per_image(atrophy[idx]) - lateral, 0.015) * ramp(0.12 - np.abs(posterior - 0.02), 0.03)
        third *= per_image(low)
        np.maximum(thickness, third, out=thickness)
        values = window.get(tissue)
        lerp_(values, per_image(params.csf[idx]), thickness)
        window.put(tissue, values)


def _interhemispheric_fissure(tissue: np.ndarray, brain_u: np.ndarray, brain_v: np.ndarray, params: _BrainParams,
                              frame: _Frame, ventricle_size: np.ndarray) -> None:
    """The midline fissure in front of and behind the ventricles, lined by medial cortex (in place)."""
    count = params.slice_level.size
    medial_half_width = 3.0 * frame.pixel / frame.brain_lr + 0.01  # brain-frame u units
    box = frame.brain_box(medial_half_width, 1.05)
    for window in windows(np.ones(count, bool), *frame.centre_pixel(), *box, frame.size):
        idx = window.idx
        lateral, posterior = np.abs(window.get(brain_u)), window.get(brain_v)
        beyond_ventricles = np.abs(posterior - per_image(params.ventricle_offset[idx]))
        beyond_ventricles -= per_image(0.1 + 0.45 * ventricle_size[idx])
        ramp_(beyond_ventricles, 0.05)
        pixel = per_image(frame.pixel / frame.brain_lr[idx])
        values = window.get(tissue)
        weight = ramp_(2.5 * pixel - lateral, pixel)
        weight *= beyond_ventricles
        lerp_(values, per_image(params.grey_matter[idx]), weight)
        weight = ramp_(per_image(0.006 * params.atrophy[idx]) + 0.3 * pixel - lateral, pixel)
        weight *= beyond_ventricles
        lerp_(values, per_image(params.csf[idx]), weight)
        window.put(tissue, values)


def _sagittal_sinus(img: np.ndarray, brain_angle: np.ndarray, params: _BrainParams, frame: _Frame,
                    profiles: _RadialProfiles) -> None:
    """The enhancing superior sagittal sinus: a small spot at the posterior midline inside the skull (in place)."""
    count = params.slice_level.size
    row, col = frame.to_pixel(0.0, params.semi_axis_ap * (1 - params.scalp_thickness - params.skull_thickness))
    for window in windows(np.ones(count, bool), row, col, 6.0, 6.0, frame.size):
        weight = profiles.in_window(_SINUS_RADIAL, window)
        weight *= ramp_(0.04 - np.abs(window.get(brain_angle) - F32(np.pi / 2)), 0.02)
        values = window.get(img)
        lerp_(values, per_image(params.sinus[window.idx]), weight)
        window.put(img, values)


def _edema_factor(relative_distance: np.ndarray, brain_weight: np.ndarray, anatomy: np.ndarray, contrast: np.ndarray,
                  params: _BrainParams, idx: np.ndarray, slot: int) -> np.ndarray:
    """Multiplicative darkening by vasogenic edema, spreading along white matter.

    The halo is weighted by how white-matter-like the unlesioned `anatomy` is.
    """
    extent = params.edema_extent[idx, slot]
    factor = np.maximum(relative_distance - 1.0, 0.0)
    factor *= per_image(1 / np.maximum(extent, 1e-3))
    factor *= factor
    np.negative(factor, out=factor)
    np.exp(factor, out=factor)
    factor *= brain_weight
    grey, white = params.grey_matter[idx], params.white_matter[idx]
    white_like = (anatomy - per_image(grey)) * per_image(1 / (white - grey))
    np.clip(white_like, 0.0, 1.0, out=white_like)
    white_like *= 0.7
    white_like += 0.3
    factor *= white_like
    factor *= -contrast * per_image(params.edema_strength[idx, slot] * (extent > 0))
    factor += 1.0
    return factor


def _lesion_intensity(relative_distance: np.ndarray, texture: np.ndarray, contrast: np.ndarray,
                      params: _BrainParams, idx: np.ndarray, slot: int) -> np.ndarray:
    """The lesion's own intensity: an enhancing (or dark) rim around an optional necrotic core, textured.

    Its contrast against white matter scales with `contrast`; `texture` is changed in place.
    """
    base = per_image(params.lesion_base[idx, slot])
    rim_weight = np.multiply(texture, 0.12)
    rim_weight += 1.0
    rim_weight *= per_image(params.core_fraction[idx, slot])
    np.subtract(relative_distance, rim_weight, out=rim_weight)
    ramp_(rim_weight, 0.15)
    rim = base + contrast * per_image(params.rim_gain[idx, slot])
    core = base + contrast * (per_image(params.core_value[idx, slot]) - base)
    value = rim_weight
    value *= rim - core
    value += core
    texture *= 0.08
    texture += 1.0
    value *= texture
    return value


def _lesions(img: np.ndarray, u: np.ndarray, v: np.ndarray, brain_weight: np.ndarray, texture: np.ndarray,
             head_radius: np.ndarray, lesion_pixels: tuple[np.ndarray, np.ndarray], params: _BrainParams,
             frame: _Frame) -> np.ndarray:
    """Draws the lesions into `img` (in place) and returns their masks (rim + core, not edema).

    Lesions are rendered in output space: the lesion causes the warp, it is not warped.
    """
    masks = np.zeros(img.shape, bool)
    half_size = F32(frame.size / 2.0)
    outline_max = 1.0 + params.outline_amplitude.sum(axis=2)
    lesion_row, lesion_col = lesion_pixels
    active = params.lesion_active
    for slot in range(active.shape[1]):
        # + margin for the elastic warp of the head frame.
        half = params.lesion_radius_px[:, slot] * outline_max[:, slot] * (1.0 + 2.0 * params.edema_extent[:, slot]) + 5
        for window in windows(active[:, slot], lesion_row[:, slot], lesion_col[:, slot], half, half, frame.size):
            idx = window.idx
            count = idx.size
            du = window.get(u) - per_image(params.lesion_u[idx, slot])
            du *= half_size
            dv = window.get(v) - per_image(params.lesion_v[idx, slot])
            dv *= half_size
            angle = np.arctan2(dv, du)
            distance = du
            distance *= du
            dv *= dv
            distance += dv
            np.sqrt(distance, out=distance)  # in pixels
            outline = harmonic_table(params.outline_amplitude[idx, slot], params.outline_phase[idx, slot],
                                     (2, 3, 4, 5, 6), _LESION_OUTLINE_TABLE_SIZE)
            outline += 1.0
            outline *= params.lesion_radius_px[idx, slot][:, None].astype(F32)
            outline_radius = lookup(outline, table_index(angle, -np.pi, np.pi, _LESION_OUTLINE_TABLE_SIZE + 1,
                                                         centred=False))
            relative_distance = distance / outline_radius
            window_brain = window.get(brain_weight)
            values = window.get(img)
            contrast = per_image(params.contrast[idx, slot])
            values *= _edema_factor(relative_distance, window_brain, values, contrast, params, idx, slot)
            coverage = np.subtract(outline_radius, distance, out=outline_radius)
            ramp_(coverage, 1.0)
            coverage *= window_brain
            # The lesion replaces the tissue it occupies (sulci and ventricles do not show through).
            lesion = _lesion_intensity(relative_distance, window.get(texture), contrast, params, idx, slot)
            lerp_(values, lesion, coverage)
            window.put(img, values)
            mask = relative_distance < 1.0
            mask &= window.get(head_radius) < per_image(params.brain_surface[idx])
            # Guarantee at least the pixel nearest the centre even for the tiniest lesions.
            nearest = np.argmin(distance.reshape(count, -1), axis=1)
            mask.reshape(count, -1)[np.arange(count), nearest] = True
            window.union(masks, mask)
    return masks


def _acquire(rng, img: np.ndarray, params: _BrainParams, scratch: Scratch) -> None:
    """A smooth multiplicative bias field, then Rician noise (in place)."""
    count, size = img.shape[0], img.shape[1]
    bias = smooth_field(rng, count, size, 2, 0.12)
    bias += smooth_field(rng, count, size, 1, 0.05)
    bias += per_image(np.log(params.gain))
    np.exp(bias, out=bias)
    img *= bias
    add_rician_noise_(img, per_image(params.noise_sigma), rng, scratch)


def _render_chunk(
    rng: np.random.Generator, labels: np.ndarray, size: int, difficulty: float, scratch: Scratch
) -> tuple[np.ndarray, np.ndarray]:
    """Renders one chunk of brain slices: (images, masks); `images` is a scratch buffer."""
    count = labels.size
    shape = (count, size, size)
    params = _draw_params(rng, labels, size, difficulty)
    frame = _Frame(params, size)
    tmp = scratch("tmp", shape)

    u, v = _head_coordinates(rng, params, frame, scratch)
    head_radius = _head_radius(u, v, params, scratch, tmp)
    profiles = _RadialProfiles(params, frame, head_radius)
    radius_index = table_index(head_radius, 0.0, _RADIUS_TABLE_MAX, _RADIUS_TABLE_SIZE, scratch, "ridx")
    img = profiles.everywhere(_HEAD, radius_index, scratch("img", shape))
    brain_weight = profiles.everywhere(_BRAIN_WEIGHT, radius_index, scratch("brain_w", shape))

    lesion_pixels = frame.to_pixel(params.lesion_u, params.lesion_v)
    brain_u, brain_v = _brain_coordinates(u, v, params, frame, profiles, lesion_pixels, scratch)
    brain_radius = np.multiply(brain_u, brain_u, out=scratch("rn", shape))
    brain_radius += np.multiply(brain_v, brain_v, out=tmp)
    np.sqrt(brain_radius, out=brain_radius)  # 0 at the brain centre, 1 at its surface
    brain_angle = np.arctan2(brain_v, brain_u, out=scratch("ang", shape))  # +pi/2 = posterior

    grey, sulci = _cortex(rng, params, frame, brain_radius, brain_angle, scratch)
    tissue = smooth_field(rng, count, size, 10, 1.0)  # white-matter texture, reused for lesions
    texture = scratch("texture", shape)
    np.copyto(texture, tissue)
    tissue *= 0.02
    tissue += per_image(params.white_matter)
    lerp_(tissue, per_image(params.grey_matter), grey, tmp)
    lerp_(tissue, per_image(params.csf), sulci, tmp)

    _deep_grey_nuclei(tissue, brain_u, brain_v, params, frame)
    ventricle_size = _ventricle_size(params)
    _ventricles(tissue, brain_u, brain_v, params, frame, ventricle_size)
    _interhemispheric_fissure(tissue, brain_u, brain_v, params, frame, ventricle_size)
    lerp_(img, tissue, brain_weight, tmp)
    _sagittal_sinus(img, brain_angle, params, frame, profiles)

    masks = _lesions(img, u, v, brain_weight, texture, head_radius, lesion_pixels, params, frame)
    _acquire(rng, img, params, scratch)
    return img, masks


def brain(
    n: int, *, size: int = 128, tumor_fraction: float = 0.5, difficulty: float = 1.0, seed: int = 0
) -> PhantomSet:
    """Generates axial T1 post-contrast brain MRI phantom slices (see `jaxmed.data.phantoms`).

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
    validate_arguments(n, tumor_fraction, "tumor_fraction", size, difficulty, seed)
    difficulty = float(difficulty)
    return generate(
        n, tumor_fraction, seed,
        lambda rng, labels, scratch: _render_chunk(rng, labels, size, difficulty, scratch),
        CLASS_NAMES, size,
    )
