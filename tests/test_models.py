"""The zoo architectures' pooling helpers (infoswarm.models): the fast no-gradient path must give
torch's pooling bit for bit, and the gradient path torch's own gradients."""

import pytest
import torch
import torch.nn.functional as F

from infoswarm import models


def _tied(shape, seed=0):
    """Random values on a coarse grid with a constant band: many exact ties inside windows."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).round(decimals=1)
    x[:, :, : shape[2] // 2] = 0.5
    return x


@pytest.mark.parametrize("shape", [(3, 4, 8, 8), (2, 3, 7, 9), (1, 1, 2, 2), (5, 2, 28, 28), (2, 2, 3, 3)])
def test_max_pool2_without_gradient_equals_max_pool2d(shape):
    x = _tied(shape)
    x[0, 0, 0, 0] = float("nan")
    with torch.no_grad():
        got = models.max_pool2(x)
    want = F.max_pool2d(x, 2)
    assert got.shape == want.shape
    assert torch.equal(got.isnan(), want.isnan())
    assert torch.equal(got.nan_to_num(), want.nan_to_num())


def test_global_max_without_gradient_equals_adaptive_max_pool():
    x = _tied((3, 5, 6, 7))
    with torch.no_grad():
        assert torch.equal(models.global_max(x), F.adaptive_max_pool2d(x, 1).flatten(1))


def test_with_a_gradient_the_first_maximum_of_each_window_gets_it():
    x = _tied((2, 3, 6, 6)).requires_grad_(True)
    out = models.max_pool2(x)
    (g,) = torch.autograd.grad(out.sum(), x)
    xr = x.detach().clone().requires_grad_(True)
    (gr,) = torch.autograd.grad(F.max_pool2d(xr, 2).sum(), xr)
    assert torch.equal(g, gr)
    # one unit per window, not split between ties (the constant band ties every window)
    assert g.view(2, 3, 3, 2, 3, 2).sum((3, 5)).eq(1).all()


@pytest.mark.parametrize("arch", [lambda: models.SmallCNN(), lambda: models.CifarCNN(widths=(8, 16, 32))])
def test_architectures_give_the_same_logits_with_and_without_autograd(arch):
    torch.manual_seed(0)
    m = arch().eval()
    c, s = (1, 28) if isinstance(m, models.SmallCNN) else (3, 32)
    x = torch.rand(6, c, s, s)
    x[:, :, : s // 3] = 0.0
    with torch.no_grad():
        fast = m(x)
    slow = m(x.clone().requires_grad_(True)).detach()
    assert torch.equal(fast, slow)
    assert torch.equal(torch.jit.script(m)(x).detach(), fast)
