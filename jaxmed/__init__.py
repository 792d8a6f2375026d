"""jaxmed: generative modeling of medical images in JAX.

The package is organised by concept: `jaxmed.data` (sources, preprocessing,
pipeline), `jaxmed.nn` (layers shared by models), `jaxmed.models` (one family
per module), `jaxmed.losses`, `jaxmed.train` (state, steps, loop, checkpoints,
sampling and evaluating a trained generator), `jaxmed.metrics` (classification,
generative and pixel metrics), `jaxmed.viz` (figures, one module per audience), `jaxmed.bench`
(benchmarks), `jaxmed.output` (a report as text or JSON), `jaxmed.host_memory` (process
memory settings for XLA:CPU) and `jaxmed.cli` (the `jaxmed` command).
"""

__version__ = "0.1.0"
