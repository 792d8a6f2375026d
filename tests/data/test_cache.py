"""The preprocessed-array cache: hits skip the reader, any change misses, damage is repaired."""

import os
import time

import numpy as np
import pytest
from PIL import Image

import jaxmed.data
from jaxmed.data import cache, phantoms
from jaxmed.data.sources import folder

HOUR_AGO = time.time() - 3600


def age(root, when=HOUR_AGO):
    """Sets every file's mtime in the past, as for data that has sat on disk a while."""
    for directory, _, names in os.walk(root):
        for name in names:
            os.utime(os.path.join(directory, name), (when, when))


def write_images(root, seed=0):
    rng = np.random.default_rng(seed)
    for class_name in ("a", "b"):
        (root / class_name).mkdir(parents=True, exist_ok=True)
        for index in range(3):
            Image.fromarray(rng.integers(0, 256, (12, 20), dtype=np.uint8)).save(root / class_name / f"{index}.png")
    age(root)


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv(cache.CACHE_ENV, str(root))
    return root


@pytest.fixture
def reads(monkeypatch):
    """Counts calls of the image-folder reader."""
    calls = []
    original = folder.read

    def spy(location, options):
        calls.append(options)
        return original(location, options)

    monkeypatch.setattr(folder, "read", spy)
    return calls


def entries(root):
    return sorted(root.glob("*.npz")) if root.exists() else []


def test_second_load_comes_from_the_cache(tmp_path, cache_root, reads):
    write_images(tmp_path / "data")
    first = jaxmed.data.load(str(tmp_path / "data"), 16)
    assert len(reads) == 1 and len(entries(cache_root)) == 1
    second = jaxmed.data.load(str(tmp_path / "data") + "/", 16)  # another spelling of the same folder
    assert len(reads) == 1
    assert np.array_equal(first.images, second.images) and second.images.dtype == np.float32
    assert np.array_equal(first.labels, second.labels) and second.labels.dtype == np.int32
    assert first.class_names == second.class_names == ("a", "b")
    assert second.provenance["spec"] == str(tmp_path / "data") + "/"
    assert {**first.provenance, "spec": ""} == {**second.provenance, "spec": ""}
    assert second.provenance["files"] == ["a/0.png", "a/1.png", "a/2.png", "b/0.png", "b/1.png", "b/2.png"]


def test_any_change_to_the_files_invalidates(tmp_path, cache_root, reads):
    data = tmp_path / "data"
    write_images(data)
    before = jaxmed.data.load(str(data), 16)
    # Same name, same size, new pixels: only the mtime tells.
    Image.fromarray(np.full((12, 20), 7, np.uint8)).save(data / "a" / "0.png")
    age(data, HOUR_AGO + 60)
    after = jaxmed.data.load(str(data), 16)
    assert len(reads) == 2
    assert not np.array_equal(before.images[0], after.images[0])
    assert np.array_equal(before.images[1:], after.images[1:])
    # A new file, and a removed one, change the listing.
    (data / "b" / "2.png").rename(data / "b" / "3.png")
    jaxmed.data.load(str(data), 16)
    assert len(reads) == 3
    jaxmed.data.load(str(data), 16)
    assert len(reads) == 3


def test_every_option_is_part_of_the_key(tmp_path, cache_root, reads):
    write_images(tmp_path / "data")
    spec = str(tmp_path / "data")
    jaxmed.data.load(spec, 16)
    jaxmed.data.load(spec, 24)
    jaxmed.data.load(spec, 16, channels=3)
    jaxmed.data.load(spec, 16, skip_bad=True)
    jaxmed.data.load(spec, 16, window="brain")
    jaxmed.data.load(spec, 16, slice_axis=1)
    jaxmed.data.load(spec, 16, slice_start=0.1, slice_stop=0.9)
    jaxmed.data.load(spec, 16, skip_empty_slices=False)
    assert len(reads) == 8 and len(entries(cache_root)) == 8
    assert jaxmed.data.load(spec, 24).images.shape == (6, 24, 24, 1)
    assert len(reads) == 8


def test_fresh_files_are_read_but_not_cached(tmp_path, cache_root, reads):
    """A file younger than its file system's timestamp tick could change unseen: no entry."""
    write_images(tmp_path / "data")
    os.utime(tmp_path / "data" / "a" / "1.png")  # modified just now
    jaxmed.data.load(str(tmp_path / "data"), 16)
    jaxmed.data.load(str(tmp_path / "data"), 16)
    assert len(reads) == 2 and entries(cache_root) == []


def test_a_corrupt_entry_is_noted_and_rebuilt(tmp_path, cache_root, reads, capsys):
    write_images(tmp_path / "data")
    first = jaxmed.data.load(str(tmp_path / "data"), 16)
    [entry] = entries(cache_root)
    entry.write_bytes(entry.read_bytes()[:300])  # truncated
    second = jaxmed.data.load(str(tmp_path / "data"), 16)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ignoring unreadable data cache entry" in err[0] and str(entry) in err[0]
    assert len(reads) == 2 and np.array_equal(first.images, second.images)
    jaxmed.data.load(str(tmp_path / "data"), 16)  # rewritten: a hit again, silently
    assert len(reads) == 2 and capsys.readouterr().err == ""
    entry.write_bytes(b"not a zip file at all")
    assert np.array_equal(jaxmed.data.load(str(tmp_path / "data"), 16).images, first.images)
    assert len(reads) == 3


def test_a_failed_write_leaves_nothing_behind(tmp_path, cache_root, reads, monkeypatch, capsys):
    write_images(tmp_path / "data")

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full_disk)
    dataset = jaxmed.data.load(str(tmp_path / "data"), 16)
    assert dataset.images.shape == (6, 16, 16, 1)
    assert "could not write the data cache entry" in capsys.readouterr().err
    assert list(cache_root.iterdir()) == []  # no entry and no temporary file


def test_phantoms_are_cached_by_all_their_options(cache_root, monkeypatch):
    calls = []
    original = phantoms.brain

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(phantoms, "brain", spy)
    first = jaxmed.data.load("phantom:brain", 32, n=12, seed=1)
    second = jaxmed.data.load("phantom:brain", 32, n=12, seed=1)
    assert len(calls) == 1
    assert np.array_equal(first.images, second.images) and first.provenance == second.provenance
    for options in ({"n": 13}, {"seed": 2}, {"class_fraction": 0.25}, {"difficulty": 0.5}, {"channels": 3}):
        jaxmed.data.load("phantom:brain", 32, **{"n": 12, "seed": 1, **options})
    assert len(calls) == 6


def test_an_empty_location_disables_the_cache(tmp_path, monkeypatch, reads):
    monkeypatch.setenv(cache.CACHE_ENV, "")
    write_images(tmp_path / "data")
    jaxmed.data.load(str(tmp_path / "data"), 16)
    jaxmed.data.load(str(tmp_path / "data"), 16)
    assert len(reads) == 2
    assert cache.cache_dir() is None


def test_least_recently_used_entries_go_when_over_the_size_limit(tmp_path, cache_root, monkeypatch, reads):
    write_images(tmp_path / "data")
    spec = str(tmp_path / "data")
    jaxmed.data.load(spec, 16)
    [small] = entries(cache_root)
    # Room for about two 16 px entries, not for a 16 px and a 48 px one.
    monkeypatch.setenv(cache.MAX_SIZE_ENV, str(2.5 * small.stat().st_size / 1e9))
    jaxmed.data.load(spec, 17)
    assert len(entries(cache_root)) == 2
    os.utime(small, (HOUR_AGO, HOUR_AGO))  # the 16 px entry is now the least recently used
    jaxmed.data.load(spec, 18)
    names = {path.name for path in entries(cache_root)}
    assert small.name not in names and len(names) == 2
    jaxmed.data.load(spec, 48)  # bigger than the limit by itself: kept, everything else goes
    assert len(entries(cache_root)) == 1


def test_listing_follows_folder_links_once_and_survives_loops(tmp_path):
    (tmp_path / "data" / "a").mkdir(parents=True)
    (tmp_path / "data" / "a" / "x.png").write_bytes(b"1234")
    os.symlink(tmp_path / "data", tmp_path / "data" / "a" / "loop")
    os.symlink(tmp_path / "missing", tmp_path / "data" / "broken.png")
    files = cache.listing(str(tmp_path / "data"))
    assert [(name, size) for name, size, _ in files] == [("a/x.png", 4), ("broken.png", -1)]
