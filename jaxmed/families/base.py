"""What a model family is: the protocol every family module implements, and the helpers they share.

A family (GAN, VAE, classifier, ...) is one module in `jaxmed.families` that defines a
`Family` subclass and exposes one instance as `FAMILY`; `jaxmed.families.FAMILIES` maps
its name to that module. The training runner (`jaxmed.training.runner`), sampling,
evaluation, the feature extractors, the benchmarks and the studies only ever talk to a
family through this protocol, so a new family is one module plus one registry line.

The split between the two halves follows the library's pure-step rule: `definition`,
`init_state` and `train_step` are pure and jittable (the state is a pytree of arrays, the
definition the static rest); `session` builds the per-run object (`Session`) that the
runner calls around the steps: the data to stream, what to do after a step (sample
grids, validation, early stopping), and what to write at the end.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from jaxmed.config import RunConfig
from jaxmed.errors import UsageError
from jaxmed.nn import resolve_conv_backend
from jaxmed.nn.onednn import OneDnnUnavailable
from jaxmed.training import sharding


def compute_dtype(config: RunConfig):
    """The activation dtype of a run: bfloat16 for precision "bf16", None (float32) for "fp32"."""
    return jnp.bfloat16 if config.precision == "bf16" else None


def conv_backend(config: RunConfig) -> str:
    """The concrete convolution backend of a run: its `conv_backend` resolved over the run's mesh.

    Raises:
      UsageError: conv_backend="onednn" where oneDNN cannot run (the reason in one line).
    """
    try:
        return resolve_conv_backend(config.conv_backend, config.mesh.data or jax.device_count())
    except OneDnnUnavailable as error:
        raise UsageError(f"conv_backend=onednn: {error}") from None


def parameter_count(params) -> int:
    """The number of scalars in a parameter pytree."""
    return int(sum(leaf.size for leaf in jax.tree.leaves(params)))


@dataclasses.dataclass(frozen=True)
class Task:
    """What a definition needs to know of the data besides the config.

    Attributes:
      class_names: the data's classes (a conditional model or a classifier has one output per class).
      total_steps: the run's length in train steps (learning-rate schedules decay over it).
    """

    class_names: tuple[str, ...]
    total_steps: int


@dataclasses.dataclass
class StepOutcome:
    """What a session asks of the runner after a step.

    Attributes:
      save: checkpoint now (besides the runner's every `checkpoint.every` steps and the end).
      stop: end training now (e.g. early stopping); the runner saves first.
      best: this step's state is the best so far: the runner keeps it in W/checkpoints_best.
    """

    save: bool = False
    stop: bool = False
    best: bool = False


@dataclasses.dataclass
class RunContext:
    """What the runner shares with a session's hooks.

    Attributes:
      config: the run's config.
      workdir: the run's `jaxmed.training.workdir.Workdir`.
      mesh: the device mesh the state lives on.
      is_writer: this process writes files (process 0 of a multi-host run).
      writer: the metrics writer (None on the other processes).
      log: prints a line for the user (stderr).
    """

    config: RunConfig
    workdir: Any
    mesh: Mesh
    is_writer: bool
    writer: Any
    log: Callable[[str], None]

    @property
    def replicated(self) -> jax.sharding.Sharding:
        return sharding.replicated(self.mesh)

    @property
    def rows(self) -> jax.sharding.Sharding:
        return sharding.batch_sharding(self.mesh)


class Session:
    """One training run of a family: its data, definition and hooks (built by `Family.session`).

    Attributes:
      family: the family.
      config: the run's config.
      definition: the static structure (`Family.definition`).
      arrays: the training data the runner streams in batches, e.g. {"image": ..., "label": ...}.
      total_steps: the run's length in train steps.
    """

    def __init__(self, family: Family, config: RunConfig, definition: Any, arrays: Mapping[str, np.ndarray],
                 total_steps: int):
        self.family, self.config, self.definition = family, config, definition
        self.arrays, self.total_steps = dict(arrays), total_steps

    def init_state(self, key: jax.Array) -> Any:
        return self.family.init_state(self.config, self.definition, key)

    def initial_loop(self) -> dict[str, Any]:
        """Loop bookkeeping of a fresh run; a checkpoint's saved bookkeeping overrides it key by key."""
        return {"position": 0}

    def is_done(self, state: Any, loop: Mapping[str, Any]) -> bool:
        """True when there is nothing left to train."""
        return int(state.step) >= self.total_steps

    def sync_after(self, step: int) -> bool:
        """True when `after_step` needs this step's metrics already recorded (the runner then waits for them)."""
        return False

    def record(self, step: int, metrics: Mapping[str, float], loop: dict[str, Any]) -> None:
        """Receives a step's fetched metrics (in order, at most one step late); may update `loop`."""

    def after_step(self, step: int, state: Any, loop: dict[str, Any], context: RunContext
                   ) -> tuple[Any, StepOutcome]:
        """Runs after step `step` was dispatched: periodic samples, plots, validation. Returns (state, outcome)."""
        return state, StepOutcome()

    def finish(self, state: Any, loop: dict[str, Any], context: RunContext) -> dict | None:
        """Runs once after training (also when nothing was left to train); returns the evaluation, if any."""
        return None


@dataclasses.dataclass(frozen=True)
class Generator:
    """A trained generative model's sampler (`Family.generator`).

    Attributes:
      latent_dim: length of the noise vectors.
      class_names: the classes it can be asked for (empty: unconditional).
      generate: (state, z_BxZ) -> images in [-1, 1] on the device; a conditional generator
        also takes (state, z_BxZ, labels_B), labels indexing `class_names` (without them it
        draws every class in turn).
    """

    latent_dim: int
    generate: Callable[..., jax.Array]
    class_names: tuple[str, ...] = ()


class Family:
    """A model family. Subclasses set the class attributes and implement the methods they support.

    Attributes:
      name: the registry name, e.g. "gan" (`jaxmed train NAME`).
      config_type: its `RunConfig` subclass.
      description: one line for `jaxmed train --help`.
      length_key: the config field that sets the run's length, and the CLI flag for it
        ("steps" or "epochs").
      generates: the family samples images (`generator`).
    """

    name: ClassVar[str]
    config_type: ClassVar[type[RunConfig]]
    description: ClassVar[str]
    length_key: ClassVar[str] = "steps"
    #: Whether `generator` returns a sampler (checked before restoring a workdir to sample from it).
    generates: ClassVar[bool] = False

    # --- the pure half ------------------------------------------------------------
    def definition(self, config: RunConfig, task: Task) -> Any:
        """The static structure of a run (graph definitions, optimizers, settings); allocates no parameters."""
        raise NotImplementedError

    def init_state(self, config: RunConfig, definition: Any, key: jax.Array) -> Any:
        """A fresh train state (a pytree of arrays) from `key`."""
        raise NotImplementedError

    def train_step(self, definition: Any, state: Any, batch: Mapping[str, jax.Array]) -> tuple[Any, dict]:
        """One pure train step on a batch of `Session.arrays` rows: (state, batch) -> (state, scalar metrics)."""
        raise NotImplementedError

    def make_train_step(self, definition: Any, mesh: Mesh | None = None) -> Callable:
        """`train_step` for `definition`, jitted once with the state donated, compiled for `mesh`.

        With a mesh the state and metrics are replicated and every batch array split by rows;
        place the inputs that way (as the runner does) to compile once.
        """
        return sharding.jit_train_step(functools.partial(self.train_step, definition), mesh)

    # --- training ------------------------------------------------------------------
    def train(self, config: RunConfig, workdir: Path | str, data: Any = None, *, progress: bool = True):
        """Trains (or resumes) a run in `workdir`: the runner's one loop (`jaxmed.training.runner.run`).

        A family whose runs are several trainings (the classifier's cross-validation) overrides this.
        """
        from jaxmed.training import runner  # noqa: PLC0415 -- the runner imports this module

        return runner.run(self, config, workdir, data, progress=progress)

    def session(self, config: RunConfig, workdir: Path, data: Any = None) -> Session:
        """The run's data, definition and hooks; `data` overrides reading `config.data` (family-specific type)."""
        raise NotImplementedError

    # --- capabilities (a family implements those it has) -------------------------------
    def parameter_counts(self, state: Any) -> dict[str, int]:
        """Parameters per network, for benchmarks."""
        raise NotImplementedError

    def benchmark_batch(self, config: RunConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """One random batch for a train-step benchmark."""
        images = rng.uniform(-1.0, 1.0, (config.batch_size, config.image_size, config.image_size, config.channels))
        return {"image": images.astype(np.float32)}

    def networks(self, config: RunConfig) -> dict[str, tuple[Any, tuple[int, ...]]]:
        """{name prefix: (abstract network, its input shape with batch 1)}: what the conv-pool benchmark traces."""
        raise NotImplementedError

    def generator(self, config: RunConfig, definition: Any) -> Generator | None:
        """The sampler of a generative family (None: this family does not generate images)."""
        return None

    def feature_embedding(self, config: RunConfig, definition: Any, state: Any
                          ) -> Callable[[jax.Array], jax.Array] | None:
        """images (B, H, W, C) -> features (B, F) of a trained model, for in-domain metrics (None: none)."""
        return None

    def restore_task(self, config: RunConfig, workdir: Any) -> Task:
        """The `Task` of a finished run, from its workdir (to rebuild its definition for restoring)."""
        return Task(class_names=(), total_steps=getattr(config, "steps", 1))
