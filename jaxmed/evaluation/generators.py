"""Evaluate a trained GAN or VAE: fidelity, diversity and memorisation against real images.

`evaluate_generator(workdir, out)` (the `jaxmed evaluate` command):
1. restores the workdir's generator (a GAN's EMA generator, a VAE's decoder) and draws
   `n` images;
2. loads three sets of real images, all restricted to the class the generator learned:
   the **training** images it saw, a **reference** set (`data`, by default the
   generator's own data source; phantom sources are drawn afresh with another seed, so
   they are unseen patients), and the **held-out** part of the reference (every reference
   image that is not a copy of a training image);
3. embeds all of them with an in-domain feature extractor (`jaxmed.evaluation.features`):
   a VAE or classifier workdir (`features`), or a VAE trained here on the generator's data
   source (every class) into `out/feature_extractor`, resumed and reused on the next run;
4. computes (`jaxmed.metrics.generative`) FID, KID, precision/recall/density/coverage and
   diversity against the reference, the same FID and KID between held-out and training
   images (what two real samples of the source score: the floor to read FID against), and
   memorisation: generated images that are exact or near copies of training images (the
   perceptual-hash test of `jaxmed.data.duplicates`), each generated image's highest
   thumbnail correlation with a training image against the held-out images' own, and
   Meehan et al.'s data-copying Z in feature space;
5. writes `out/eval.json` and plots: a sample grid, the closest generated/training
   pairs, the pixel-value distribution and the feature embedding.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxmed import data as data_lib
from jaxmed.data import duplicates
from jaxmed.errors import DataError, TrainingDiverged
from jaxmed.export import SYNTHETIC_NOTE
from jaxmed import families
from jaxmed.config import GenerativeConfig
from jaxmed.evaluation.features import FeatureExtractor, load_feature_extractor
from jaxmed.families.generative import sample_images
from jaxmed.metrics import generative, pixels
from jaxmed.sampling import restore_generator
from jaxmed.training.checkpoint import Checkpoints
from jaxmed.training.workdir import Workdir
from jaxmed.viz import evaluation as evaluation_plots
from jaxmed.viz import generation as generation_plots
from jaxmed.viz.figures import save_image_grid

# Phantom reference sets are drawn with the generator's seed plus this: new patients.
REFERENCE_SEED_OFFSET = 3_000_017
# Train steps of the VAE trained as feature extractor when none is given (64 px, batch 16: about a minute
# on a 2-core CPU; its loss has flattened by then).
FEATURE_EXTRACTOR_STEPS = 600
# Closest generated/training pairs drawn in the memorisation figure.
CLOSEST_PAIRS = 8
# Below this many held-out images the data-copying test and the real-vs-real floor are not computed.
MIN_HELD_OUT = 10
# Copy pairs listed in eval.json (all are counted).
LISTED_COPIES = 20
# Reference images used at most (a random subset beyond): the pairwise distances of
# precision/recall and diversity grow with the square (5,000: about 100 MB a matrix).
MAX_REFERENCE = 5000


def reference_images(config: GenerativeConfig, spec: str | None = None) -> tuple[np.ndarray, dict]:
    """The real images to compare against: `spec` (default: the generator's source), the generator's class.

    Phantom sources are drawn with seed `config.seed + REFERENCE_SEED_OFFSET`, so they are new
    patients; other sources are what they are.
    """
    data_config = dataclasses.replace(config.data, spec=spec) if spec else config.data
    dataset = data_lib.load(data_config, config.image_size, config.channels, seed=config.seed + REFERENCE_SEED_OFFSET)
    return data_lib.select_class(dataset, config.class_name), dataset.provenance


def train_feature_extractor(config: GenerativeConfig, images: np.ndarray, folder: Path, *,
                            steps: int = FEATURE_EXTRACTOR_STEPS, progress: bool = True) -> None:
    """Trains a VAE feature extractor on `images` in `folder`, unless one of `steps` steps is there already.

    `images` are real images of the domain, every class (the generator's data source, or a
    study's training split). The VAE takes `config`'s (the generator's) image size, channels,
    batch size, seed and data description; its own defaults otherwise.
    """
    paths = Workdir(folder)
    if paths.has_checkpoints():
        with Checkpoints(paths.checkpoints) as checkpoints:
            if checkpoints.latest_step() >= steps:
                return
    vae_family = families.get("vae")
    vae = vae_family.config_type(image_size=config.image_size, channels=config.channels,
                                 batch_size=config.batch_size, steps=steps, seed=config.seed, data=config.data)
    print(f"training an in-domain feature extractor (a VAE, {steps} steps on {len(images)} images of "
          f"{config.data.spec}) in {folder}; pass --features {folder} to evaluate another generator with it",
          file=sys.stderr)
    vae_family.train(vae, folder, images, progress=progress)


def _copies(train: np.ndarray, others: np.ndarray) -> duplicates.Pairs:
    """Pairs (training index, index in `others`) of exact or near copies (`jaxmed.data.duplicates`' rules)."""
    pairs = duplicates.near_duplicate_pairs(np.concatenate([train, others]))
    across = (pairs.first < len(train)) & (pairs.second >= len(train))
    return duplicates.Pairs(pairs.first[across], pairs.second[across] - len(train), pairs.distance[across],
                            pairs.correlation[across])


def _nearest_by_correlation(queries: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query image, the training image whose thumbnail correlates most with it, and that correlation."""
    correlation = duplicates.unit_thumbnails(queries) @ duplicates.unit_thumbnails(train).T
    index = np.argmax(correlation, axis=1)
    return index, correlation[np.arange(len(index)), index]


def _summary(values: np.ndarray) -> dict[str, float]:
    return {"median": float(np.median(values)), "p95": float(np.percentile(values, 95)), "max": float(np.max(values))}


def _check_counts(generated: int, reference: int) -> None:
    smallest = generative.NEAREST_K + 1  # precision and recall need k neighbours besides each image
    if min(generated, reference) < smallest:
        raise DataError(f"need at least {smallest} reference and {smallest} generated images, got {reference} and "
                        f"{generated}")


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Generated images measured against real ones (`compare_with_real`).

    Attributes:
      report: the metrics of eval.json (counts, FID, KID, precision/recall/density/coverage,
        diversity, pixel distance, real floor, memorisation).
      train, reference, generated: the images compared.
      features: "training", "held-out real", "generated" -> their features.
      nearest: for each generated image, the index of the training image whose thumbnail
        correlates most with it, and that correlation.
    """

    report: dict
    train: np.ndarray
    reference: np.ndarray
    generated: np.ndarray
    features: dict[str, np.ndarray]
    nearest: tuple[np.ndarray, np.ndarray]

    def write_plots(self, folder: Path) -> None:
        """samples.png, nearest_training.png, pixel_distribution.png and features.png in `folder`."""
        save_image_grid(self.generated[:64], folder / "samples.png", description=SYNTHETIC_NOTE)
        index, correlation = self.nearest
        order = np.argsort(-correlation)[:CLOSEST_PAIRS]
        evaluation_plots.plot_nearest_training(
            self.generated[order], self.train[index[order]], correlation[order], folder / "nearest_training.png",
            title="Generated images most like a training image (thumbnail correlation)")
        generation_plots.plot_pixel_distribution(self.reference, self.generated, folder / "pixel_distribution.png")
        evaluation_plots.plot_feature_embedding(self.features, folder / "features.png")


#: The numbers an evaluation is summed up by, in table order (`headline`).
HEADLINE_KEYS = ("fid", "kid", "precision", "recall", "copies", "data_copying_z")


def headline(report: dict) -> dict[str, float | None]:
    """An eval.json report's headline numbers, flat (`HEADLINE_KEYS`): for tables of many runs.

    The KID is its mean over subsets; the data-copying Z is None where too few held-out images
    allowed no test.
    """
    copying = report["memorization"]["data_copying"]
    return {"fid": report["fid"], "kid": report["kid"]["mean"], "precision": report["precision"],
            "recall": report["recall"], "copies": report["memorization"]["copies"],
            "data_copying_z": copying["z"] if copying else None}


def compare_with_real(generated: np.ndarray, train: np.ndarray, reference: np.ndarray,
                      extractor: FeatureExtractor, *, seed: int = 0) -> Comparison:
    """FID, KID, precision/recall, diversity and memorisation of `generated` against real images.

    Args:
      generated: (N, H, W, C) generated images in [-1, 1].
      train: the images the generator trained on.
      reference: real images to measure fidelity and diversity against (those that are not
        copies of training images also serve as the held-out set of the memorisation tests).
      extractor: the embedding (its image size and channels must match).
      seed: seeds KID's subsets.

    Raises:
      DataError: fewer than `NEAREST_K + 1` generated or reference images, or the extractor
        takes other images.
      TrainingDiverged: a generated image is not finite.
    """
    _check_counts(len(generated), len(reference))
    if not np.all(np.isfinite(generated)):
        raise TrainingDiverged("the generator makes non-finite images")
    if generated.shape[1:] != (extractor.image_size, extractor.image_size, extractor.channels):
        raise DataError(f"{extractor.workdir}: the feature extractor takes {extractor.image_size} px, "
                        f"{extractor.channels} channel(s); the generator makes {generated.shape[1]} px, "
                        f"{generated.shape[3]} channel(s)")
    held_out_index = np.setdiff1d(np.arange(len(reference)), _copies(train, reference).second)
    held_out = reference[held_out_index]
    f_train, f_reference, f_generated = extractor(train), extractor(reference), extractor(generated)
    f_held_out = f_reference[held_out_index]
    kid_mean, kid_std = generative.kernel_distance(f_reference, f_generated, seed=seed)
    diversity = {"generated": generative.diversity(f_generated), "reference": generative.diversity(f_reference)}
    report = {
        "counts": {"generated": len(generated), "training": len(train), "reference": len(reference),
                   "held_out": len(held_out)},
        "feature_extractor": {"workdir": str(extractor.workdir), "model": extractor.model,
                              "features": int(f_reference.shape[1]), **extractor.about},
        "fid": generative.frechet_distance(f_reference, f_generated),
        "kid": {"mean": kid_mean, "std": kid_std},
        **generative.precision_recall(f_reference, f_generated),
        "diversity": {**diversity, "ratio": diversity["generated"] / max(diversity["reference"], 1e-12)},
        "pixel_wasserstein": pixels.pixel_histogram_distance(reference, generated),
        "real_floor": _real_floor(f_train, f_held_out, seed),
    }
    report["memorization"], nearest = memorization(train, held_out, generated, f_train, f_held_out, f_generated)
    features = {"training": f_train, "held-out real": f_held_out, "generated": f_generated}
    return Comparison(report, train, reference, generated, {k: v for k, v in features.items() if len(v)}, nearest)


def evaluate_generator(workdir: Path | str, out: Path | str, *, data: str | None = None,
                       features: Path | str | None = None, feature_steps: int = FEATURE_EXTRACTOR_STEPS,
                       n: int | None = None, seed: int = 0, max_reference: int = MAX_REFERENCE,
                       checkpoint: str | int = "best", settings: Mapping[str, Any] | None = None,
                       progress: bool = True) -> dict:
    """Evaluates the generator of a GAN or VAE workdir (see the module docstring); writes `out/eval.json` and plots.

    Args:
      workdir: a GAN or VAE run directory.
      out: output folder (created).
      data: reference data spec; None uses the generator's own source.
      features: a VAE or finished classifier workdir to embed images with
        (`jaxmed.evaluation.features`); None uses the one the run measured its quality with
        during training (W/feature_extractor), else trains a VAE for `feature_steps` steps in
        `out/feature_extractor`, or reuses the one a previous evaluation left there.
      n: number of generated images; None: as many as reference images.
      seed: noise seed of the generated images (and of the reference subset).
      max_reference: reference images used at most; a larger reference set is subsampled
        at random (eval.json's `counts.reference_available` says from how many).
      checkpoint: "best" (the best step by FID where the run measured it, else the latest),
        "latest" or a step number.
      settings: config overrides for drawing, e.g. {"sampling.sampler": "ddim", "sampling.steps": 50}
        for a diffusion run (`jaxmed.sampling.restore_generator`); recorded in eval.json.
      progress: show progress bars.

    Returns:
      The report written to eval.json.

    Raises:
      CheckpointError: the workdir or the feature extractor cannot be restored.
      DataError: the data cannot be read, there are too few images, or the feature extractor
        takes another image size.
      TrainingDiverged: the generator makes non-finite images.
      UsageError: a setting the run does not have.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    run, generator = restore_generator(workdir, checkpoint, settings)
    config, state = run.config, run.state
    # What the generator trained on.
    dataset = data_lib.load(config.data, config.image_size, config.channels, seed=config.seed)
    reference, provenance = reference_images(config, data)
    available = len(reference)
    if available > max_reference:
        reference = reference[np.sort(np.random.default_rng(seed).choice(available, max_reference, replace=False))]
    context = f"{workdir} (checkpoint step {int(state.step)}) against {provenance.get('spec')}"
    n = n or len(reference)
    try:
        _check_counts(n, len(reference))  # before minutes of training a feature extractor
        z = jax.random.normal(jax.random.key(seed), (n, generator.latent_dim))
        generated = sample_images(generator.generate, state, z, batch_size=64)
        if features is None and Workdir(run.workdir.root / "feature_extractor").has_checkpoints():
            features = run.workdir.root / "feature_extractor"  # the one the run measured its quality with
        if features is None:
            features = out / "feature_extractor"
            train_feature_extractor(config, dataset.images, features, steps=feature_steps, progress=progress)
        comparison = compare_with_real(generated, data_lib.select_class(dataset, config.class_name), reference,
                                       load_feature_extractor(features), seed=seed)
    except (DataError, TrainingDiverged) as error:
        raise type(error)(f"{context}: {error}") from None
    report = {"workdir": str(Path(workdir)), "model": config.model, "step": int(state.step), "seed": seed,
              "class_name": config.class_name, "settings": dict(settings or {}),
              "reference_data": {key: value for key, value in provenance.items() if key not in ("splits", "files")},
              **comparison.report}
    report["counts"]["reference_available"] = available
    (out / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    comparison.write_plots(out / "plots")
    return report


def _real_floor(f_train: np.ndarray, f_held_out: np.ndarray, seed: int) -> dict | None:
    """FID and KID between held-out and training images: what real data scores against real data."""
    if len(f_held_out) < MIN_HELD_OUT:
        return None
    kid_mean, kid_std = generative.kernel_distance(f_held_out, f_train, seed=seed)
    return {"fid": generative.frechet_distance(f_held_out, f_train), "kid": {"mean": kid_mean, "std": kid_std}}


def memorization(train: np.ndarray, held_out: np.ndarray, generated: np.ndarray, f_train: np.ndarray,
                 f_held_out: np.ndarray, f_generated: np.ndarray) -> tuple[dict, tuple[np.ndarray, np.ndarray]]:
    """Does the generator copy its training images? Images (N, H, W, C) and their features.

    Returns:
      The report's memorisation section (copies, nearest-training correlations, the
      data-copying test when there are enough held-out images), and for each generated
      image (the index of the training image with the highest thumbnail correlation, that correlation).
    """
    copies = _copies(train, generated)
    nearest = _nearest_by_correlation(generated, train)
    section = {
        "copies": int(len(np.unique(copies.second))),
        "copy_pairs": [{"generated": int(g), "training": int(t), "hash_bits": int(bits), "correlation": float(c)}
                       for t, g, bits, c in list(zip(*copies))[:LISTED_COPIES]],
        "nearest_training_correlation": {"generated": _summary(nearest[1])},
        "data_copying": None,
    }
    if len(held_out) >= MIN_HELD_OUT:
        section["nearest_training_correlation"]["held_out"] = _summary(_nearest_by_correlation(held_out, train)[1])
        section["data_copying"] = generative.data_copying_test(f_train, f_held_out, f_generated)
    else:
        section["data_copying_unavailable"] = (f"{len(held_out)} held-out images (fewer than {MIN_HELD_OUT}): "
                                               f"pass --data with real images the generator did not train on")
    return section, nearest
