"""Orbax checkpoints of a run: the train state, the data position and the config.

Each saved step holds four items, so a run continues exactly:

    state      the whole train-state pytree (parameters, running statistics, EMA,
               optimizer states, step, RNG key)               ocp.args.StandardSave
    data       the data-iterator position ("position": batches
               consumed) and any other loop bookkeeping         ocp.args.JsonSave
    config     the run's config                               ocp.args.JsonSave
    checksums  a checksum of every state leaf, of `data` and
               of `config`, computed before the save            ocp.args.JsonSave

Crash safety:

- Saves are asynchronous (Orbax's default): the step loop continues while the
  arrays are written. Orbax writes a step into `<step>.orbax-checkpoint-tmp` and
  renames it to `<step>` once every item is complete (an atomic rename on local
  file systems), so a run killed mid-save leaves the previous checkpoint usable.
  The unfinished directory is removed by the next run's first save.
- A checkpoint that was committed but is damaged (a truncated, deleted, zeroed or
  altered file; garbage in a JSON item) fails to restore: Orbax raises, or the
  restored values do not match the saved checksums. `restore` then says so in one
  line on stderr, moves the step aside to `<step>.corrupt-<time>` (kept for
  inspection; Orbax no longer sees it, so the step number can be saved again)
  and uses the next older checkpoint. If no checkpoint restores, nothing is
  moved and `CheckpointError` names each step and its problem.

Restoring needs an abstract target (shapes, dtypes, shardings), so arrays are
placed directly where the current mesh wants them, whatever mesh saved them.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shutil
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from orbax.checkpoint.checkpoint_managers import preservation_policy, save_decision_policy

from jaxmed.errors import CheckpointError

ITEM_NAMES = ("state", "data", "config", "checksums")
CORRUPT_MARKER = ".corrupt-"
# Longest problem description kept from an Orbax / TensorStore error (theirs run to kilobytes).
MAX_PROBLEM_CHARS = 240


class Checkpoints:
    """The checkpoints of one workdir.

    Opening one only reads; the first `save` also removes unfinished saves left by a
    killed run (see the module docstring).

    Args:
      directory: where step directories go (created if missing).
      keep: how many of the latest steps to keep.
    """

    def __init__(self, directory: Path, keep: int = 3):
        self.directory = Path(directory).absolute()
        self._name_format = ocp.path.step.standard_name_format()
        options = ocp.CheckpointManagerOptions(
            # The loop decides when to save; Orbax keeps whatever it is asked to.
            save_decision_policy=save_decision_policy.ContinuousCheckpointingPolicy(),
            preservation_policy=preservation_policy.LatestN(keep),
            step_name_format=self._name_format,
            # Orbax's own cleanup runs when any manager is created, in a background
            # thread: opening a workdir just to read it (sampling from a run that is
            # still training) would delete that run's save in progress, and two
            # managers would race. Unfinished saves are removed by our first save.
            cleanup_tmp_directories=False,
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=ITEM_NAMES)
        self._unfinished_saves_removed = False

    def latest_step(self) -> int | None:
        """The newest committed step, or None if there is none (it may still fail to restore)."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """Every committed step on disk, oldest first."""
        return sorted(self._manager.all_steps())

    def step_path(self, step: int) -> Path:
        """The directory of `step`."""
        return Path(ocp.path.step.build_step_path(self.directory, self._name_format, step))

    def save(self, step: int, state: Any, data: dict[str, Any], config: dict[str, Any]) -> None:
        """Starts an asynchronous save of `step` (returns before the arrays are on disk).

        Blocks only for what cannot be deferred: a previous save still being written,
        the state's checksums (a CRC-32 of a host copy of each leaf: about 30 ms for
        the 46 MB state of the 128 px DCGAN on a CPU) and Orbax's copy of the arrays
        off the devices.

        Args:
          step: the step number naming the checkpoint.
          state: the train-state pytree.
          data: JSON-able loop bookkeeping; "position" is the number of batches consumed.
          config: the run's config as a dict.
        """
        if not self._unfinished_saves_removed:
            self._remove_unfinished_saves()
        checksums = {"state": state_checksums(state), "data": json_checksum(data), "config": json_checksum(config)}
        self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave(copy.deepcopy(data)),  # the caller may change its dict during the write
            config=ocp.args.JsonSave(config),
            checksums=ocp.args.JsonSave(checksums),
        ), force=True)

    def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict[str, Any], dict[str, Any]]:
        """Restores (state, data bookkeeping, config) of `step`, or of the newest usable step.

        With `step=None`, a damaged newest checkpoint is reported in one line on
        stderr, moved aside (`<step>.corrupt-<time>`) and the next older one is used.

        Args:
          abstract_state: a pytree of `jax.ShapeDtypeStruct` (with shardings) like the saved state.
          step: which step (no fallback); None for the newest usable one.

        Raises:
          CheckpointError: if there is no checkpoint, or none (or not `step`) can be restored.
        """
        if step is not None:
            return self._restore_verified(step, abstract_state)
        steps = sorted(self._manager.all_steps(), reverse=True)
        if not steps:
            raise CheckpointError(f"{self.directory}: no checkpoint found")
        failures: list[tuple[int, CheckpointError]] = []
        for candidate in steps:
            try:
                restored = self._restore_verified(candidate, abstract_state)
            except CheckpointError as error:
                failures.append((candidate, error))
                continue
            # Only now is it clear the newer steps are damaged, not the request
            # (a wrong abstract target fails on every step and moves nothing).
            for damaged, error in failures:
                self._move_aside(damaged, error, used_step=candidate)
            return restored
        problems = "; ".join(f"step {failed}: {error.problem}" for failed, error in failures)
        raise CheckpointError(f"{self.directory}: no checkpoint can be restored ({problems})")

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

    def _restore_verified(self, step: int, abstract_state: Any) -> tuple[Any, dict[str, Any], dict[str, Any]]:
        """Restores `step` and checks it against its saved checksums."""
        path = self.step_path(step)
        # Checkpoints written before checksums existed restore unverified.
        verified = (path / "checksums").is_dir()
        items = {"state": ocp.args.StandardRestore(abstract_state), "data": ocp.args.JsonRestore(),
                 "config": ocp.args.JsonRestore()}
        if verified:
            items["checksums"] = ocp.args.JsonRestore()
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(**items))
        except Exception as error:  # Orbax raises many types for unreadable data; report them all in one line.
            _ignore_abandoned_reads()
            raise UnusableCheckpoint(path, _describe(error, path)) from error
        state, data, config = restored.state, dict(restored.data), dict(restored.config)
        if verified:
            saved = restored.checksums
            if saved.get("data") != json_checksum(data):
                raise UnusableCheckpoint(path, "data item does not match its saved checksum")
            if saved.get("config") != json_checksum(config):
                raise UnusableCheckpoint(path, "config item does not match its saved checksum")
            actual = state_checksums(state)
            for leaf in sorted(set(saved.get("state", {})) | set(actual)):
                if saved.get("state", {}).get(leaf) != actual.get(leaf):
                    raise UnusableCheckpoint(path, f"state leaf {leaf} does not match its saved checksum")
        return state, data, config

    def _move_aside(self, step: int, error: CheckpointError, used_step: int) -> None:
        """Renames a damaged step so Orbax ignores it, and says so in one line."""
        source = self.step_path(step)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        target = source.with_name(f"{source.name}{CORRUPT_MARKER}{stamp}")
        suffix = 1
        while target.exists():
            suffix += 1
            target = source.with_name(f"{source.name}{CORRUPT_MARKER}{stamp}-{suffix}")
        if jax.process_index() == 0:
            source.rename(target)
            print(f"jaxmed: {error}; moved it to {target.name}; using step {used_step} instead", file=sys.stderr)
        if jax.process_count() > 1:  # every process must see the rename before Orbax lists steps again
            multihost_utils.sync_global_devices(f"jaxmed: moved aside {source}")
        self._manager.reload()

    def _remove_unfinished_saves(self) -> None:
        """Deletes `<step>.orbax-checkpoint-tmp` directories left by a killed save."""
        if jax.process_index() == 0:
            for unfinished in ocp.path.step.all_temporary_paths(self.directory):
                # A missing tree is fine: nothing is left to clean.
                shutil.rmtree(Path(unfinished.get()), ignore_errors=True)
        self._unfinished_saves_removed = True


class UnusableCheckpoint(CheckpointError):
    """One step directory cannot be restored; `problem` says why."""

    def __init__(self, path: Path, problem: str):
        super().__init__(f"{path}: cannot restore checkpoint ({problem})")
        self.path = path
        self.problem = problem


def abstract_like(tree: Any, sharding: jax.sharding.Sharding) -> Any:
    """Shape/dtype structs of `tree` (arrays or structs) placed on `sharding`, for `Checkpoints.restore`."""
    return jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding), tree)


def restore_or_init(checkpoints: Checkpoints, init: Callable[[jax.Array], Any], seed: int,
                    placement: jax.sharding.Sharding) -> tuple[Any, dict[str, Any]]:
    """The newest usable checkpoint's (state, data bookkeeping), or `init(key)` and {"position": 0}.

    `init` is a pure function of a PRNG key building a fresh state; it is traced
    abstractly for the restore target, and jitted onto `placement` only when there is
    nothing to restore. The key is an argument, not a constant, so runs that differ
    only in their seed share one compiled program.

    Raises:
      CheckpointError: there are checkpoints but none can be restored.
    """
    key = jax.random.key(seed)
    if checkpoints.latest_step() is None:
        return jax.jit(init, out_shardings=placement)(key), {"position": 0}
    state, data, _ = checkpoints.restore(abstract_like(jax.eval_shape(init, key), placement))
    return state, data


def state_checksums(state: Any) -> dict[str, str]:
    """The CRC-32 of every leaf's bytes, by key path ("['generator_params']...": "1f2e3d4c").

    Computed on a host copy of each leaf's global value, so it does not depend on
    how the arrays are sharded: a checkpoint saved on 4 devices verifies on 1 or 8.
    """
    return {jax.tree_util.keystr(path): f"{zlib.crc32(_host_value(leaf)):08x}"
            for path, leaf in jax.tree_util.tree_leaves_with_path(state)}


def json_checksum(item: dict[str, Any]) -> str:
    """SHA-256 of a JSON item's canonical text (equal before saving and after restoring)."""
    return hashlib.sha256(json.dumps(item, sort_keys=True).encode()).hexdigest()


def _host_value(leaf: Any) -> np.ndarray:
    """The leaf's whole value as a contiguous host array (PRNG keys as their key data)."""
    if isinstance(leaf, jax.Array):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        if leaf.is_fully_replicated:
            leaf = leaf.addressable_data(0)  # one copy, also when other hosts hold the rest
        elif not leaf.is_fully_addressable:
            leaf = multihost_utils.process_allgather(leaf, tiled=True)
    return np.ascontiguousarray(np.asarray(leaf)).reshape(-1).view(np.uint8)


def _describe(error: BaseException, path: Path) -> str:
    """One short line for an Orbax restore failure of the step directory `path`.

    Orbax wraps TensorStore's errors, whose useful part ("OUT_OF_RANGE: Error reading
    ... local file ...: Requested byte range ... is not valid") is the innermost
    status message; otherwise the outermost message's first line says most. A JSON
    parse error does not say which file, so the unparsable item file is named.
    """
    chain = []
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or error.__context__
    statuses = [str(link) for link in chain if re.match(r"[A-Z_]{4,}: ", str(link))]
    text = statuses[-1] if statuses else (str(chain[0]).strip() or type(chain[0]).__name__)
    text = text.split(" [tensorstore_spec")[0].strip().splitlines()[0]
    parse_errors = [link for link in chain if isinstance(link, json.JSONDecodeError)]
    if parse_errors:
        text = f"{_file_with_text(path, parse_errors[0].doc)}: {text}"
    return text if len(text) <= MAX_PROBLEM_CHARS else text[:MAX_PROBLEM_CHARS - 3] + "..."


def _file_with_text(path: Path, text: str) -> str:
    """The file under `path` (relative, e.g. "data/metadata") whose content is `text`, or "a JSON file"."""
    size = len(text.encode())
    for file in sorted(path.rglob("*")):
        if file.is_file() and file.stat().st_size == size and file.read_text(errors="replace") == text:
            return str(file.relative_to(path))
    return "a JSON file"


def _ignore_abandoned_reads() -> None:
    """Silences the echoes of a failed restore, which the one-line report already covers.

    When one array of a restore fails, Orbax stops waiting and closes its event
    loop; TensorStore then completes the other reads on its own threads and Python
    prints each of them as an "unraisable" traceback ("Event loop is closed", or
    the same read error again), dozens of them, at unpredictable times. This
    filter drops exactly those and passes everything else to the previous hook.
    """
    previous = sys.unraisablehook
    if getattr(previous, "drops_abandoned_orbax_reads", False):
        return

    def hook(unraisable):
        error, source = unraisable.exc_value, getattr(unraisable.object, "__qualname__", "")
        from_orbax_read = source == "_read_array_index_and_device_put"
        closed_loop = isinstance(error, RuntimeError) and str(error) == "Event loop is closed"
        if not (from_orbax_read or closed_loop):
            previous(unraisable)

    hook.drops_abandoned_orbax_reads = True
    sys.unraisablehook = hook
