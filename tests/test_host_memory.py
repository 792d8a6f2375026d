"""`keep_freed_memory` stops XLA:CPU's per-execution scratch space from page-faulting every step.

Each case runs in a fresh interpreter (the setting must precede JAX's threads), runs a
jitted gradient whose temporaries exceed 64 MB several times, and counts the minor page
faults of the repeated calls (`getrusage`): a count, not a time.
"""

import json
import os
import subprocess
import sys

import pytest

PROGRAM = """
import json, resource, sys
from jaxmed import host_memory
kept = host_memory.keep_freed_memory() if sys.argv[1] == "keep" else False
import jax, jax.numpy as jnp
def loss(x, w):  # a 64 MB activation that the gradient must keep: XLA's scratch space exceeds it
    h = jnp.tanh(jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))
    return jnp.sum(jnp.tanh(h) * h[:, ::-1])
step = jax.jit(jax.grad(loss))
x, w = jnp.ones((16, 128, 128, 8), jnp.float32), jnp.full((3, 3, 8, 64), 0.01, jnp.float32)
for _ in range(5):  # the kept heap grows to its working size over the first calls
    step(x, w).block_until_ready()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step(x, w).block_until_ready()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"kept": kept, "recorded": host_memory.keeps_freed_memory(), "faults_per_call": faults / 5}))
"""


def _run(mode: str, **env: str) -> dict:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")}
    environment.update(env)
    result = subprocess.run([sys.executable, "-c", PROGRAM, mode], env=environment, capture_output=True, text=True,
                            check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.multiprocess
def test_freed_scratch_space_is_reused_instead_of_faulted_in_again():
    default = _run("default")
    kept = _run("keep")
    assert kept["kept"] and not default["kept"]
    assert kept["recorded"] and not default["recorded"]  # what benchmark records report
    # 64 MB of temporaries are 16,384 fresh 4 KiB pages per call when glibc unmaps them.
    assert default["faults_per_call"] > 16_000
    # The kernel may reclaim idle pages of the kept heap between calls (once in a full suite
    # run: 9,729 faults per call, against 0 in ten runs alone), so the fewest of three runs counts.
    fewest = kept["faults_per_call"]
    for _ in range(2):
        if fewest < default["faults_per_call"] / 10:
            break
        fewest = min(fewest, _run("keep")["faults_per_call"])
    assert fewest < default["faults_per_call"] / 10


@pytest.mark.slow
@pytest.mark.multiprocess
def test_user_settings_win():
    for setting in ({"MALLOC_ARENA_MAX": "4"}, {"JAXMED_KEEP_FREED_MEMORY": "0"}):
        result = _run("keep", **setting)
        assert not result["kept"] and not result["recorded"], setting
