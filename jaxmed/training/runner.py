"""The one training loop: data -> jitted step -> metrics, hooks, checkpoints; the same for every family.

`run(family, config, workdir)` trains up to the session's length, resuming from the
workdir's latest checkpoint if it has one (the data stream restarts at the saved
position and the family's loop bookkeeping is restored, so a resumed run equals an
uninterrupted one). The loop never waits on the device just to log: it reads step N-1's
metrics after dispatching step N. Before every checkpoint it does wait, to check that the
state it is about to save came from finite losses; a non-finite loss stops the run with
`TrainingDiverged` and the last good checkpoint stays the latest.

What differs between families comes from their `Session` (`jaxmed.families.base`): the
arrays to stream, what to do after a step (sample grids, validation and early
stopping), and what to evaluate at the end.

Devices and hosts (`jaxmed.training.sharding`, `jaxmed.training.distributed`): the step runs
on a `mesh.data`-device mesh spanning every process; each process computes the same
global batch k from (seed, k) and places only its own devices' rows. Every process runs
every step and every hook's computation (they are collective), but only process 0 writes
config.json, metrics, plots and the progress bar; all processes call the checkpoint
save, and Orbax writes one checkpoint.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm import tqdm

from jaxmed import config as config_lib
from jaxmed.config import RunConfig
from jaxmed.data.pipeline import BatchStream, prefetch_to_device
from jaxmed.errors import TrainingDiverged
from jaxmed.families.base import Family, RunContext
from jaxmed.training import distributed, sharding
from jaxmed.training.checkpoint import Checkpoints, restore_or_init
from jaxmed.training.metrics_writer import MetricsWriter, read_metrics
from jaxmed.training.workdir import Workdir


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What every `train` call returns, whatever the family.

    Attributes:
      family: the family's name.
      workdir: the run directory.
      step: the final train step.
      epoch: the final epoch, for families trained by epochs (else None).
      metrics: what was logged at the last logged step (metrics.jsonl rows of that step, merged), {} if none.
      eval: the evaluation written to eval.json, if the family evaluates at the end.
      eval_path: that file (None if there is none).
      state: the final train state (on the device).
      definition: the run's static structure (with `state`, what a family's sampler or predictor takes).
    """

    family: str
    workdir: Path
    step: int
    epoch: int | None
    metrics: dict
    eval: dict | None
    eval_path: Path | None
    state: Any = dataclasses.field(repr=False, default=None)
    definition: Any = dataclasses.field(repr=False, default=None)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(family: Family, config: RunConfig, workdir: Path | str, data: Any = None, *,
        progress: bool = True) -> TrainResult:
    """Trains (or resumes) a run of `family` in `workdir` and evaluates it if the family does.

    Args:
      family: the model family (`jaxmed.families.get`).
      config: the run's config (see `jaxmed.training.workdir.resolve_config` for resuming).
      workdir: the run directory; created if missing.
      data: training data instead of reading `config.data` (a family-specific type:
        images for generative families, a `SplitData` for the classifier).
      progress: show a progress bar on stderr.

    Raises:
      TrainingDiverged: a loss became non-finite (the last good checkpoint is kept).
      UsageError, DataError: invalid settings or data.
    """
    paths = Workdir(Path(workdir))
    paths.root.mkdir(parents=True, exist_ok=True)
    session = family.session(config, paths, data)
    mesh = sharding.make_mesh(config.mesh.data)
    sharding.check_batch_size(config.batch_size, mesh, config.accumulate_steps)
    is_writer = distributed.is_main_process()

    with Checkpoints(paths.checkpoints, keep=config.checkpoint.keep) as checkpoints:
        state, saved = restore_or_init(checkpoints, session.init_state, config.seed, sharding.replicated(mesh))
        loop = {**session.initial_loop(), **saved}
        if is_writer:
            config_lib.save(config, paths.config)
        writer = MetricsWriter(paths.metrics, paths.events, resume_step=int(state.step)) if is_writer else None
        context = RunContext(config, paths, mesh, is_writer, writer, _log)
        try:
            if session.is_done(state, loop):
                _log(f"{paths.root}: already trained to step {int(state.step)}; nothing to train")
            else:
                state, loop = _train(family, session, state, loop, checkpoints, context, progress)
            evaluation = session.finish(state, loop, context)
        finally:
            if writer:
                writer.close()
    rows = read_metrics(paths.metrics) if paths.metrics.is_file() else []
    last = {key: value for row in rows if row["step"] == rows[-1]["step"] for key, value in row.items()} if rows else {}
    return TrainResult(family=family.name, workdir=paths.root, step=int(state.step), epoch=loop.get("epoch"),
                       metrics=last, eval=evaluation,
                       eval_path=paths.eval if evaluation is not None else None, state=state,
                       definition=session.definition)


def _train(family: Family, session, state, loop: dict, checkpoints: Checkpoints, context: RunContext,
           progress: bool):
    config, paths, writer = context.config, context.workdir, context.writer
    total = session.total_steps
    stream = BatchStream(session.arrays, config.batch_size, seed=config.seed, position=loop["position"])
    train_step = family.make_train_step(session.definition, context.mesh)
    bar = tqdm(total=total, initial=int(state.step), desc=f"train {family.name}", unit="step", file=sys.stderr,
               disable=not (progress and context.is_writer), dynamic_ncols=True)
    timer = _Throughput(config.batch_size)
    pending: tuple[int, dict] | None = None

    def finish(step_and_metrics: tuple[int, dict]) -> None:
        """Fetches a dispatched step's metrics, checks them, hands them to the session, logs them if due."""
        step, metrics = step_and_metrics
        values = {key: float(value) for key, value in jax.device_get(metrics).items()}
        if not all(np.isfinite(list(values.values()))):
            raise TrainingDiverged(
                f"non-finite loss at step {step} ({_format(values)}); stopped, the last good checkpoint is "
                f"step {checkpoints.latest_step()} in {paths.checkpoints}")
        session.record(step, values, loop)
        bar.set_postfix_str(f"{_format(values)} {timer.rate():.1f} img/s", refresh=False)
        if writer and (step % config.log.every == 0 or step == total):
            writer.write_scalars(step, {**values, "images_per_s": timer.rate()})

    best: list[Checkpoints] = []

    def best_checkpoints() -> Checkpoints:
        """W/checkpoints_best, opened on first use: one checkpoint, the session's best step so far."""
        if not best:
            best.append(Checkpoints(paths.best_checkpoints, keep=1))
        return best[0]

    rows = sharding.batch_sharding(context.mesh)
    batches = prefetch_to_device(sharding.placed_batches(stream, rows), size=2, sharding=rows)
    try:
        for step in range(int(state.step) + 1, total + 1):
            state, metrics = train_step(state, next(batches))
            if pending:
                finish(pending)
            pending = (step, metrics)
            timer.tick()
            bar.update(1)
            due = step % config.checkpoint.every == 0 or step == total
            if due or session.sync_after(step):
                finish(pending)  # blocks on this step: never checkpoint a diverged state
                pending = None
            loop["position"] = step
            state, outcome = session.after_step(step, state, loop, context)
            if due or outcome.save or outcome.stop:
                if pending:
                    finish(pending)
                    pending = None
                checkpoints.save(step, state, data=loop, config=config_lib.to_dict(config))
            if outcome.best:
                best_checkpoints().save(step, state, data=loop, config=config_lib.to_dict(config))
            if outcome.stop:
                break
        if pending:
            finish(pending)
    finally:
        batches.close()
        bar.close()
        for manager in best:
            manager.close()
    return state, loop


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
