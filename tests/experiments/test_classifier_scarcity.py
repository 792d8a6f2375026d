"""experiments/classifier_scarcity.py: the scarce subsets it trains on."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "classifier_scarcity.py"
spec = importlib.util.spec_from_file_location("classifier_scarcity", SCRIPT)
scarcity = importlib.util.module_from_spec(spec)
spec.loader.exec_module(scarcity)


@pytest.fixture
def folder(tmp_path):
    for split, counts in (("train", {"NORMAL": 30, "PNEUMONIA": 12}), ("test", {"NORMAL": 5, "PNEUMONIA": 4})):
        for name, count in counts.items():
            (tmp_path / "data" / split / name).mkdir(parents=True)
            for index in range(count):
                (tmp_path / "data" / split / name / f"{index}.png").write_bytes(b"x")
    return tmp_path / "data"


def counts(subset: Path) -> dict[str, int]:
    return {f"{path.parent.name}/{path.name}": len(list(path.iterdir())) for path in sorted(subset.glob("*/*"))}


def test_only_the_scarce_class_is_subsampled_and_the_test_split_is_whole(folder, tmp_path):
    subset = scarcity.scarce_subset(folder, "NORMAL", 7, seed=0, root=tmp_path / "subsets")
    assert counts(subset) == {"test/NORMAL": 5, "test/PNEUMONIA": 4, "train/NORMAL": 7, "train/PNEUMONIA": 12}
    # Files are linked one by one, to the originals.
    linked = next((subset / "train" / "NORMAL").iterdir())
    assert linked.is_symlink() and linked.resolve().parent == (folder / "train" / "NORMAL").resolve()
    other_seed = scarcity.scarce_subset(folder, "NORMAL", 7, seed=1, root=tmp_path / "subsets")
    assert {p.name for p in (subset / "train" / "NORMAL").iterdir()} != {
        p.name for p in (other_seed / "train" / "NORMAL").iterdir()}
    # A finished subset is reused as it is.
    assert scarcity.scarce_subset(folder, "NORMAL", 7, seed=0, root=tmp_path / "subsets") == subset


def test_asking_for_more_images_than_there_are_names_the_folder(folder, tmp_path):
    with pytest.raises(SystemExit, match="NORMAL: 30 images, fewer than the 31 requested"):
        scarcity.scarce_subset(folder, "NORMAL", 31, seed=0, root=tmp_path / "subsets")
    with pytest.raises(SystemExit, match="no class folder 'EDEMA'"):
        scarcity.scarce_subset(folder, "EDEMA", 3, seed=0, root=tmp_path / "subsets")
