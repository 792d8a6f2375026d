"""The training loop GANs and VAEs share: data -> jitted step -> metrics, samples, plots, checkpoints.

`train_generative(config, model, workdir)` trains up to `config.steps`, resuming from the
workdir's latest checkpoint if it has one (the data stream restarts at the saved
position, so a resumed run equals an uninterrupted one). The loop never waits on the
device just to log: it reads step N-1's metrics after dispatching step N. Before every
checkpoint it does wait, to check that the state it is about to save came from finite
losses; a non-finite loss stops the run with `TrainingDiverged` and the last good
checkpoint stays the latest.

Outputs (see `jaxmed.train.workdir`): metrics.jsonl and TensorBoard scalars every
`log.every` steps; a fixed-noise sample grid every `sample.every` steps
(plots/samples_step_NNNNNN.png); the loss curves, the real-versus-generated pixel
distribution and the model's own figures (a VAE's reconstructions) every `eval.every`
steps and at the end.

Devices and hosts (`jaxmed.train.sharding`, `jaxmed.train.distributed`): the step runs
on a `mesh.data`-device mesh spanning every process; each process computes the same
global batch k from (seed, k) and places only its own devices' rows. Every process runs
every step and every sampling computation (they are collective), but only process 0
writes config.json, metrics, plots and the progress bar; all processes call the
checkpoint save, and Orbax writes one checkpoint.

The family-specific parts come in a `GenerativeModel`: `jaxmed.train.gan_loop` and
`jaxmed.train.vae_loop` build one each.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm import tqdm

from jaxmed import data as data_lib
from jaxmed.data.pipeline import BatchStream, prefetch_to_device
from jaxmed.errors import TrainingDiverged
from jaxmed.export import SYNTHETIC_NOTE
from jaxmed.train import config as config_lib
from jaxmed.train import distributed, sharding
from jaxmed.train.checkpoint import Checkpoints, restore_or_init
from jaxmed.train.config import GanConfig, VaeConfig
from jaxmed.train.metrics_writer import MetricsWriter, read_metrics
from jaxmed.train.workdir import Workdir, record_skipped
from jaxmed.viz import generation as generation_plots
from jaxmed.viz.figures import image_grid, save_image_grid

# Offsets that derive independent streams from the one run seed.
SAMPLE_NOISE_SEED_OFFSET = 1_000_003
EVAL_SEED_OFFSET = 2_000_003


@dataclasses.dataclass(frozen=True)
class GenerativeModel:
    """What the loop needs to know about one family of generative model.

    Attributes:
      name: "gan" or "vae" (progress bar).
      init_state: key -> a fresh train state.
      make_train_step: mesh -> jitted `step(state, images) -> (state, metrics)`; metrics are scalars.
      generate: (state, z_BxZ) -> images in [-1, 1] (on the device), from latent vectors.
      latent_dim: length of z.
      loss_keys, loss_title: the metrics the loss plot draws, and its title.
      write_figures: (state, real images, plots folder, placement, write) -> None: the family's
        own figures, computed on every process and written when `write` (None: none).
    """

    name: str
    init_state: Callable[[jax.Array], Any]
    make_train_step: Callable[[jax.sharding.Mesh], Callable]
    generate: Callable[[Any, jax.Array], jax.Array]
    latent_dim: int
    loss_keys: tuple[str, ...]
    loss_title: str
    write_figures: Callable[..., None] | None = None


def load_training_images(config: GanConfig | VaeConfig, workdir: Workdir | None = None) -> np.ndarray:
    """The images a GAN or VAE config trains on: its data, restricted to `class_name` (skips listed in `workdir`)."""
    dataset = config.data.load(config.image_size, config.channels, config.seed)
    if workdir is not None:
        record_skipped(dataset.provenance, workdir)
    return data_lib.select_class(dataset, config.class_name)


def sample_images(generate: Callable[[Any, jax.Array], jax.Array], state: Any, z_NxZ: jax.Array, batch_size: int,
                  placement: jax.sharding.Sharding | None = None) -> np.ndarray:
    """Generated images for `z_NxZ`, in batches, as a host array in [-1, 1].

    Args:
      generate, state: a `GenerativeModel.generate` and its train state.
      z_NxZ: latent vectors, the same on every process.
      batch_size: images per device call.
      placement: where to put each batch of z, e.g. `sharding.replicated(mesh)` for a
        state on a mesh (required when the mesh spans several processes); None lets jit decide.
    """
    z_NxZ = np.asarray(z_NxZ)
    chunks = []
    for start in range(0, len(z_NxZ), batch_size):
        z_chunk = z_NxZ[start:start + batch_size]
        if placement is not None:
            z_chunk = sharding.place_global(z_chunk, placement)
        chunks.append(generate(state, z_chunk))
    return np.concatenate([np.asarray(chunk) for chunk in chunks])


def train_generative(config: GanConfig | VaeConfig, model: GenerativeModel, workdir: Path | str,
                     images: np.ndarray | None = None, *, progress: bool = True) -> Any:
    """Trains (or resumes) a generative model in `workdir` until `config.steps`.

    Args:
      config: the run's config (see `jaxmed.train.workdir.resolve_config` for resuming).
      model: the family's parts (from `gan_loop.gan_model` or `vae_loop.vae_model`).
      workdir: the run directory; created if missing.
      images: training images (N, H, W, C) in [-1, 1]; None loads `config.data`.
      progress: show a progress bar on stderr.

    Returns:
      The final train state.

    Raises:
      TrainingDiverged: a loss became non-finite (the last good checkpoint is kept).
      UsageError, DataError: invalid settings or data.
    """
    paths = Workdir(Path(workdir))
    paths.root.mkdir(parents=True, exist_ok=True)
    images = load_training_images(config, paths) if images is None else images
    mesh = sharding.make_mesh(config.mesh.data)
    sharding.check_batch_size(config.batch_size, mesh, config.accumulate_steps)
    is_writer = distributed.is_main_process()

    with Checkpoints(paths.checkpoints, keep=config.checkpoint.keep) as checkpoints:
        state, data = restore_or_init(checkpoints, model.init_state, config.seed, sharding.replicated(mesh))
        start = int(state.step)
        if start >= config.steps:
            print(f"{paths.root}: already trained to step {start} (steps={config.steps}); nothing to do",
                  file=sys.stderr)
            return state
        if is_writer:
            config_lib.save(config, paths.config)
        stream = BatchStream({"image": images}, config.batch_size, seed=config.seed, position=data["position"])
        writer = MetricsWriter(paths.metrics, paths.events, resume_step=start) if is_writer else None
        sample_z = jax.random.normal(jax.random.key(config.seed + SAMPLE_NOISE_SEED_OFFSET),
                                     (config.sample.n, model.latent_dim))
        train_step = model.make_train_step(mesh)
        bar = tqdm(total=config.steps, initial=start, desc=f"train {model.name}", unit="step", file=sys.stderr,
                   disable=not (progress and is_writer), dynamic_ncols=True)
        timer = _Throughput(config.batch_size)
        pending: tuple[int, dict] | None = None

        def finish(step_and_metrics: tuple[int, dict]) -> None:
            """Fetches a dispatched step's metrics, checks them, and logs them if due."""
            step, metrics = step_and_metrics
            values = {key: float(value) for key, value in jax.device_get(metrics).items()}
            if not all(np.isfinite(list(values.values()))):
                raise TrainingDiverged(
                    f"non-finite loss at step {step} ({_format(values)}); stopped, the last good checkpoint is "
                    f"step {checkpoints.latest_step()} in {paths.checkpoints}")
            bar.set_postfix_str(f"{_format(values)} {timer.rate():.1f} img/s", refresh=False)
            if writer and (step % config.log.every == 0 or step == config.steps):
                writer.write_scalars(step, {**values, "images_per_s": timer.rate()})

        rows = sharding.batch_sharding(mesh)
        batches = prefetch_to_device(sharding.placed_batches(stream, rows), size=2, sharding=rows)
        try:
            for step in range(start + 1, config.steps + 1):
                state, metrics = train_step(state, next(batches)["image"])
                if pending:
                    finish(pending)
                pending = (step, metrics)
                timer.tick()
                bar.update(1)
                if step % config.checkpoint.every == 0 or step == config.steps:
                    finish(pending)  # blocks on this step: never checkpoint a diverged state
                    pending = None
                    checkpoints.save(step, state, data={"position": step}, config=config_lib.to_dict(config))
                # Every process computes the samples (a computation on the mesh); process 0 writes them.
                if step % config.sample.every == 0 or step == config.steps:
                    samples = sample_images(model.generate, state, sample_z, config.batch_size,
                                            sharding.replicated(mesh))
                    if writer:
                        save_image_grid(samples, paths.plots / f"samples_step_{step:06d}.png",
                                            description=SYNTHETIC_NOTE)
                        writer.write_image("samples", image_grid(samples), step)
                if step % config.eval.every == 0 or step == config.steps:
                    write_plots(config, model, state, images, paths, sharding.replicated(mesh), write=is_writer)
            if pending:
                finish(pending)
        finally:
            batches.close()
            bar.close()
            if writer:
                writer.close()
    return state


def write_plots(config: GanConfig | VaeConfig, model: GenerativeModel, state: Any, images: np.ndarray,
                paths: Workdir, placement: jax.sharding.Sharding | None = None, *, write: bool = True) -> None:
    """Loss curves (the seed paper's Figure 2), real-vs-generated pixel values (Figure 3), the model's figures.

    Args:
      placement: where the state lives (see `sample_images`).
      write: False computes the generated images without writing (the other processes
        of a multi-host run, which must join the computation).
    """
    rng = np.random.default_rng(config.seed + EVAL_SEED_OFFSET)
    count = min(config.eval.n, len(images))
    real = images[rng.choice(len(images), count, replace=False)]
    z = jax.random.normal(jax.random.key(config.seed + EVAL_SEED_OFFSET), (count, model.latent_dim))
    generated = sample_images(model.generate, state, z, config.batch_size, placement)
    if model.write_figures is not None:
        model.write_figures(state, real, paths.plots, placement, write)
    if not write:
        return
    rows = read_metrics(paths.metrics)
    if rows:
        generation_plots.plot_losses(rows, paths.plots / "losses.png", keys=model.loss_keys, title=model.loss_title)
    generation_plots.plot_pixel_distribution(real, generated, paths.plots / "pixel_distribution.png")


class _Throughput:
    """Images per second over the steps since the last reading."""

    def __init__(self, batch_size: int):
        self.batch_size = batch_size
        self._start = time.perf_counter()
        self._steps = 0
        self._rate = 0.0

    def tick(self) -> None:
        self._steps += 1

    def rate(self) -> float:
        now = time.perf_counter()
        if self._steps and now > self._start:
            self._rate = self._steps * self.batch_size / (now - self._start)
            self._start, self._steps = now, 0
        return self._rate


def _format(values: dict[str, float]) -> str:
    return " ".join(f"{key}={value:.3f}" for key, value in values.items())
