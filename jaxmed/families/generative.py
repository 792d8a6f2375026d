"""What the generative families (GAN, VAE, ...) share in training: their data, sample grids and plots.

`GenerativeSession` is the `Session` of every family that draws images from noise: it
streams the training images (restricted to `class_name`), saves a fixed-noise sample
grid every `sample.every` steps (plots/samples_step_NNNNNN.png and TensorBoard; a
class-conditional generator's: one grid per class, samples_step_NNNNNN_CLASS.png), and
every `eval.every` steps and at the end redraws the loss curves (the seed paper's
Figure 2), the real-versus-generated pixel distribution (Figure 3) and the family's own
figures (e.g. a VAE's reconstructions).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxmed import data as data_lib
from jaxmed import files
from jaxmed.config import GenerativeConfig
from jaxmed.data import Dataset
from jaxmed.errors import CheckpointError, UsageError
from jaxmed.export import SYNTHETIC_NOTE
from jaxmed.families.base import Family, Generator, RunContext, Session, StepOutcome, Task
from jaxmed.training import distributed, sharding
from jaxmed.training.metrics_writer import read_metrics
from jaxmed.training.workdir import Workdir, record_skipped
from jaxmed.viz import generation as generation_plots
from jaxmed.viz.figures import image_grid, save_image_grid

# Where a class-conditional run keeps its class names.
CLASSES_FILE = "classes.json"
# Offsets that derive independent streams from the one run seed.
SAMPLE_NOISE_SEED_OFFSET = 1_000_003
EVAL_SEED_OFFSET = 2_000_003


def load_training_images(config: GenerativeConfig, workdir: Workdir | None = None) -> tuple[np.ndarray, tuple]:
    """The images a generative config trains on and the data's classes (skips listed in `workdir`)."""
    dataset = data_lib.load(config.data, config.image_size, config.channels, seed=config.seed)
    if workdir is not None:
        record_skipped(dataset.provenance, workdir)
    return data_lib.select_class(dataset, config.class_name), dataset.class_names


def sample_images(generate: Callable[..., jax.Array], state: Any, z_NxZ: jax.Array, batch_size: int,
                  placement: jax.sharding.Sharding | None = None, labels_N: np.ndarray | None = None) -> np.ndarray:
    """Generated images for `z_NxZ`, in batches, as a host array in [-1, 1].

    Args:
      generate, state: a `Generator.generate` and its train state.
      z_NxZ: latent vectors, the same on every process.
      batch_size: images per device call.
      placement: where to put each batch of z, e.g. `sharding.replicated(mesh)` for a
        state on a mesh (required when the mesh spans several processes); None lets jit decide.
      labels_N: class indices for a conditional generator (None: the generator's default).
    """
    z_NxZ = np.asarray(z_NxZ)
    chunks = []
    for start in range(0, len(z_NxZ), batch_size):
        inputs = [z_NxZ[start:start + batch_size]]
        if labels_N is not None:
            inputs.append(np.asarray(labels_N, np.int32)[start:start + batch_size])
        if placement is not None:
            inputs = [sharding.place_global(array, placement) for array in inputs]
        chunks.append(generate(state, *inputs))
    return np.concatenate([np.asarray(chunk) for chunk in chunks])


class GenerativeFamily(Family):
    """A family that trains on images alone and samples from noise.

    Subclasses set `loss_keys` and `loss_title` (the loss plot) and may override
    `write_figures` (their own figures beside the shared ones).
    """

    generates = True
    loss_keys: tuple[str, ...] = ()
    loss_title: str = ""

    def session(self, config: GenerativeConfig, workdir: Workdir, data: np.ndarray | Dataset | None = None
                ) -> Session:
        """`data`: training images (N, H, W, C) in [-1, 1], or a `jaxmed.data.Dataset`, instead of `config.data`'s.

        A class-conditional run (`conditional=true`) streams every class with its labels and
        saves the class names in W/classes.json, from which `restore_task` reads them back.

        Raises:
          UsageError: a conditional run without labelled data of at least two classes.
        """
        if not getattr(config, "conditional", False):
            if isinstance(data, Dataset):
                data = data_lib.select_class(data, config.class_name)
            if data is None:
                data, _ = load_training_images(config, workdir)
            definition = self.definition(config, Task(class_names=(), total_steps=config.steps))
            return GenerativeSession(self, config, definition, {"image": data}, config.steps)
        if data is None:
            data = data_lib.load(config.data, config.image_size, config.channels, seed=config.seed)
            record_skipped(data.provenance, workdir)
        if not isinstance(data, Dataset):
            raise UsageError("conditional=true needs labelled images: a data spec or a jaxmed.data.Dataset, not an "
                             "image array")
        if len(data.class_names) < 2:
            raise UsageError(f"conditional=true needs data with at least 2 classes, got {list(data.class_names)}")
        if distributed.is_main_process():
            files.write_text(workdir.root / CLASSES_FILE, json.dumps({"class_names": list(data.class_names)}) + "\n")
        definition = self.definition(config, Task(class_names=tuple(data.class_names), total_steps=config.steps))
        arrays = {"image": data.images, "label": np.asarray(data.labels, np.int32)}
        return GenerativeSession(self, config, definition, arrays, config.steps)

    def restore_task(self, config: GenerativeConfig, workdir: Workdir) -> Task:
        """A conditional run's classes come from its classes.json (written when it started training).

        Raises:
          CheckpointError: that file is missing or unreadable.
        """
        if not getattr(config, "conditional", False):
            return Task(class_names=(), total_steps=config.steps)
        path = workdir.root / CLASSES_FILE
        try:
            names = json.loads(path.read_text())["class_names"]
        except FileNotFoundError:
            raise CheckpointError(f"{path}: missing; a conditional run writes it when it starts") from None
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise CheckpointError(f"{path}: unreadable ({error!r})") from None
        return Task(class_names=tuple(str(name) for name in names), total_steps=config.steps)

    def write_figures(self, definition: Any, state: Any, real: np.ndarray, plots: Path,
                      placement: jax.sharding.Sharding | None, write: bool) -> None:
        """The family's own figures, computed on every process and written when `write`."""


class GenerativeSession(Session):
    """Sample grids every `sample.every` steps, plots every `eval.every` steps and at the end."""

    family: GenerativeFamily

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.generator: Generator = self.family.generator(self.config, self.definition)
        self.quality = None  # a `jaxmed.evaluation.quality.QualityProbe`, built at the first measurement
        self.sample_z = jax.random.normal(jax.random.key(self.config.seed + SAMPLE_NOISE_SEED_OFFSET),
                                          (self.config.sample.n, self.generator.latent_dim))

    def initial_loop(self) -> dict[str, Any]:
        return {"position": 0, "best_fid": None, "best_step": None}

    def after_step(self, step: int, state: Any, loop: dict, context: RunContext) -> tuple[Any, StepOutcome]:
        config, last = self.config, step == self.total_steps
        outcome = StepOutcome()
        # Every process computes the samples (a computation on the mesh); process 0 writes them.
        if step % config.sample.every == 0 or last:
            self.save_samples(step, state, context)
        if step % config.eval.every == 0 or last:
            self.write_plots(state, context.workdir, context.replicated, write=context.is_writer)
        # Not at the end of a run shorter than `eval.every`: a short run would pay for training an extractor.
        if config.eval.fid and step % config.eval.every == 0:
            outcome = self.measure_quality(step, state, loop, context)
        return state, outcome

    def measure_quality(self, step: int, state: Any, loop: dict, context: RunContext) -> StepOutcome:
        """FID and friends of this step's generator (logged); a new best FID asks the runner to keep the state."""
        if jax.process_count() > 1:  # the extractor is a run of its own; not across hosts (yet)
            return StepOutcome()
        if self.quality is None:
            from jaxmed.evaluation.quality import QualityProbe  # noqa: PLC0415 -- evaluation builds on families

            self.quality = QualityProbe(self.config, context.workdir, self.arrays["image"])
        values = self.quality.measure(self.generator, state, context.replicated)
        if context.writer:
            context.writer.write_scalars(step, values)
        context.log(f"step {step}: " + ", ".join(f"{key} {value:.4g}" for key, value in values.items()))
        improved = np.isfinite(values["fid"]) and (loop["best_fid"] is None or values["fid"] < loop["best_fid"])
        if improved:
            loop.update(best_fid=values["fid"], best_step=step)
        # The latest checkpoint is saved with the best one, so a resumed run knows the best FID so far.
        return StepOutcome(save=bool(improved), best=bool(improved))

    def save_samples(self, step: int, state: Any, context: RunContext) -> None:
        """The fixed-noise grid of step `step`; a conditional generator's: one grid per class, the same noise."""
        names = self.generator.class_names
        for index, name in enumerate(names or ("",)):
            labels = np.full(len(self.sample_z), index, np.int32) if names else None
            samples = sample_images(self.generator.generate, state, self.sample_z, self.config.batch_size,
                                    context.replicated, labels)
            if context.writer:
                suffix = f"_{name}" if names else ""
                save_image_grid(samples, context.workdir.plots / f"samples_step_{step:06d}{suffix}.png",
                                description=SYNTHETIC_NOTE)
                context.writer.write_image(f"samples{'/' if names else ''}{name}", image_grid(samples), step)

    def write_plots(self, state: Any, paths: Workdir, placement: jax.sharding.Sharding | None = None, *,
                    write: bool = True) -> None:
        """Loss curves, real-vs-generated pixel values, the family's figures.

        Args:
          placement: where the state lives (see `sample_images`).
          write: False computes the generated images without writing (the other processes
            of a multi-host run, which must join the computation).
        """
        config, images = self.config, self.arrays["image"]
        rng = np.random.default_rng(config.seed + EVAL_SEED_OFFSET)
        count = min(config.eval.n, len(images))
        real = images[rng.choice(len(images), count, replace=False)]
        z = jax.random.normal(jax.random.key(config.seed + EVAL_SEED_OFFSET), (count, self.generator.latent_dim))
        generated = sample_images(self.generator.generate, state, z, config.batch_size, placement)
        self.family.write_figures(self.definition, state, real, paths.plots, placement, write)
        if not write:
            return
        rows = [row for row in read_metrics(paths.metrics) if any(key in row for key in self.family.loss_keys)]
        if rows:
            generation_plots.plot_losses(rows, paths.plots / "losses.png", keys=self.family.loss_keys,
                            title=self.family.loss_title)
        generation_plots.plot_pixel_distribution(real, generated, paths.plots / "pixel_distribution.png")
