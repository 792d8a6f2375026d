"""Orbax checkpoints of a run: the train state, the data position and the config.

Each saved step holds three items, so a run continues exactly:

    state   the whole train-state pytree (parameters, running statistics, EMA,
            optimizer states, step, RNG key)               ocp.args.StandardSave
    data    the data-iterator position ("position": batches
            consumed) and any other loop bookkeeping          ocp.args.JsonSave
    config  the run's config                                ocp.args.JsonSave

Saves are asynchronous (Orbax's default): the step loop continues while the arrays
are written, and Orbax commits a step directory only once it is complete, so a run
killed mid-save leaves the previous checkpoint usable. The latest `keep` steps are
kept. Restoring needs an abstract target (shapes, dtypes, shardings), so arrays are
placed directly where the current mesh wants them.
"""

from __future__ import annotations

from pathlib import Path
from collections.abc import Callable
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy, save_decision_policy

from jaxmed.errors import CheckpointError


class Checkpoints:
    """The checkpoints of one workdir.

    Args:
      directory: where step directories go (created if missing).
      keep: how many of the latest steps to keep.
    """

    def __init__(self, directory: Path, keep: int = 3):
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            # The loop decides when to save; Orbax keeps whatever it is asked to.
            save_decision_policy=save_decision_policy.ContinuousCheckpointingPolicy(),
            preservation_policy=preservation_policy.LatestN(keep),
            cleanup_tmp_directories=True,
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "data", "config"))

    def latest_step(self) -> int | None:
        """The newest complete step, or None if there is none."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """Every complete step on disk, oldest first."""
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: Any, data: dict[str, Any], config: dict[str, Any]) -> None:
        """Starts an asynchronous save of `step` (returns before the arrays are on disk).

        Args:
          step: the step number naming the checkpoint.
          state: the train-state pytree.
          data: JSON-able loop bookkeeping; "position" is the number of batches consumed.
          config: the run's config as a dict.
        """
        self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave(data),
            config=ocp.args.JsonSave(config),
        ), force=True)

    def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict[str, Any], dict[str, Any]]:
        """Restores (state, data bookkeeping, config) of `step` (default: the latest).

        Args:
          abstract_state: a pytree of `jax.ShapeDtypeStruct` (with shardings) like the saved state.
          step: which step; None for the latest.

        Raises:
          CheckpointError: if there is no checkpoint, or it cannot be read.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"{self.directory}: no checkpoint found")
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state),
                data=ocp.args.JsonRestore(),
                config=ocp.args.JsonRestore(),
            ))
        except Exception as error:  # Orbax raises many types for unreadable data; report them all in one line.
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise CheckpointError(f"{self.directory / str(step)}: cannot restore checkpoint ({reason})") from error
        return restored.state, dict(restored.data), dict(restored.config)

    def wait(self) -> None:
        """Blocks until every started save is on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Finishes pending saves and releases Orbax's resources."""
        self._manager.close()

    def __enter__(self) -> Checkpoints:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def abstract_like(tree: Any, sharding: jax.sharding.Sharding) -> Any:
    """Shape/dtype structs of `tree` (arrays or structs) placed on `sharding`, for `Checkpoints.restore`."""
    return jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding), tree)


def restore_or_init(checkpoints: Checkpoints, init: Callable[[jax.Array], Any], seed: int,
                    placement: jax.sharding.Sharding) -> tuple[Any, dict[str, Any]]:
    """The latest checkpoint's (state, data bookkeeping), or `init(key)` and {"position": 0}.

    `init` is a pure function of a PRNG key building a fresh state; it is traced
    abstractly for the restore target, and jitted onto `placement` only when there is
    nothing to restore. The key is an argument, not a constant, so runs that differ
    only in their seed share one compiled program.
    """
    key = jax.random.key(seed)
    if checkpoints.latest_step() is None:
        return jax.jit(init, out_shardings=placement)(key), {"position": 0}
    state, data, _ = checkpoints.restore(abstract_like(jax.eval_shape(init, key), placement))
    return state, data
