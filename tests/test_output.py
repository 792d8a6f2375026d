"""Tests for jaxmed.output: the --json contract shared by `jaxmed bench` and `jaxmed data inspect`."""

import json

from jaxmed import output


def test_emit_contract(tmp_path, capsys):
    output.emit({"a": 1}, "TABLE", "-")
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"a": 1} and captured.out.count("\n") == 1
    assert "TABLE" in captured.err
    output.emit({"a": 2}, "TABLE", str(tmp_path / "r" / "x.json"))
    captured = capsys.readouterr()
    assert json.loads((tmp_path / "r" / "x.json").read_text()) == {"a": 2} and "TABLE" in captured.out
