"""jaxmed: generative modeling of medical images in JAX.

The main entry points are importable from here: `load_data`, `train` (any registered
family: `FAMILIES`), `sample`, `evaluate`, `inspect`, and `TrainResult`, what every
`train` returns. The package is organised by concept: `jaxmed.data` (sources,
preprocessing, pipeline), `jaxmed.families` (one module per model family, and the
registry), `jaxmed.config` (the run-config schema), `jaxmed.training` (the runner,
checkpoints, sharding), `jaxmed.models` and `jaxmed.nn` (networks and layers),
`jaxmed.evaluation` and `jaxmed.metrics`, `jaxmed.viz` (plots), `jaxmed.studies`,
`jaxmed.bench` and `jaxmed.cli` (the `jaxmed` command). See docs/design.md.
"""

__version__ = "0.1.0"

from jaxmed.api import config_keys, evaluate, inspect, load_data, sample, train  # noqa: E402
from jaxmed.families import FAMILIES  # noqa: E402

__all__ = ["FAMILIES", "TrainResult", "config_keys", "evaluate", "inspect", "load_data", "sample", "train"]


def __getattr__(name: str):
    # TrainResult lives beside the runner, which imports JAX: loaded only when asked for.
    if name == "TrainResult":
        from jaxmed.training.runner import TrainResult

        return TrainResult
    raise AttributeError(f"module 'jaxmed' has no attribute {name!r}")
