"""The zoo architectures' pooling helpers (infoswarm.models): the fast no-gradient path must give
torch's pooling bit for bit, and the gradient path torch's own gradients; the median filter
against a loop over windows in numpy."""

import numpy as np
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


def _median_reference(x: np.ndarray, size: int) -> np.ndarray:
    r = size // 2
    p = np.pad(x, ((0, 0), (0, 0), (r, r), (r, r)), mode="edge")
    out = np.empty_like(x)
    for i in range(x.shape[2]):
        for j in range(x.shape[3]):
            out[:, :, i, j] = np.median(p[:, :, i:i + size, j:j + size].reshape(*x.shape[:2], -1), axis=-1)
    return out


@pytest.mark.parametrize("shape,size", [((2, 3, 7, 9), 3), ((1, 1, 28, 28), 3), ((2, 1, 6, 5), 5), ((1, 2, 1, 1), 3)])
def test_median_filter_equals_the_median_of_each_edge_padded_window(shape, size):
    x = _tied(shape, seed=3)
    got = models.median_filter(x, size)                       # size 3: the sorting network
    assert got.shape == x.shape
    np.testing.assert_array_equal(got.numpy(), _median_reference(x.numpy(), size))
    with_grad = models.median_filter(x.clone().requires_grad_(True), size)   # torch.median
    assert torch.equal(with_grad.detach(), got)
    assert torch.equal(models.median_filter(x, 1), x)


def test_median_filter_erases_isolated_pixels_and_keeps_clusters():
    x = torch.zeros(1, 1, 12, 12)
    x[0, 0, 2, 2] = 1.0                     # an isolated pixel: gone
    x[0, 0, 6:9, 6:9] = 1.0                 # a 3x3 block: its centre and edge midpoints stay
    out = models.median_filter(x, 3)[0, 0]
    assert out[2, 2] == 0
    assert out.sum() == 5 and out[7, 7] == 1 and out[6, 7] == 1 and out[6, 6] == 0


def test_median_filter_sends_the_gradient_to_each_windows_median_element():
    x = torch.rand(1, 1, 5, 5, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    (g,) = torch.autograd.grad(models.median_filter(x, 3)[0, 0, 2, 2], x)
    window = x.detach()[0, 0, 1:4, 1:4]
    assert g.sum() == 1 and g[0, 0, 1:4, 1:4].sum() == 1    # one element, inside the window
    assert x.detach()[g != 0].item() == window.median().item()


@pytest.mark.parametrize("size", [0, 2, -3])
def test_median_filter_rejects_an_even_or_non_positive_size(size):
    with pytest.raises(models.InputError, match="odd"):
        models.median_filter(torch.zeros(1, 1, 4, 4), size)
    with pytest.raises(models.InputError, match="odd"):
        models.SmallCNN(median=size if size else 4)


def test_a_median_front_keeps_the_state_dict_and_changes_what_the_network_sees():
    torch.manual_seed(0)
    plain, front = models.SmallCNN().eval(), models.SmallCNN(median=3).eval()
    front.load_state_dict(plain.state_dict())
    assert plain.state_dict().keys() == front.state_dict().keys()
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(front(x), plain(models.median_filter(x, 3)))


@pytest.mark.parametrize("arch", [lambda: models.SmallCNN(), lambda: models.SmallCNN(median=3),
                                  lambda: models.CifarCNN(widths=(8, 16, 32))])
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
