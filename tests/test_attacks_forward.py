"""attacks/_forward: calls are padded only as far as the backend needs, checked per call size; an
image's outputs and gradients never depend on the call's size; small calls run at one thread."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from infoswarm.attacks import _forward
from infoswarm.attacks._forward import MIN_ROWS, call_rows, padded_forward, padded_logits
from infoswarm.attacks.query import as_model


class Net(nn.Module):
    """A float32 conv + linear network (the layers whose CPU kernels change with the rows)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 12 * 12, 10)
        self.threads: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.threads.append(torch.get_num_threads())
        return self.fc(torch.relu(self.conv(x)).flatten(1))


class Noisy(Net):
    """A randomised model: two identical calls differ."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + 1e-3 * torch.randn(x.shape[0], 10)


def test_every_call_size_gives_the_rows_of_a_big_call(one_thread):
    model = Net().eval()
    x = torch.rand(40, 1, 12, 12)
    ref = padded_forward(model, x)
    for m in range(1, MIN_ROWS + 2):
        need = call_rows(model, x[:m])
        assert m <= need <= max(m, MIN_ROWS)
        assert torch.equal(padded_forward(model, x[5: 5 + m]), ref[5: 5 + m]), m
    xa = x.clone().requires_grad_(True)
    (g_ref,) = torch.autograd.grad(padded_logits(model, xa)[:, 3].sum(), xa)
    for m in (1, 2, 3, 7):
        xm = x[:m].clone().requires_grad_(True)
        out = padded_logits(model, xm)
        assert out.shape[0] == m
        (g,) = torch.autograd.grad(out[:, 3].sum(), xm)
        assert torch.equal(g, g_ref[:m]), m


def test_models_that_cannot_be_checked_keep_the_fixed_padding(one_thread):
    x = torch.rand(3, 1, 12, 12)
    assert call_rows(Noisy().eval(), x) == MIN_ROWS                  # its 16-row calls disagree already
    assert call_rows(Net().train(), x) == MIN_ROWS                   # train mode: no probe calls
    seen: list[int] = []

    def black_box(z: torch.Tensor) -> torch.Tensor:
        seen.append(z.shape[0])
        return torch.zeros(z.shape[0], 10)

    model = as_model(black_box)
    assert call_rows(model, x) == MIN_ROWS and seen == []           # a black box sees no probe
    padded_forward(model, x)
    assert seen == [MIN_ROWS]


def test_small_calls_run_at_one_thread_and_restore_the_count():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        model = Net().eval()
        x = torch.rand(MIN_ROWS + 4, 1, 12, 12)
        model.threads.clear()
        padded_forward(model, x[:3])
        assert model.threads and model.threads[-1] == 1
        assert torch.get_num_threads() == 2
        padded_forward(model, x)
        assert model.threads[-1] == 2
    finally:
        torch.set_num_threads(before)


def test_the_check_is_cached_per_model_and_setting(one_thread):
    model = Net().eval()
    x = torch.rand(3, 1, 12, 12)
    call_rows(model, x)
    calls = len(model.threads)
    call_rows(model, x)
    assert len(model.threads) == calls                                # no new probe calls
    assert len(_forward._cache[model]) == 1


@pytest.mark.parametrize("m", [0, MIN_ROWS, 40])
def test_calls_of_many_or_no_rows_are_not_padded(one_thread, m):
    model = Net().eval()
    assert call_rows(model, torch.rand(m, 1, 12, 12)) == m
