"""The workdir's record of skipped input files."""

import json

from jaxmed.training.workdir import Workdir, record_skipped


def test_record_skipped_lists_every_entry_and_says_where(tmp_path, capsys):
    workdir = Workdir(tmp_path / "run")
    provenance = {"spec": "data/scans", "skipped": [["a/x.png", "truncated or corrupt image"],
                                                    ["b/y.dcm", "no pixel data"]]}
    assert record_skipped(provenance, workdir) == 2
    assert json.loads(workdir.skipped.read_text()) == {
        "spec": "data/scans", "count": 2,
        "skipped": [{"file": "a/x.png", "reason": "truncated or corrupt image"},
                    {"file": "b/y.dcm", "reason": "no pixel data"}],
        "ignored": []}
    assert capsys.readouterr().err == f"skipped 2 files (see {workdir.skipped})\n"

    # Data read cleanly later: no list, and no stale one from before.
    assert record_skipped({"spec": "data/scans", "skipped": []}, tmp_path / "run") == 0
    assert not workdir.skipped.exists() and capsys.readouterr().err == ""
    assert record_skipped({"spec": "phantom:brain"}, str(tmp_path / "run")) == 0
