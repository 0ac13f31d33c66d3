"""`infoswarm train`: per-epoch checkpoints, a log line per epoch in train.log, and a run killed
with SIGKILL that continues, when rerun, to bitwise the weights of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file


@pytest.fixture
def rgb_npz(tmp_path):
    """256 training and 64 test CIFAR-shaped images (noise with a class-dependent tint)."""
    rng = np.random.default_rng(0)

    def make(n):
        y = rng.integers(0, 10, n)
        x = rng.integers(0, 200, (n, 32, 32, 3)).astype(np.int64) + (y * 5)[:, None, None, None]
        return x.astype(np.uint8), y

    xtr, ytr = make(256)
    xte, yte = make(64)
    path = tmp_path / "rgb.npz"
    np.savez(path, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    return path


def _cmd(data_path, out):
    return [sys.executable, "-m", "infoswarm", "train", "--dataset", str(data_path), "--model", "cifar10-cnn",
            "--epochs", "3", "--batch-size", "64", "--out", str(out)]


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1")


@pytest.mark.slow
@pytest.mark.subprocess
def test_train_killed_then_rerun_gives_the_uninterrupted_weights(tmp_path, rgb_npz):
    ref = tmp_path / "ref"
    done = subprocess.run(_cmd(rgb_npz, ref), capture_output=True, text=True, env=_env(), timeout=600)
    assert done.returncode == 0, done.stderr
    log = (ref / "train.log").read_text().splitlines()
    assert [line.split()[1] for line in log] == ["1/3", "2/3", "3/3"]
    assert (ref / "summary.json").is_file() and json.loads((ref / "card.json").read_text())["recipe"]["epochs"] == 3

    out = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(rgb_npz, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
    ckpt = out / "checkpoints" / "train.pt"
    t0 = time.time()
    while not ckpt.is_file() and proc.poll() is None and time.time() - t0 < 300:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.is_file() and not (out / "summary.json").is_file(), "the kill came too late to test resuming"
    again = subprocess.run(_cmd(rgb_npz, out), capture_output=True, text=True, env=_env(), timeout=600)
    assert again.returncode == 0, again.stderr
    assert "continuing the training" in again.stderr
    assert [line.split()[1] for line in (out / "train.log").read_text().splitlines()] == ["1/3", "2/3", "3/3"]
    a, b = load_file(str(out / "model.safetensors")), load_file(str(ref / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (out / "model.safetensors").read_bytes() == (ref / "model.safetensors").read_bytes()
    assert not [p for p in out.parent.iterdir() if ".tmp-" in p.name]
    # a finished run is not redone
    third = subprocess.run(_cmd(rgb_npz, out), capture_output=True, text=True, env=_env(), timeout=600)
    assert third.returncode == 0 and "nothing to do" in third.stderr
