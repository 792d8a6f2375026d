"""Arms side by side on device groups: the groups, the job runner, and a parallel study equal to a sequential one."""

import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import jax
import pytest

from jaxmed.errors import UsageError
from jaxmed.studies import parallel
from jaxmed.studies.config import StudyConfig
from jaxmed.training import sharding


def test_devices_split_into_groups_of_the_asked_size():
    device = jax.devices()[0]
    assert sharding.split_devices(1) == [[device]] == sharding.split_devices(0)
    with pytest.raises(UsageError, match="groups of 2 devices asked for, but only 1 are available"):
        sharding.split_devices(2)
    with pytest.raises(UsageError, match="devices_per_arm=2 but only 1 devices are available"):
        parallel.arm_device_groups(2)
    assert parallel.arm_device_groups(0) == [[device]]
    with pytest.raises(UsageError, match="devices_per_arm must be 0"):
        StudyConfig.tiny(devices_per_arm=-1)


def test_jobs_run_on_their_own_group_and_keep_their_order():
    device = jax.devices()[0]
    seen, lock = [], threading.Lock()

    def job(index):
        def run():
            with lock:
                seen.append((index, threading.current_thread().name, sharding.group_devices()))
            time.sleep(0.01 * (5 - index))  # later jobs finish first
            return index
        return run

    assert parallel.run_all([job(i) for i in range(5)], [[device], [device]]) == list(range(5))
    assert all(devices == [device] for _, _, devices in seen)
    assert {name for _, name, _ in seen} <= {"arm_0", "arm_1"} and len({name for _, name, _ in seen}) == 2
    assert sharding.group_devices() == jax.devices()  # the group ends with its block
    # One group: the jobs run here, in order, outside any group.
    here = parallel.run_all([lambda: threading.current_thread().name] * 2, [[device]])
    assert here == [threading.current_thread().name] * 2


def test_a_failing_job_cancels_the_jobs_not_started_and_raises():
    device = jax.devices()[0]
    started = []

    def job(index):
        def run():
            started.append(index)
            if index == 1:
                raise ValueError("arm 1 failed")
            time.sleep(0.2)
            return index
        return run

    with pytest.raises(ValueError, match="arm 1 failed"):
        parallel.run_all([job(i) for i in range(10)], [[device], [device]])
    assert len(started) < 10


# A tiny study run twice in one process with two (forced) CPU devices: its generators and arms side by
# side, one device each, then one after another on the first device; prints both summaries (their
# synthetic-quality tables included) and the devices each classifier run used.
TWO_WAYS = textwrap.dedent("""
    import json, sys
    from pathlib import Path

    import jax

    from jaxmed import families
    from jaxmed.studies import parallel
    from jaxmed.studies.config import StudyConfig
    from jaxmed.studies.run import run_study
    from jaxmed.training import sharding

    root = Path(sys.argv[1])
    family_type = type(families.get("classifier"))
    real_train = family_type.train
    used = {}

    def recording_train(self, config, workdir, data=None, *, progress=True):
        used[str(workdir)] = [device.id for device in sharding.make_mesh(config.mesh.data).devices.flat]
        return real_train(self, config, workdir, data, progress=progress)

    family_type.train = recording_train
    tiny = StudyConfig.tiny(seeds=1, generators="gan,vae")
    side_by_side = run_study(tiny, root / "parallel", progress=False)
    parallel.arm_device_groups = lambda devices_per_arm: [jax.devices()[:1]]
    one_by_one = run_study(tiny, root / "sequential", progress=False)
    print(json.dumps({"parallel": side_by_side, "sequential": one_by_one, "used": used}))
""")


@pytest.mark.slow
@pytest.mark.multiprocess
def test_a_study_with_parallel_arms_equals_one_run_arm_by_arm(tmp_path):
    flags = [flag for flag in os.environ.get("XLA_FLAGS", "").split()
             if not flag.startswith("--xla_force_host_platform_device_count")]
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAXMED_XLA_CACHE=jax.config.jax_compilation_cache_dir or "",
               XLA_FLAGS=" ".join([*flags, "--xla_force_host_platform_device_count=2"]))
    done = subprocess.run([sys.executable, "-c", TWO_WAYS, str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "training up to 2 arms at once, 1 device(s) each" in done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    side_by_side, one_by_one = result["parallel"], result["sequential"]
    quality = side_by_side.pop("synthetic_quality")
    assert side_by_side == {key: value for key, value in one_by_one.items() if key != "synthetic_quality"}
    # The quality table agrees to float rounding only (FID about 1e-8 apart); everything else exactly.
    assert set(quality) == {"gan", "vae"}
    for name, cells in quality.items():
        parallel_seed, sequential_seed = cells["12"]["per_seed"]["0"], one_by_one["synthetic_quality"][name]["12"][
            "per_seed"]["0"]
        assert parallel_seed.keys() == sequential_seed.keys()
        for key, value in parallel_seed.items():
            expected = sequential_seed[key]
            close = pytest.approx(expected, rel=1e-6, abs=1e-9) if isinstance(expected, float) else expected
            assert value == close, (name, key)
    parallel_runs = {run: ids for run, ids in result["used"].items() if "/parallel/" in run}
    sequential_runs = {run: ids for run, ids in result["used"].items() if "/sequential/" in run}
    # all_real, real, augment, and per generator synthetic, tstr and filtered
    assert len(parallel_runs) == len(sequential_runs) == 9
    assert {tuple(ids) for ids in parallel_runs.values()} == {(0,), (1,)}  # both devices trained arms
    assert {tuple(ids) for ids in sequential_runs.values()} == {(0,)}
