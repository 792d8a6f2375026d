"""Tests for jaxmed.data.pipeline."""

import gc
import itertools
import threading
import time

import jax
import numpy as np
import pytest

from jaxmed.data.pipeline import BatchStream, prefetch_to_device

N = 23  # not a multiple of the batch size, so every epoch has a dropped remainder
B = 5


def _arrays(n: int = N) -> dict[str, np.ndarray]:
    # "id" identifies each example; "image" is tied to it so we can check rows stay aligned.
    ids = np.arange(n)
    return {"id": ids, "image": (ids[:, None, None] * np.ones((1, 2, 3))).astype(np.float32)}


def _ids(stream: BatchStream, count: int) -> list[list[int]]:
    return [next(stream)["id"].tolist() for _ in range(count)]


def _wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


# --- BatchStream -------------------------------------------------------------------------


def test_batches_are_full_and_aligned():
    stream = BatchStream(_arrays(), B, seed=0)
    assert stream.batches_per_epoch == N // B
    for _ in range(10):
        batch = next(stream)
        assert set(batch) == {"id", "image"}
        assert batch["id"].shape == (B,)
        assert batch["image"].shape == (B, 2, 3)
        np.testing.assert_array_equal(batch["image"][:, 0, 0], batch["id"])


def test_same_seed_same_batches_different_seed_different_order():
    first = _ids(BatchStream(_arrays(), B, seed=7), 12)
    second = _ids(BatchStream(_arrays(), B, seed=7), 12)
    other = _ids(BatchStream(_arrays(), B, seed=8), 12)
    assert first == second
    assert first != other


def test_each_epoch_is_a_permutation_and_epochs_differ():
    stream = BatchStream(_arrays(), B, seed=3)
    per_epoch = stream.batches_per_epoch
    epochs = [sum(_ids(stream, per_epoch), []) for _ in range(4)]
    for seen in epochs:
        assert len(seen) == len(set(seen)) == per_epoch * B  # no repeats; all but the remainder
        assert set(seen) <= set(range(N))
    assert len({tuple(seen) for seen in epochs}) == 4  # reshuffled every epoch
    # The dropped remainder differs between epochs, so over several epochs every example appears.
    assert set().union(*map(set, epochs)) == set(range(N))


def test_epoch_permutation_comes_from_seed_and_epoch():
    stream = BatchStream(_arrays(), B, seed=11)
    epoch = 2
    expected = np.random.default_rng([11, epoch]).permutation(N)[B : 2 * B]
    np.testing.assert_array_equal(stream.batch(epoch * stream.batches_per_epoch + 1)["id"], expected)


def test_restore_at_position_matches_uninterrupted_run():
    k = 7  # mid-epoch, past one epoch boundary
    uninterrupted = BatchStream(_arrays(), B, seed=5)
    _ids(uninterrupted, k)
    assert uninterrupted.position == k
    expected = _ids(uninterrupted, 10)
    restored = BatchStream(_arrays(), B, seed=5, position=k)
    assert restored.position == k
    assert _ids(restored, 10) == expected
    assert restored.position == k + 10


def test_batch_is_pure():
    stream = BatchStream(_arrays(), B, seed=1)
    before = stream.batch(9)
    _ids(stream, 6)  # move the stream and its per-epoch cache elsewhere
    stream.batch(0)
    again = stream.batch(9)
    assert stream.position == 6
    for key in before:
        np.testing.assert_array_equal(before[key], again[key])
    # Batches are fresh arrays: mutating one does not change the source or later batches.
    again["id"][:] = -1
    np.testing.assert_array_equal(stream.batch(9)["id"], before["id"])


def test_shuffle_false_is_sequential_and_drops_remainder():
    stream = BatchStream(_arrays(), B, seed=0, shuffle=False)
    ids = _ids(stream, 2 * stream.batches_per_epoch)
    one_epoch = [list(range(i * B, (i + 1) * B)) for i in range(N // B)]
    assert ids == one_epoch + one_epoch


@pytest.mark.parametrize(
    ("arrays", "batch_size", "kwargs", "match"),
    [
        ({}, 1, {}, "at least one"),
        ({"a": np.zeros(4), "b": np.zeros(5)}, 1, {}, r"'a': 4, 'b': 5"),
        ({"a": np.zeros((0, 3))}, 1, {}, "empty"),
        (_arrays(), 0, {}, f"{N} examples but batch size 0"),
        (_arrays(), N + 1, {}, f"{N} examples but batch size {N + 1}"),
        (_arrays(), B, {"position": -1}, "position"),
        (_arrays(), B, {"seed": -1}, "seed"),
    ],
)
def test_batch_stream_validation(arrays, batch_size, kwargs, match):
    kwargs = {"seed": 0, **kwargs}
    with pytest.raises(ValueError, match=match):
        BatchStream(arrays, batch_size, **kwargs)


def test_batch_rejects_negative_index():
    with pytest.raises(ValueError, match="non-negative"):
        BatchStream(_arrays(), B, seed=0).batch(-1)


# --- prefetch_to_device ------------------------------------------------------------------


def test_prefetch_yields_same_values_as_jax_arrays():
    expected = list(itertools.islice(BatchStream(_arrays(), B, seed=2), 9))
    with prefetch_to_device(BatchStream(_arrays(), B, seed=2), size=2) as batches:
        got = list(itertools.islice(batches, 9))
    assert len(got) == 9
    for want, have in zip(expected, got, strict=True):
        assert set(have) == set(want)
        for key in want:
            assert isinstance(have[key], jax.Array)
            np.testing.assert_array_equal(np.asarray(have[key]), want[key])


def test_prefetch_uses_given_sharding():
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    with prefetch_to_device(BatchStream(_arrays(), B, seed=0), sharding=sharding) as batches:
        batch = next(batches)
    assert batch["image"].sharding == sharding


def test_prefetch_ends_with_finite_source():
    source = ({"x": np.full((2,), i)} for i in range(4))
    batches = prefetch_to_device(source, size=3)
    assert [int(b["x"][0]) for b in batches] == [0, 1, 2, 3]
    with pytest.raises(StopIteration):
        next(batches)


def test_prefetch_reraises_source_exception():
    def source():
        yield {"x": np.zeros(2)}
        raise RuntimeError("broken source")

    batches = prefetch_to_device(source())
    np.testing.assert_array_equal(np.asarray(next(batches)["x"]), np.zeros(2))
    with pytest.raises(RuntimeError, match="broken source"):
        next(batches)


def test_prefetch_runs_ahead_by_bounded_amount():
    pulled = []

    def source():
        for i in itertools.count():
            pulled.append(i)
            yield {"x": np.full((2,), i)}

    size = 2
    with prefetch_to_device(source(), size=size) as batches:
        assert int(next(batches)["x"][0]) == 0
        # It runs ahead while the consumer is idle ...
        assert _wait_until(lambda: len(pulled) >= 1 + size)
        time.sleep(0.2)
        # ... but only by `size` queued batches plus the one waiting to be queued.
        assert len(pulled) <= 1 + size + 1
        assert [int(next(batches)["x"][0]) for _ in range(3)] == [1, 2, 3]


def _new_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t not in before]


def test_close_stops_thread_on_endless_source():
    before = set(threading.enumerate())
    batches = prefetch_to_device(BatchStream(_arrays(), B, seed=0), size=2)
    next(batches)
    (thread,) = _new_threads(before)
    assert thread.is_alive()
    batches.close()
    assert not thread.is_alive()
    with pytest.raises(StopIteration):
        next(batches)
    batches.close()  # idempotent


def test_garbage_collection_stops_thread():
    before = set(threading.enumerate())
    batches = prefetch_to_device(BatchStream(_arrays(), B, seed=0), size=1)
    next(batches)
    (thread,) = _new_threads(before)
    del batches
    gc.collect()
    assert _wait_until(lambda: not thread.is_alive())


def test_prefetch_rejects_bad_size():
    with pytest.raises(ValueError, match="size"):
        prefetch_to_device(iter([]), size=0)
