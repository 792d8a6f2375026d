"""The study's arms: what each trains its classifier on, and how that training split is built.

Every arm shares one seed's validation and test splits; only the training split differs:

    real                       the scarce real training split
    augment                    the same with classic augmentation: the baseline every arm is compared to
    GEN+augment+synthetic_xR   scarce real + classic augmentation + R synthetic minority images per real one
    GEN+filtered_xR            as above, with the synthetic images the augment arm's classifier ranks most minority-like
    GEN+tstr                   real majority + synthetic minority only (no real minority), with augmentation
    all_real                   the whole real training split (no scarcity), with augmentation: the upper bound
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxmed.families.classifier import SplitData

BASELINE = "augment"
ALL_REAL = "all_real"
#: How many candidates the filter calls minority at this probability or more is reported beside the filtered arm.
FILTER_THRESHOLD = 0.5


@dataclasses.dataclass(frozen=True)
class Arm:
    """One way of building the training split.

    Attributes:
      name: as it appears in study.json and the report.
      kind: "real", "augment", "synthetic", "filtered", "tstr" or "all_real".
      augment: the classifier trains with classic augmentation.
      generator: the generative family whose images it adds ("" for the real-only arms).
      ratio: synthetic minority images per real minority training image (tstr: replaced one for one).
    """

    name: str
    kind: str
    augment: bool
    generator: str = ""
    ratio: float = 0.0

    @property
    def folder(self) -> str:
        """The arm's run directory name ('+' is awkward in paths)."""
        return self.name.replace("+", "_plus_")


def study_arms(generators: tuple[str, ...], ratios: tuple[float, ...], filter_ratio: float) -> list[Arm]:
    """The arms in the order they are trained (the baseline before the arms whose filter needs it).

    Args:
      generators: generative family names.
      ratios: the synthetic:real ratios of the synthetic arms.
      filter_ratio: the filtered arm's ratio (0: no filtered arm).
    """
    arms = [Arm("real", "real", augment=False), Arm(BASELINE, "augment", augment=True)]
    for generator in generators:
        arms += [Arm(f"{generator}+augment+synthetic_x{ratio:g}", "synthetic", True, generator, ratio)
                 for ratio in sorted(ratios)]
        if filter_ratio:
            arms.append(Arm(f"{generator}+filtered_x{filter_ratio:g}", "filtered", True, generator, filter_ratio))
        arms.append(Arm(f"{generator}+tstr", "tstr", True, generator, 1.0))
    arms.append(Arm(ALL_REAL, "all_real", augment=True))
    return arms


def synthetic_count(ratio: float, real_minority: int) -> int:
    """Synthetic images an arm adds: `ratio` per real minority training image, rounded."""
    return int(round(ratio * real_minority))


def make_scarce(data: SplitData, minority: int, keep: int, seed: int) -> SplitData:
    """Keeps `keep` random minority images in the training split (0 = keep all).

    The kept images are the first `keep` of one permutation fixed by `seed`, so a smaller
    count's images are a subset of a larger count's.
    """
    images, labels = data.train
    minority_rows = np.flatnonzero(labels == minority)
    if keep == 0 or keep >= len(minority_rows):
        return data
    dropped = np.random.default_rng(seed).permutation(minority_rows)[keep:]
    kept = np.setdiff1d(np.arange(len(labels)), dropped)
    return dataclasses.replace(data, train=(images[kept], labels[kept]))


def with_images(data: SplitData, extra: np.ndarray, label: int) -> SplitData:
    """`data` with `extra` images of class `label` appended to its training split."""
    images, labels = data.train
    return dataclasses.replace(data, train=(np.concatenate([images, extra.astype(images.dtype)]),
                                            np.concatenate([labels, np.full(len(extra), label, labels.dtype)])))


def without_class(data: SplitData, label: int) -> SplitData:
    """`data` with every training image of class `label` removed (validation and test untouched)."""
    images, labels = data.train
    keep = labels != label
    return dataclasses.replace(data, train=(images[keep], labels[keep]))


def filter_synthetic(candidates: np.ndarray, minority_probability: np.ndarray, wanted: int) -> np.ndarray:
    """The `wanted` candidates the filter finds most likely minority images, in stream order.

    A ranking, not a threshold: a filter trained on a scarce class is often unsure of it (on
    the phantoms it called none of the GAN's tumours a tumour at p >= 0.5), and a threshold
    would then leave the arm without synthetic images. How many pass `FILTER_THRESHOLD` is
    reported beside it.
    """
    ranked = np.argsort(-minority_probability, kind="stable")[:wanted]
    return candidates[np.sort(ranked)]


def training_split(arm: Arm, scarce: SplitData, minority: int, synthetic: np.ndarray,
                   filtered: np.ndarray | None = None) -> SplitData:
    """The data an arm's classifier trains on.

    Args:
      arm: the arm.
      scarce: the seed's split with the scarce minority training images (for all_real: the split
        before scarcity, which that arm trains on as it is).
      minority: the minority class index.
      synthetic: the arm's generator's image stream (the arm takes its first images).
      filtered: the filtered arm's images (already selected by `filter_synthetic`).
    """
    real_minority = int(np.sum(scarce.train[1] == minority))
    if arm.kind in ("real", "augment", "all_real"):
        return scarce
    if arm.kind == "synthetic":
        return with_images(scarce, synthetic[:synthetic_count(arm.ratio, real_minority)], minority)
    if arm.kind == "filtered":
        return with_images(scarce, filtered, minority)
    if arm.kind == "tstr":
        return with_images(without_class(scarce, minority), synthetic[:synthetic_count(arm.ratio, real_minority)],
                           minority)
    raise ValueError(f"unknown arm kind {arm.kind!r}")
