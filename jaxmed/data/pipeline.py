"""Batch pipeline: deterministic, resumable batches with background prefetch.

:class:`BatchStream` turns in-memory arrays into an endless stream of batches
in which batch ``k`` depends only on ``(seed, k)``. A training run therefore
only has to checkpoint one integer -- the number of batches consumed -- to
resume with exactly the batches an uninterrupted run would have seen.

:func:`prefetch_to_device` moves batches to the device on a background thread
so host-side gathering overlaps the device step.

Typical use::

    stream = BatchStream({"image": x, "label": y}, 64, seed=0, position=step)
    batches = prefetch_to_device(stream, size=2)
    try:
        for batch in batches:
            state = train_step(state, batch)
            step += 1            # checkpoint `step`, not `stream.position`
    finally:
        batches.close()
"""

from __future__ import annotations

import queue
import threading
import weakref
from collections.abc import Iterator, Mapping

import jax
import numpy as np


class BatchStream:
    """Endless, deterministic batches of in-memory arrays, reshuffled each epoch from the seed.

    Batch ``k`` is a pure function of ``(seed, k)``: ``epoch = k //
    batches_per_epoch``, with a fresh permutation per epoch from
    ``np.random.default_rng([seed, epoch])``; the remainder of each epoch is
    dropped so every batch is full (and has one static shape, so the train step
    compiles once). Its position (the index of the next batch) can be saved
    and restored -- pass it back as ``position=`` -- so a resumed run sees
    exactly the batches an uninterrupted run would have.

    Args:
        arrays: Named arrays sharing their first (example) dimension, e.g.
            ``{"image": images, "label": labels}``. They are not copied.
        batch_size: Examples per batch, between 1 and the number of examples.
        seed: Non-negative integer seeding the per-epoch permutations.
        shuffle: If False, every epoch walks the examples in stored order.
        position: Index of the first batch to produce (a saved position).

    Raises:
        ValueError: on empty or mismatched arrays, an invalid batch size, a
            negative seed or a negative position.
    """

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        batch_size: int,
        *,
        seed: int,
        shuffle: bool = True,
        position: int = 0,
    ) -> None:
        if not arrays:
            raise ValueError("BatchStream: arrays is empty; pass at least one named array")
        self._arrays = {key: np.asarray(value) for key, value in arrays.items()}
        lengths = {key: (value.shape[0] if value.ndim else None) for key, value in self._arrays.items()}
        if len(set(lengths.values())) != 1 or None in lengths.values():
            raise ValueError(
                f"BatchStream: arrays must share their first dimension, got lengths {lengths}"
            )
        num_examples = next(iter(lengths.values()))
        if num_examples == 0:
            raise ValueError(f"BatchStream: arrays are empty (lengths {lengths})")
        if not 1 <= batch_size <= num_examples:
            raise ValueError(
                f"BatchStream: {num_examples} examples but batch size {batch_size}; "
                f"batch size must be between 1 and the number of examples"
            )
        if seed < 0:
            raise ValueError(f"BatchStream: seed must be non-negative, got {seed}")
        if position < 0:
            raise ValueError(f"BatchStream: position must be non-negative, got {position}")
        self._num_examples = int(num_examples)
        self._batch_size = int(batch_size)
        self._seed = int(seed)
        self._shuffle = bool(shuffle)
        self._position = int(position)
        # (epoch, order) of the last epoch used. Consecutive batches share an
        # epoch, so this avoids an O(N) permutation per batch. It is replaced
        # as one tuple so a batch() call on another thread sees a consistent pair.
        self._order_cache: tuple[int, np.ndarray] | None = None

    @property
    def batches_per_epoch(self) -> int:
        """Number of full batches per epoch (the remainder is dropped)."""
        return self._num_examples // self._batch_size

    @property
    def position(self) -> int:
        """Index of the next batch :meth:`__next__` will produce."""
        return self._position

    def _epoch_order(self, epoch: int) -> np.ndarray:
        cached = self._order_cache
        if cached is not None and cached[0] == epoch:
            return cached[1]
        if self._shuffle:
            order = np.random.default_rng([self._seed, epoch]).permutation(self._num_examples)
        else:
            order = np.arange(self._num_examples)
        self._order_cache = (epoch, order)
        return order

    def batch(self, index: int) -> dict[str, np.ndarray]:
        """Returns batch `index` without changing the stream's position.

        Args:
            index: Non-negative batch index (counting across epochs).

        Returns:
            Dict with the same keys as the input arrays, each of leading
            dimension ``batch_size``; newly allocated arrays.

        Raises:
            ValueError: if `index` is negative.
        """
        if index < 0:
            raise ValueError(f"BatchStream.batch: index must be non-negative, got {index}")
        epoch, offset = divmod(int(index), self.batches_per_epoch)
        start = offset * self._batch_size
        indices = self._epoch_order(epoch)[start : start + self._batch_size]
        return {key: value[indices] for key, value in self._arrays.items()}

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        out = self.batch(self._position)
        self._position += 1
        return out


class _Failure:
    """Carries an exception raised by the source from the producer thread to the consumer."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()  # Queue sentinel: the source is exhausted.

# How often a producer blocked on a full queue re-checks the stop flag. It
# only bounds shutdown latency; a get() by the consumer wakes it immediately.
_POLL_SECONDS = 0.05


def _put(items: queue.Queue, stop: threading.Event, item: object) -> bool:
    """Puts `item` unless `stop` is set first; returns whether it was put."""
    while not stop.is_set():
        try:
            items.put(item, timeout=_POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False


def _produce(
    batches: Iterator[dict[str, np.ndarray]],
    items: queue.Queue,
    stop: threading.Event,
    sharding: jax.sharding.Sharding | None,
) -> None:
    # A module-level function, not a method: the thread must not hold a
    # reference to the prefetcher, or the prefetcher could never be collected.
    try:
        for batch in batches:
            if stop.is_set() or not _put(items, stop, jax.device_put(batch, sharding)):
                return
    except BaseException as error:  # noqa: BLE001 -- handed to the consumer, which re-raises it.
        _put(items, stop, _Failure(error))
        return
    _put(items, stop, _END)


def _shutdown(stop: threading.Event, items: queue.Queue, thread: threading.Thread) -> None:
    """Stops the producer thread and releases the device batches it queued."""
    stop.set()
    # A finalizer may run on any thread, including (via cyclic GC) the producer itself.
    if thread is not threading.current_thread():
        thread.join()
    while True:
        try:
            items.get_nowait()
        except queue.Empty:
            break


class DevicePrefetcher:
    """Iterator over device-resident batches, filled by a background thread.

    Returned by :func:`prefetch_to_device`; see there. Call :meth:`close` (or
    use it as a context manager) to stop the thread; it is also stopped when
    the prefetcher is garbage-collected or the interpreter exits, and ends by
    itself when the source is exhausted.
    """

    def __init__(
        self,
        batches: Iterator[dict[str, np.ndarray]],
        *,
        size: int,
        sharding: jax.sharding.Sharding | None,
    ) -> None:
        if size < 1:
            raise ValueError(f"prefetch_to_device: size must be at least 1, got {size}")
        self._items: queue.Queue = queue.Queue(maxsize=size)
        self._stop = threading.Event()
        self._done = False
        thread = threading.Thread(
            target=_produce,
            args=(iter(batches), self._items, self._stop, sharding),
            name="jaxmed-prefetch",
            daemon=True,  # An endless source must not keep the interpreter alive.
        )
        # weakref.finalize (unlike __del__) runs at most once and also at exit.
        self._finalizer = weakref.finalize(self, _shutdown, self._stop, self._items, thread)
        thread.start()

    def __iter__(self) -> DevicePrefetcher:
        return self

    def __next__(self) -> dict[str, jax.Array]:
        if self._done:
            raise StopIteration
        item = self._items.get()
        if item is _END:
            self.close()
            raise StopIteration
        if isinstance(item, _Failure):
            self.close()
            raise item.error
        return item

    def close(self) -> None:
        """Stops the background thread and waits for it; further ``next()`` calls raise StopIteration.

        If the source is blocked inside its own ``next()``, this waits for
        that call to return.
        """
        self._done = True
        self._finalizer()

    def __enter__(self) -> DevicePrefetcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def prefetch_to_device(
    batches: Iterator[dict[str, np.ndarray]],
    *,
    size: int = 2,
    sharding: jax.sharding.Sharding | None = None,
) -> DevicePrefetcher:
    """Places batches on device ahead of time on a background thread.

    The thread pulls from `batches` and calls ``jax.device_put(batch,
    sharding)`` while the consumer runs the device step, keeping up to `size`
    placed batches waiting (plus one being placed). An exception raised by
    the source is re-raised in the consumer's ``next()``.

    Because the thread runs ahead, the source's own position (e.g.
    ``BatchStream.position``) is ahead of what training has consumed. For
    checkpoints, the *consumer* must count the batches it has taken from the
    returned iterator and resume with ``BatchStream(..., position=count)``.

    Args:
        batches: Iterator of dicts of host arrays, e.g. a :class:`BatchStream`.
        size: Number of batches to keep ready on device, at least 1.
        sharding: Where to place each batch; ``None`` means the default device.

    Returns:
        A :class:`DevicePrefetcher` yielding dicts of ``jax.Array``; call its
        ``close()`` when done.

    Raises:
        ValueError: if `size` is less than 1.
    """
    return DevicePrefetcher(batches, size=size, sharding=sharding)
