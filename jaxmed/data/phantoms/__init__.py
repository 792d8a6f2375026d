"""Procedural medical-image phantoms: the embedded default data set.

Two generators produce labelled image sets deterministically from a seed, with no
download, in vectorised numpy (chunks of ~2**19 pixels rendered on a few threads):

`brain` (`jaxmed.data.phantoms.brain_mri`)
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

`lung` (`jaxmed.data.phantoms.lung_ct`)
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

from jaxmed.data.phantoms.brain_mri import brain
from jaxmed.data.phantoms.common import PhantomSet
from jaxmed.data.phantoms.lung_ct import lung

__all__ = ["PhantomSet", "brain", "lung"]
