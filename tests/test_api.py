"""The public API (`import jaxmed`), and the README's Python quickstart run as written, at a tiny size."""

import pathlib
import re
import types

import numpy as np
import pytest

import jaxmed

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
# What the quickstart's calls get on top of their own arguments, so it runs in seconds.
TINY_TRAIN = {"image_size": 32, "batch_size": 8, "steps": 2, "epochs": 1, "data.n": 48, "checkpoint.every": 2,
              "sample.every": 2, "eval.every": 2, "eval.n": 8}
TINY_CLASSIFIER = {"width": 8, "eval.bootstrap_resamples": 20}


def _python_quickstart() -> str:
    text = README.read_text()
    section = text[text.index("## Python quickstart"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _tiny_jaxmed() -> types.SimpleNamespace:
    """`jaxmed` with every call shrunk: the quickstart's code runs unchanged."""

    def train(family, workdir, **settings):
        keys = jaxmed.config_keys(family)
        tiny = {**TINY_TRAIN, **(TINY_CLASSIFIER if family == "classifier" else {})}
        return jaxmed.train(family, workdir, progress=False,
                            **{**settings, **{key: value for key, value in tiny.items() if key in keys}})

    return types.SimpleNamespace(**{
        **{name: getattr(jaxmed, name) for name in jaxmed.__all__},
        "train": train,
        "load_data": lambda spec, image_size=128, **options: jaxmed.load_data(spec, 32, n=48, **options),
        "inspect": lambda spec, **options: jaxmed.inspect(spec, 32, n=48, **options),
        "evaluate": lambda workdir, out, **options: jaxmed.evaluate(workdir, out, feature_steps=2, n=16,
                                                                    progress=False, **options)})


@pytest.mark.slow
def test_readme_python_quickstart_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {}
    code = _python_quickstart().replace("import jaxmed\n", "")
    exec(compile(code, str(README), "exec"), {"jaxmed": _tiny_jaxmed()}, namespace)
    assert namespace["dataset"].images.shape[1:] == (32, 32, 1)
    result = namespace["result"]
    assert isinstance(result, jaxmed.TrainResult) and result.family == "gan" and result.step == 2
    assert result.metrics["step"] == 2 and "d_loss" in result.metrics
    assert namespace["images"].shape == (16, 32, 32, 1)
    assert np.isfinite(namespace["report"]["fid"]) and (tmp_path / "runs/gan/eval/eval.json").is_file()
    assert namespace["summary"]["total"] == 48


@pytest.mark.slow
def test_every_family_returns_one_result_type(tmp_path):
    gan = jaxmed.train("gan", tmp_path / "gan", data="phantom:brain", image_size=32, batch_size=8, steps=2,
                       latent_dim=8, progress=False, **{"data.n": 32, "sample.every": 2, "eval.n": 8})
    classifier = jaxmed.train("classifier", tmp_path / "c", data="phantom:lung", image_size=32, width=8,
                              batch_size=8, epochs=1, progress=False,
                              **{"data.n": 64, "eval.bootstrap_resamples": 10})
    assert (gan.family, gan.step, gan.epoch, gan.eval, gan.eval_path) == ("gan", 2, None, None, None)
    assert classifier.family == "classifier" and classifier.epoch == 1
    assert classifier.eval_path == tmp_path / "c" / "eval.json" and classifier.eval_path.is_file()
    assert classifier.eval["split"] == "test" and classifier.step == classifier.metrics["step"]
    again = jaxmed.train("gan", tmp_path / "gan", progress=False)  # a workdir with checkpoints resumes
    assert again.step == 2 and again.metrics == gan.metrics


def test_unknown_family_and_key_are_usage_errors(tmp_path):
    with pytest.raises(jaxmed.errors.UsageError, match="unknown model family"):
        jaxmed.train("gam", tmp_path)
    with pytest.raises(jaxmed.errors.UsageError, match="unknown config key 'stepz'"):
        jaxmed.train("gan", tmp_path, stepz=3)


def test_importing_jaxmed_starts_no_jax():
    import subprocess
    import sys

    code = "import sys, jaxmed, jaxmed.config; print('jax' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
