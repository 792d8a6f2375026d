"""Lung CT phantom patches in Hounsfield units: parenchyma, vessels, airways, nodules, chest wall, CT noise.

Coordinates are pixels (centres at i + 0.5); lengths are drawn in millimetres and
converted with the pixel spacing, since the field of view is fixed. Rendering a chunk
is a sequence of steps, each a function below, that draw from one random stream in a
fixed order; the order is part of the output.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np
import scipy.ndimage

from jaxmed.data.phantoms.common import (
    F32,
    PhantomSet,
    Scratch,
    generate,
    harmonic_table,
    lerp_,
    lookup,
    per_image,
    ramp,
    skew_small,
    smooth_field,
    table_index,
    validate_arguments,
    windows,
)

CLASS_NAMES = ("no_nodule", "nodule")
# Lung window used for display/training of the lung patches (centre -600, width 1500 HU).
WINDOW_LOW = -600.0 - 750.0
WINDOW_WIDTH = 1500.0
# Lung patches always cover this field of view (0.7 mm pixels at the default size 64).
FIELD_OF_VIEW_MM = 44.8
_AIR_HU = -995.0
_NODULE_OUTLINE_TABLE_SIZE = 512
# Nodule kinds and attachments.
_SOLID, _PART_SOLID, _GROUND_GLASS = 0, 1, 2
_ISOLATED, _ON_VESSEL, _JUXTA_PLEURAL = 0, 1, 2


class _Segment(NamedTuple):
    """A tapering tube from (x0, y0) to (x1, y1), radii r0 -> r1 in pixels, per image; a disk when the ends coincide."""

    x0: np.ndarray
    y0: np.ndarray
    x1: np.ndarray
    y1: np.ndarray
    r0: np.ndarray
    r1: np.ndarray
    present: np.ndarray  # bool per image
    strength: np.ndarray  # partial-volume density, 1 for a vessel fully in the slice


class _Airway(NamedTuple):
    """An air lumen (radii r0 -> r1) inside a soft-tissue wall of thickness `wall`, per image."""

    x0: np.ndarray
    y0: np.ndarray
    x1: np.ndarray
    y1: np.ndarray
    r0: np.ndarray
    r1: np.ndarray
    wall: np.ndarray
    present: np.ndarray


@dataclasses.dataclass(frozen=True)
class _LungParams:
    """Per-image draws for one chunk, (n,) arrays, in pixels and HU unless noted."""

    parenchyma_hu: np.ndarray
    gradient_hu: np.ndarray  # gravity-dependent density change across the patch
    gradient_angle: np.ndarray
    vessel_hu: np.ndarray
    noise_hu: np.ndarray
    vessels: list[_Segment]
    dots: np.ndarray  # number of sub-millimetre vessel cross-sections
    airways: list[_Airway]
    airway_wall_hu: np.ndarray
    nodule_radius: np.ndarray
    nodule_kind: np.ndarray  # _SOLID, _PART_SOLID or _GROUND_GLASS
    nodule_attachment: np.ndarray  # _ISOLATED, _ON_VESSEL or _JUXTA_PLEURAL
    outline_amplitude: np.ndarray  # (n, 5) outline harmonics 2..6
    outline_phase: np.ndarray
    spiculated: np.ndarray
    spicule_count: np.ndarray
    spicule_amplitude: np.ndarray
    spicule_phase: np.ndarray
    solid_hu: np.ndarray
    ground_glass_hu: np.ndarray
    core_fraction: np.ndarray  # part-solid core radius / nodule radius
    core_offset: np.ndarray  # (2, n) in nodule radii
    nodule_position: np.ndarray  # (2, n) in [0, 1], for isolated nodules
    along_vessel: np.ndarray  # where on the vessel an attached nodule sits, in [0, 1]
    vessel_side: np.ndarray  # -1 or 1
    gap: np.ndarray  # in nodule radii
    has_wall: np.ndarray
    wall_angle: np.ndarray  # direction from the patch centre to the chest wall
    wall_offset: np.ndarray  # distance of the pleura from the patch centre
    wall_curvature: np.ndarray
    fat_depth: np.ndarray
    fat_thickness: np.ndarray
    muscle_hu: np.ndarray
    fat_hu: np.ndarray
    along_wall: np.ndarray  # offset of a juxta-pleural nodule along the pleura


def _draw_vessel_trees(rng: np.random.Generator, count: int, size: int, spacing_mm: float) -> list[_Segment]:
    """Two vessel trees: a chain of 3 tapering segments entering the patch, with a 2-segment
    side branch at each of its first two joints (random-walk directions)."""
    segments = []
    centre = size / 2.0
    for tree in range(2):
        present = rng.uniform(0, 1, count) < (1.0 if tree == 0 else 0.8)
        entry_angle = rng.uniform(0, 2 * np.pi, count)
        x = centre + 0.72 * size * np.cos(entry_angle)
        y = centre + 0.72 * size * np.sin(entry_angle)
        heading = entry_angle + np.pi + rng.normal(0, 0.45, count)
        radius = rng.uniform(0.45, 1.7, count) / spacing_mm
        # Out-of-plane tilt lowers a segment's apparent density (partial volume).
        strength = rng.uniform(0.6, 1.0, count)
        joints = []
        for j in range(3):
            length = rng.uniform(0.3, 0.5, count) * size
            heading = heading + rng.normal(0, 0.3, count)
            x1, y1 = x + length * np.cos(heading), y + length * np.sin(heading)
            r1 = radius * (rng.uniform(0.75, 0.9, count) if j < 2 else rng.uniform(0.3, 0.6, count))
            segments.append(_Segment(x, y, x1, y1, radius, r1, present, strength))
            joints.append((x1, y1, r1, heading))
            x, y, radius = x1, y1, r1
        for joint_x, joint_y, joint_radius, joint_heading in joints[:2]:
            branch_present = present & (rng.uniform(0, 1, count) < 0.75)
            branch_heading = joint_heading + (np.where(rng.uniform(0, 1, count) < 0.5, -1, 1)
                                              * rng.uniform(0.5, 1.1, count))
            branch_radius = joint_radius * rng.uniform(0.5, 0.8, count)
            branch_strength = strength * rng.uniform(0.7, 1.0, count)
            for j in range(2):
                length = rng.uniform(0.15, 0.3, count) * size
                branch_heading = branch_heading + rng.normal(0, 0.3, count)
                x1, y1 = joint_x + length * np.cos(branch_heading), joint_y + length * np.sin(branch_heading)
                r1 = branch_radius * (rng.uniform(0.7, 0.9, count) if j == 0 else rng.uniform(0.2, 0.5, count))
                segments.append(_Segment(joint_x, joint_y, x1, y1, branch_radius, r1, branch_present, branch_strength))
                joint_x, joint_y, branch_radius = x1, y1, r1
    return segments


def _draw_params(rng: np.random.Generator, labels: np.ndarray, size: int, difficulty: float) -> _LungParams:
    """Draws every image's parameters, so the random stream does not depend on labels."""
    count = labels.size
    spacing_mm = FIELD_OF_VIEW_MM / size
    centre = size / 2.0
    parenchyma_hu = rng.uniform(-885.0, -830.0, count)
    gradient_hu = rng.uniform(0.0, 45.0, count)
    gradient_angle = rng.uniform(0, 2 * np.pi, count)
    vessel_hu = rng.uniform(20.0, 60.0, count)
    noise_hu = rng.uniform(15.0, 35.0, count) * (0.6 + 0.4 * difficulty)

    vessels = _draw_vessel_trees(rng, count, size, spacing_mm)
    # Vessels running through the slice: disks (both ends equal) of a few sizes.
    for _ in range(3):
        disk_x, disk_y = rng.uniform(0, size, (2, count))
        radius = rng.uniform(0.5, 1.8, count) / spacing_mm
        vessels.append(_Segment(disk_x, disk_y, disk_x, disk_y, radius, radius,
                                rng.uniform(0, 1, count) < 0.6, np.ones(count)))
    dots = rng.integers(3, 11, count)

    # Airways: a cross-section (air lumen, soft-tissue wall) beside its companion artery,
    # and sometimes an airway running in the slice plane.
    ring = rng.uniform(0, 1, count) < 0.45
    lumen = rng.uniform(0.8, 2.6, count) / spacing_mm
    wall = np.maximum(0.7, lumen * rng.uniform(0.3, 0.5, count))
    airway_x, airway_y = rng.uniform(0.2, 0.8, (2, count)) * size
    artery_angle = rng.uniform(0, 2 * np.pi, count)
    artery_radius = (lumen + wall) * rng.uniform(0.7, 1.0, count)
    artery_distance = lumen + wall + artery_radius + 0.4
    artery_x = airway_x + artery_distance * np.cos(artery_angle)
    artery_y = airway_y + artery_distance * np.sin(artery_angle)
    vessels.append(_Segment(artery_x, artery_y, artery_x, artery_y, artery_radius, artery_radius, ring,
                            np.ones(count)))
    airways = [_Airway(airway_x, airway_y, airway_x, airway_y, lumen, lumen, wall, ring)]
    # The in-plane airway enters from outside the patch and narrows as it leaves the slice.
    tube = rng.uniform(0, 1, count) < 0.15
    entry_angle = rng.uniform(0, 2 * np.pi, count)
    tube_x, tube_y = centre + 0.75 * size * np.cos(entry_angle), centre + 0.75 * size * np.sin(entry_angle)
    length = rng.uniform(0.6, 1.1, count) * size
    heading = entry_angle + np.pi + rng.normal(0, 0.4, count)
    tube_lumen = rng.uniform(0.6, 1.6, count) / spacing_mm
    airways.append(_Airway(tube_x, tube_y, tube_x + length * np.cos(heading), tube_y + length * np.sin(heading),
                           tube_lumen, 0.4 * tube_lumen, np.maximum(0.7, 0.35 * tube_lumen), tube))
    airway_wall_hu = rng.uniform(-100.0, -60.0, count)

    # Nodule (one per positive patch): 3-30 mm, skewed small by difficulty.
    size_draw = skew_small(rng.uniform(0, 1, count), difficulty)
    largest_mm = min(30.0, 0.8 * FIELD_OF_VIEW_MM)
    diameter_mm = 3.0 * (largest_mm / 3.0) ** size_draw
    nodule_radius = np.maximum(diameter_mm / 2 / spacing_mm, 0.8)
    ground_glass_share = np.clip(0.15 + 0.15 * difficulty, 0.05, 0.6)
    kind = rng.uniform(0, 1, count)
    kind = np.where(kind < ground_glass_share, _GROUND_GLASS,
                    np.where(kind < ground_glass_share + 0.2, _PART_SOLID, _SOLID))
    attachment = rng.choice(3, size=count, p=[0.55, 0.25, 0.2])
    outline_amplitude = rng.uniform(0, 1, (count, 5)) * np.array([0.12, 0.08, 0.05, 0.03, 0.02])
    outline_amplitude *= np.minimum(1, nodule_radius / 3)[:, None]  # tiny nodules stay round
    outline_phase = rng.uniform(0, 2 * np.pi, (count, 5))
    spiculated = (kind == _SOLID) & (nodule_radius > 3) & (rng.uniform(0, 1, count) < 0.35)
    spicule_count = rng.integers(5, 10, count)
    spicule_amplitude = rng.uniform(0.25, 0.6, count)
    spicule_phase = rng.uniform(0, 2 * np.pi, count)
    solid_hu = rng.uniform(-30.0, 80.0, count)
    ground_glass_hu = -700.0 + 400.0 * skew_small(rng.uniform(0, 1, count), difficulty)
    core_fraction = rng.uniform(0.3, 0.6, count)
    core_offset = rng.uniform(-0.25, 0.25, (2, count))
    nodule_position = rng.uniform(0, 1, (2, count))
    along_vessel = rng.uniform(0.2, 0.8, count)
    vessel_side = np.where(rng.uniform(0, 1, count) < 0.5, -1.0, 1.0)
    gap = rng.uniform(0.3, 0.9, count)

    # Chest wall at one edge: half plane (slightly curved) beyond the pleura.
    has_wall = (rng.uniform(0, 1, count) < 0.3) | ((labels == 1) & (attachment == _JUXTA_PLEURAL))
    return _LungParams(
        parenchyma_hu=parenchyma_hu, gradient_hu=gradient_hu, gradient_angle=gradient_angle, vessel_hu=vessel_hu,
        noise_hu=noise_hu, vessels=vessels, dots=dots, airways=airways, airway_wall_hu=airway_wall_hu,
        nodule_radius=nodule_radius, nodule_kind=kind, nodule_attachment=attachment,
        outline_amplitude=outline_amplitude, outline_phase=outline_phase, spiculated=spiculated,
        spicule_count=spicule_count, spicule_amplitude=spicule_amplitude, spicule_phase=spicule_phase,
        solid_hu=solid_hu, ground_glass_hu=ground_glass_hu, core_fraction=core_fraction, core_offset=core_offset,
        nodule_position=nodule_position, along_vessel=along_vessel, vessel_side=vessel_side, gap=gap,
        has_wall=has_wall,
        wall_angle=rng.uniform(0, 2 * np.pi, count),
        wall_offset=rng.uniform(0.22, 0.42, count) * size,
        wall_curvature=rng.uniform(-1, 1, count) * 0.006 * 64 / size,
        fat_depth=rng.uniform(0.5, 2.5, count) / spacing_mm,
        fat_thickness=rng.uniform(1.0, 4.0, count) / spacing_mm,
        muscle_hu=rng.uniform(30.0, 60.0, count),
        fat_hu=rng.uniform(-120.0, -80.0, count),
        along_wall=rng.uniform(-0.25, 0.25, count) * size,
    )


def _draw_segments(acc: np.ndarray, segment: _Segment, size: int, full_volume_radius: float = 0.9) -> None:
    """Max-composites soft tapering tubes into `acc` (in place).

    Values are partial-volume fractions: 1 inside, an anti-aliased edge, and thin tubes
    (radius below ~`full_volume_radius` px) only partly filling their pixels, so small
    vessels are fainter, as in CT. Each segment is rendered only in a window around it.
    """
    x0, y0, x1, y1, r0, r1, present, strength = segment
    largest = np.maximum(r0, r1)
    half_w = np.abs(x1 - x0) / 2 + largest + 2
    half_h = np.abs(y1 - y0) / 2 + largest + 2
    for window in windows(present, (y0 + y1) / 2 - 0.5, (x0 + x1) / 2 - 0.5, half_h, half_w, size):
        i = window.idx
        ex, ey = per_image(x1[i] - x0[i]), per_image(y1[i] - y0[i])
        inverse_length2 = 1.0 / np.maximum(ex * ex + ey * ey, 1e-6)
        dx, dy = window.xs - per_image(x0[i]), window.ys - per_image(y0[i])
        t = dx * (ex * inverse_length2) + dy * (ey * inverse_length2)
        np.clip(t, 0.0, 1.0, out=t)  # position of the nearest point along the segment
        qx = dx - t * ex
        qy = dy - t * ey
        qx *= qx
        qy *= qy
        qx += qy
        distance = np.sqrt(qx, out=qx)
        radius = t * per_image(r1[i] - r0[i])
        radius += per_image(r0[i])
        value = ramp(radius - distance, 1.0)
        np.minimum(radius, full_volume_radius, out=radius)
        radius *= per_image(strength[i] / full_volume_radius)
        value *= radius
        current = window.get(acc)
        np.maximum(current, value, out=current)
        window.put(acc, current)


def _parenchyma(rng, params: _LungParams, size: int, scratch: Scratch) -> tuple[np.ndarray, np.ndarray]:
    """(HU image, texture): density with a gravity gradient and texture at two scales."""
    count = params.parenchyma_hu.size
    grid = (np.arange(size) + 0.5).astype(F32)
    xs, ys = grid[None, None, :], grid[None, :, None]
    centre = size / 2.0
    hu = scratch("hu", (count, size, size))
    gradient_x = per_image(params.gradient_hu * np.cos(params.gradient_angle) / size)
    gradient_y = per_image(params.gradient_hu * np.sin(params.gradient_angle) / size)
    np.add(gradient_x * (xs - centre), gradient_y * (ys - centre), out=hu)
    hu += per_image(params.parenchyma_hu)
    hu += smooth_field(rng, count, size, 4, 14.0)
    texture = smooth_field(rng, count, size, 10)  # also the nodules' internal texture
    hu += 9.0 * texture
    return hu, texture


def _vessels(rng, hu: np.ndarray, params: _LungParams, scratch: Scratch, tmp: np.ndarray) -> None:
    """Tapering tubes, through-plane disks and sub-millimetre dots (in place)."""
    count, size = hu.shape[0], hu.shape[1]
    shape = hu.shape
    vessels = scratch("ves", shape)
    vessels.fill(0.0)
    for segment in params.vessels:
        _draw_segments(vessels, segment, size)
    dots = np.zeros(shape, F32)
    most = int(params.dots.max())
    drawn = np.arange(most)[None, :] < params.dots[:, None]
    flat = rng.integers(0, size * size, (count, most)) + (np.arange(count) * size * size)[:, None]
    amplitude = rng.uniform(0.25, 0.6, (count, most)).astype(F32)
    np.add.at(dots.reshape(-1), flat[drawn], amplitude[drawn] * F32(2 * np.pi * 0.7**2))
    scipy.ndimage.gaussian_filter(dots, sigma=0.7, axes=(1, 2), output=dots, truncate=3.0)
    np.maximum(vessels, dots, out=vessels)
    lerp_(hu, per_image(params.vessel_hu), vessels, tmp)


def _airways(hu: np.ndarray, params: _LungParams, tmp: np.ndarray) -> None:
    """Soft-tissue walls around air lumens (in place)."""
    count, size = hu.shape[0], hu.shape[1]
    for x0, y0, x1, y1, r0, r1, wall, present in params.airways:
        if not present.any():
            continue
        outer = np.zeros(hu.shape, F32)
        inner = np.zeros(hu.shape, F32)
        _draw_segments(outer, _Segment(x0, y0, x1, y1, r0 + wall, r1 + wall, present, np.ones(count)), size,
                       full_volume_radius=0.5)
        _draw_segments(inner, _Segment(x0, y0, x1, y1, r0, r1, present, np.ones(count)), size,
                       full_volume_radius=0.5)
        lerp_(hu, per_image(params.airway_wall_hu), outer, tmp)
        lerp_(hu, F32(_AIR_HU), inner, tmp)


def _wall_normal(params: _LungParams) -> np.ndarray:
    """(2, n) unit vectors from the lung towards the chest wall."""
    return np.stack([np.cos(params.wall_angle), np.sin(params.wall_angle)])


def _nodule_centres(params: _LungParams, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of every nodule: isolated ones anywhere in the lung, vessel-attached ones beside
    a point on the first vessel, juxta-pleural ones just inside the pleura."""
    centre = size / 2.0
    radius = params.nodule_radius
    wall_normal = _wall_normal(params)
    margin = np.minimum(radius + 2, centre - 2)
    x = margin + params.nodule_position[0] * (size - 2 * margin)
    y = margin + params.nodule_position[1] * (size - 2 * margin)
    vx0, vy0, vx1, vy1, vessel_radius, *_ = params.vessels[1]  # second segment of the main tree
    t = params.along_vessel
    on_vessel_x, on_vessel_y = vx0 + t * (vx1 - vx0), vy0 + t * (vy1 - vy0)
    vessel_length = np.maximum(np.hypot(vx1 - vx0, vy1 - vy0), 1e-6)
    offset = params.vessel_side * (radius * params.gap + vessel_radius)
    vessel_x = on_vessel_x - offset * (vy1 - vy0) / vessel_length
    vessel_y = on_vessel_y + offset * (vx1 - vx0) / vessel_length
    depth = np.maximum(radius * params.gap * 0.7, 2.5)
    pleura_x = centre + wall_normal[0] * (params.wall_offset - depth) - wall_normal[1] * params.along_wall
    pleura_y = centre + wall_normal[1] * (params.wall_offset - depth) + wall_normal[0] * params.along_wall
    attachment = params.nodule_attachment
    x = np.where(attachment == _ON_VESSEL, vessel_x, np.where(attachment == _JUXTA_PLEURAL, pleura_x, x))
    y = np.where(attachment == _ON_VESSEL, vessel_y, np.where(attachment == _JUXTA_PLEURAL, pleura_y, y))
    # Keep non-pleural nodules clear of the chest wall, and every centre in the patch.
    projection = (x - centre) * wall_normal[0] + (y - centre) * wall_normal[1]
    clearance = np.maximum(0, projection - (params.wall_offset - 0.6 * radius - 2.5))
    push = np.where(params.has_wall & (attachment != _JUXTA_PLEURAL), clearance, 0)
    x, y = x - push * wall_normal[0], y - push * wall_normal[1]
    return np.clip(x, 1.5, size - 1.5), np.clip(y, 1.5, size - 1.5)


def _nodule_outlines(params: _LungParams) -> np.ndarray:
    """(n, table) outline radius in pixels against angle: harmonics plus spicules for spiculated nodules."""
    outline = harmonic_table(params.outline_amplitude, params.outline_phase, (2, 3, 4, 5, 6),
                             _NODULE_OUTLINE_TABLE_SIZE)
    angles = np.linspace(-np.pi, np.pi, _NODULE_OUTLINE_TABLE_SIZE + 1)[None, :]
    spikes = np.maximum(0.0, np.cos(params.spicule_count[:, None] * angles + params.spicule_phase[:, None])) ** 12
    outline += (params.spiculated * params.spicule_amplitude)[:, None] * spikes
    outline += 1.0
    outline *= params.nodule_radius[:, None]
    return outline.astype(F32)


def _nodules(hu: np.ndarray, texture: np.ndarray, labels: np.ndarray, centres: tuple[np.ndarray, np.ndarray],
             params: _LungParams) -> np.ndarray:
    """Draws each positive patch's nodule into `hu` (in place) and returns the masks."""
    size = hu.shape[1]
    masks = np.zeros(hu.shape, bool)
    nodule_x, nodule_y = centres
    radius = params.nodule_radius
    outline = _nodule_outlines(params)
    half = outline.max(axis=1) + 4
    texture_hu = np.where(params.nodule_kind == _SOLID, 12.0, 35.0)
    for window in windows(labels == 1, nodule_y - 0.5, nodule_x - 0.5, half, half, size):
        i = window.idx
        count = i.size
        du, dv = window.xs - per_image(nodule_x[i]), window.ys - per_image(nodule_y[i])
        angle = np.arctan2(dv, du)
        distance = np.sqrt(du * du + dv * dv)
        outline_radius = lookup(outline[i], table_index(angle, -np.pi, np.pi, _NODULE_OUTLINE_TABLE_SIZE + 1,
                                                        centred=False))
        current = window.get(hu)
        nodule_texture = window.get(texture)
        nodule_texture *= per_image(texture_hu[i])
        kind = per_image(params.nodule_kind[i])
        # Ground glass (GGO and the halo of part-solid nodules): hazy edge, raises density
        # without hiding vessels.
        glass = ramp(outline_radius - distance, 2.5) * (kind > _SOLID)
        target = per_image(params.ground_glass_hu[i]) + nodule_texture
        glass *= np.maximum(target - current, 0.0)
        current += glass
        # Solid component: the whole nodule when solid, an off-centre core when part-solid.
        part_solid = params.nodule_kind[i] == _PART_SOLID
        core_radius = np.where(part_solid, params.core_fraction[i], 1.0)
        core_dx = du - per_image(np.where(part_solid, params.core_offset[0][i] * radius[i], 0.0))
        core_dy = dv - per_image(np.where(part_solid, params.core_offset[1][i] * radius[i], 0.0))
        core_distance = np.sqrt(core_dx * core_dx + core_dy * core_dy)
        solid = ramp(outline_radius * per_image(core_radius) - core_distance, 1.0) * (kind < _GROUND_GLASS)
        lerp_(current, per_image(params.solid_hu[i]) + nodule_texture, solid)
        window.put(hu, current)
        mask = distance < outline_radius
        nearest = np.argmin(distance.reshape(count, -1), axis=1)
        mask.reshape(count, -1)[np.arange(count), nearest] = True
        window.put(masks, mask)
    return masks


def _chest_wall(hu: np.ndarray, masks: np.ndarray, params: _LungParams) -> None:
    """Muscle with an extrapleural fat layer beyond the pleura; masks are cut at the pleura (in place)."""
    count, size = hu.shape[0], hu.shape[1]
    centre = size / 2.0
    wall_normal = _wall_normal(params)
    middle = np.full(count, centre - 0.5)
    for window in windows(params.has_wall, middle, middle, size, size, size):
        i = window.idx
        normal_x, normal_y = per_image(wall_normal[0][i]), per_image(wall_normal[1][i])
        dx, dy = window.xs - centre, window.ys - centre
        along = dx * -normal_y + dy * normal_x
        depth = dx * normal_x + dy * normal_y
        depth += per_image(params.wall_curvature[i]) * along * along
        depth -= per_image(params.wall_offset[i])  # > 0 inside the chest wall
        current = window.get(hu)
        fat = ramp(depth - per_image(params.fat_depth[i]), 1.0)
        fat *= ramp(per_image(params.fat_depth[i] + params.fat_thickness[i]) - depth, 1.0)
        wall_hu = per_image(params.muscle_hu[i]) + fat * per_image(params.fat_hu[i] - params.muscle_hu[i])
        lerp_(current, wall_hu, ramp(depth, 1.0))
        window.put(hu, current)
        mask = window.get(masks)
        mask &= depth < 0
        window.put(masks, mask)


def _keep_a_pixel_of_every_nodule(masks: np.ndarray, labels: np.ndarray,
                                  centres: tuple[np.ndarray, np.ndarray]) -> None:
    """Marks the centre pixel of a nodule whose mask the pleural cut emptied (in place)."""
    if not np.any(labels == 1):
        return
    count, size = masks.shape[0], masks.shape[1]
    nodule_x, nodule_y = centres
    emptied = np.flatnonzero((labels == 1) & ~masks.reshape(count, -1).any(axis=1))
    rows = np.clip(nodule_y[emptied].astype(int), 0, size - 1)
    cols = np.clip(nodule_x[emptied].astype(int), 0, size - 1)
    masks[emptied, rows, cols] = True


def _ct_noise(rng, hu: np.ndarray, params: _LungParams) -> None:
    """Correlated CT noise (in place): white noise mixed with a box-blurred copy of itself.

    The reconstruction kernel correlates neighbouring pixels; each part is scaled to unit variance.
    """
    noise = rng.standard_normal(hu.shape, dtype=F32)
    smooth = scipy.ndimage.uniform_filter(noise, size=(1, 3, 3), mode="wrap")
    smooth *= 3.0
    noise *= 0.6
    noise += 0.8 * smooth
    noise *= per_image(params.noise_hu)
    hu += noise


def _render_chunk(
    rng: np.random.Generator, labels: np.ndarray, size: int, difficulty: float, scratch: Scratch
) -> tuple[np.ndarray, np.ndarray]:
    """Renders one chunk of lung patches: (images, masks); `images` is a scratch buffer."""
    params = _draw_params(rng, labels, size, difficulty)
    tmp = scratch("tmp", (labels.size, size, size))
    hu, texture = _parenchyma(rng, params, size, scratch)
    _vessels(rng, hu, params, scratch, tmp)
    _airways(hu, params, tmp)
    centres = _nodule_centres(params, size)
    masks = _nodules(hu, texture, labels, centres, params)
    _chest_wall(hu, masks, params)
    _keep_a_pixel_of_every_nodule(masks, labels, centres)
    _ct_noise(rng, hu, params)
    # Lung window (centre -600, width 1500 HU) into [0, 1].
    hu -= F32(WINDOW_LOW)
    hu *= F32(1.0 / WINDOW_WIDTH)
    np.clip(hu, 0.0, 1.0, out=hu)
    return hu, masks


def lung(
    n: int, *, size: int = 64, nodule_fraction: float = 0.5, difficulty: float = 1.0, seed: int = 0
) -> PhantomSet:
    """Generates lung CT phantom patches in the lung window (see `jaxmed.data.phantoms`).

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
    validate_arguments(n, nodule_fraction, "nodule_fraction", size, difficulty, seed)
    difficulty = float(difficulty)
    return generate(
        n, nodule_fraction, seed,
        lambda rng, labels, scratch: _render_chunk(rng, labels, size, difficulty, scratch),
        CLASS_NAMES, size,
    )
