"""Generative runs keep the checkpoint with the best FID, and sampling uses it by default."""

import json

import numpy as np
import pytest

import jaxmed
from jaxmed.errors import CheckpointError
from jaxmed.evaluation import quality
from jaxmed.training.restore import parse_checkpoint, restore_run

# FID by step: the best (lowest) is step 4, neither the first nor the last measurement.
FIDS = {2: 9.0, 4: 3.0, 6: 5.0, 8: 4.0}


@pytest.fixture
def scripted_fid(monkeypatch):
    def measure(self, generator, state, placement=None, *, progress=False):
        return {"fid": FIDS[int(state.step)], "kid": 0.1, "precision": 0.5, "recall": 0.5}

    monkeypatch.setattr(quality.QualityProbe, "measure", measure)


def _train(workdir, steps):
    return jaxmed.train("gan", workdir, data="phantom:brain", image_size=32, batch_size=8, steps=steps,
                        latent_dim=8, progress=False,
                        **{"data.n": 32, "eval.every": 2, "eval.n": 8, "sample.every": 8, "checkpoint.every": 3,
                           "log.every": 1})


@pytest.mark.slow
def test_the_best_step_by_fid_is_kept_and_sampled_by_default(tmp_path, scripted_fid):
    _train(tmp_path / "gan", 8)
    rows = [row for row in map(json.loads, (tmp_path / "gan" / "metrics.jsonl").read_text().splitlines())
            if "fid" in row]
    assert [(row["step"], row["fid"]) for row in rows] == sorted(FIDS.items())
    assert int(restore_run(tmp_path / "gan", checkpoint="best").state.step) == 4
    assert int(restore_run(tmp_path / "gan").state.step) == 8  # "latest"
    best = jaxmed.sample(tmp_path / "gan", 4, seed=1)
    assert np.array_equal(best, jaxmed.sample(tmp_path / "gan", 4, seed=1, checkpoint=4))
    assert not np.array_equal(best, jaxmed.sample(tmp_path / "gan", 4, seed=1, checkpoint="latest"))


@pytest.mark.slow
def test_a_resumed_run_keeps_the_same_best(tmp_path, scripted_fid):
    _train(tmp_path / "gan", 6)
    _train(tmp_path / "gan", 8)  # resumes at 6; step 8's FID 4.0 does not beat step 4's 3.0
    assert int(restore_run(tmp_path / "gan", checkpoint="best").state.step) == 4


def test_checkpoint_choices(tmp_path):
    assert parse_checkpoint("best") == "best" and parse_checkpoint("latest") == "latest"
    assert parse_checkpoint("120") == 120
    with pytest.raises(jaxmed.errors.UsageError, match="best, latest or a step number"):
        parse_checkpoint("newest")
    jaxmed.train("gan", tmp_path / "gan", data="phantom:brain", image_size=32, batch_size=8, steps=2, latent_dim=8,
                 progress=False, **{"data.n": 32, "eval.fid": False, "eval.n": 8, "sample.every": 2})
    # No quality was measured: "best" is the latest.
    assert int(restore_run(tmp_path / "gan", checkpoint="best").state.step) == 2
    with pytest.raises(CheckpointError, match="no checkpoint of step 7; there are 2"):
        restore_run(tmp_path / "gan", checkpoint=7)
