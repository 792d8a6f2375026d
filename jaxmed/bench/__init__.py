"""Benchmarks: the convolution and pooling core, whole train steps, and the peers' setup.

- `jaxmed.bench.stats`, `jaxmed.bench.host`: the timing method (warm-up, then the
  median and spread of repeated samples) and the host record. Standard library only,
  so the PyTorch and TensorFlow peers (`benchmarks/peers/`, in their own environment
  without JAX) time themselves with the very same code.
- `jaxmed.bench.timing`, `jaxmed.bench.environment`: the same for jitted JAX functions,
  and the device, library versions and XLA flags of a run.
- `jaxmed.bench.roofline`: the float32 matmul and memory-copy ceilings, measured in the run.
- `jaxmed.bench.layers`: every convolution, up-sampling convolution and pooling shape of a
  model, found by tracing it; `jaxmed.bench.conv_pool` times them; `jaxmed.bench.plot` draws them.
- `jaxmed.bench.train_step`: a model's full jitted train step; `jaxmed.bench.forced_devices`
  runs it on N forced CPU devices in a child process.

The command line is `jaxmed bench conv-pool` and `jaxmed bench train-step`; the scripts
in `benchmarks/` run sweeps and the peer comparison. Speeds are never asserted in tests.
"""
