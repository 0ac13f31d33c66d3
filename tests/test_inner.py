"""Inner L0 attacks and objectives of sparse adversarial training (infoswarm.inner)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from infoswarm import inner


class Net(nn.Module):
    def __init__(self, c: int = 1, size: int = 8, k: int = 5) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, 6, 3, padding=1)
        self.fc = nn.Linear(6 * size * size, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.tanh(self.conv(x)).flatten(1))


@pytest.fixture
def setup():
    torch.manual_seed(0)
    net = Net(3).eval()
    x = torch.rand(12, 3, 8, 8)
    y = torch.randint(0, 5, (12,))
    return net, x, y


def _changed(x: torch.Tensor, xa: torch.Tensor) -> torch.Tensor:
    return (xa != x).any(1).flatten(1).sum(1)


@pytest.mark.parametrize("kind", ["one-step", "swap", "pgd0", "spgd"])
@pytest.mark.parametrize("eps", [1.0, 0.2])
def test_inner_attack_changes_at_most_k_pixels_inside_the_box(setup, kind, eps):
    net, x, y = setup
    k = 5
    xa, passes, ce0 = inner.inner_attack(net, x, y, k, kind=kind, steps=3, eps=eps,
                                         gen=torch.Generator().manual_seed(1))
    assert xa.shape == x.shape
    assert int(_changed(x, xa).max()) <= k
    assert bool(((xa - x).abs() <= eps + 1e-6).all()) and bool(((xa >= 0) & (xa <= 1)).all())
    assert torch.allclose(ce0, F.cross_entropy(net(x), y, reduction="none"), atol=1e-5)
    assert passes["backward"] == (1 if kind in ("one-step", "swap") else 4)
    if kind == "spgd":                       # projected: 1 + 3 + 1 forward; continuous: 3 more judgements
        assert passes["forward"] in (5, 8)
    else:
        assert passes["forward"] == {"one-step": 1, "swap": 5, "pgd0": 5}[kind]


def test_one_step_with_gain_prior_picks_the_largest_first_order_gain(setup):
    net, x, y = setup
    k = 4
    xa, _, _ = inner.inner_attack(net, x, y, k, kind="one-step", random_frac=0.0, prior="gain",
                                  gen=torch.Generator().manual_seed(0))
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(net(xg), y, reduction="sum"), xg)
    v = torch.where(g > 0, 1.0, 0.0)
    gain = (g.abs() * (v - x).abs()).sum(1).flatten(1)
    top = gain.topk(k, dim=1).indices.sort(1).values
    moved = (xa != x).any(1).flatten(1)
    for i in range(len(x)):
        assert set(moved[i].nonzero().view(-1).tolist()) <= set(top[i].tolist())
        assert torch.equal(xa[i].flatten(1)[:, top[i]], v[i].flatten(1)[:, top[i]])


def test_uniform_prior_and_random_share_do_not_follow_the_gradient(setup):
    net, x, y = setup
    a, _, _ = inner.inner_attack(net, x, y, 4, kind="one-step", random_frac=0.0, prior="uniform",
                                 gen=torch.Generator().manual_seed(0))
    b, _, _ = inner.inner_attack(net, x, y, 4, kind="one-step", random_frac=0.0, prior="uniform",
                                 gen=torch.Generator().manual_seed(1))
    assert not torch.equal(a, b)                                    # drawn, not chosen by the gradient


@pytest.mark.parametrize("kind", ["swap", "pgd0"])
def test_multi_step_inner_attacks_never_lower_the_loss_of_their_start(setup, kind):
    net, x, y = setup
    start, _, _ = inner.inner_attack(net, x, y, 5, kind="one-step", gen=torch.Generator().manual_seed(3))
    more, _, _ = inner.inner_attack(net, x, y, 5, kind=kind, steps=6, gen=torch.Generator().manual_seed(3))
    with torch.no_grad():
        l0 = F.cross_entropy(net(start), y, reduction="none")
        l1 = F.cross_entropy(net(more), y, reduction="none")
    assert bool((l1 >= l0 - 1e-5).all())
    assert float(l1.mean()) > float(l0.mean())                    # the search finds better locations


@pytest.mark.parametrize("m0,steps", [(15, 48), (15, 4), (5, 4), (1, 3), (3, 8), (10, 2)])
def test_swap_size_halves_from_m0_to_one_location(m0, steps):
    sizes = [inner.swap_size(s, steps, m0) for s in range(steps)]
    assert sizes[0] == m0
    assert all(a >= b for a, b in zip(sizes, sizes[1:]))
    assert all(b in (a, a // 2) or b == a >> 2 for a, b in zip(sizes, sizes[1:]))
    if steps >= m0.bit_length():              # enough steps for every halving: the search ends on single swaps
        assert sizes[-1] == 1


def test_spgd_beats_random_locations_in_both_variants(setup):
    net, x, y = setup
    seen = set()
    for seed in range(6):                                  # the variant is drawn per call: both occur
        gen = torch.Generator().manual_seed(seed)
        rand, _, _ = inner.inner_attack(net, x, y, 5, kind="one-step", prior="uniform", random_frac=1.0, gen=gen)
        gen = torch.Generator().manual_seed(seed)
        xa, passes, _ = inner.inner_attack(net, x, y, 5, kind="spgd", steps=8, prior="uniform", gen=gen)
        seen.add(passes["forward"])
        with torch.no_grad():
            lr_ = F.cross_entropy(net(rand), y, reduction="none")
            ls = F.cross_entropy(net(xa), y, reduction="none")
        assert float(ls.mean()) > float(lr_.mean())
    assert seen == {1 + 8 + 1, 1 + 16 + 1}


def test_prior_both_keeps_the_stronger_of_uniform_and_gain_per_image(setup):
    net, x, y = setup
    runs = {}
    for prior in ("uniform", "gain", "both"):
        runs[prior] = inner.inner_attack(net, x, y, 6, kind="swap", steps=3, prior=prior,
                                         gen=torch.Generator().manual_seed(5))
    gen = torch.Generator().manual_seed(5)        # "both" draws the uniform run first, then the gain run
    xu, _, _ = inner.inner_attack(net, x, y, 6, kind="swap", steps=3, prior="uniform", gen=gen)
    xg, _, _ = inner.inner_attack(net, x, y, 6, kind="swap", steps=3, prior="gain", gen=gen)
    xb, passes, _ = runs["both"]
    with torch.no_grad():
        lu, lg, lb = (F.cross_entropy(net(v), y, reduction="none") for v in (xu, xg, xb))
    assert torch.equal(lb, torch.maximum(lu, lg))
    assert passes == {"forward": 2 * 5 - 1 + 2, "backward": 1}     # one shared gradient pass


def test_bad_k_is_refused(setup):
    net, x, y = setup
    for k in (0, 65):
        with pytest.raises(ValueError):
            inner.inner_attack(net, x, y, k, gen=torch.Generator())


def test_rank_weights_have_mean_one_and_follow_the_score():
    s = torch.tensor([0.3, 5.0, 0.1, 2.0])
    w = inner.rank_weights(s, 2.0)
    assert abs(float(w.mean()) - 1) < 1e-6
    assert w.argsort().tolist() == s.argsort().tolist()
    assert torch.equal(inner.rank_weights(s, 0.0), torch.ones(4))


def test_objectives():
    torch.manual_seed(0)
    lc, la = torch.randn(6, 4), torch.randn(6, 4)
    y = torch.randint(0, 4, (6,))
    assert torch.allclose(inner.objective(lc, la, y, kind="ce"), F.cross_entropy(la, y))
    assert torch.allclose(inner.objective(lc, la, y, kind="trades", beta=0.0), F.cross_entropy(lc, y))
    kl = (torch.softmax(lc, 1) * (torch.log_softmax(lc, 1) - torch.log_softmax(la, 1))).sum(1).mean()
    assert torch.allclose(inner.objective(lc, la, y, kind="trades", beta=2.0), F.cross_entropy(lc, y) + 2 * kl,
                          atol=1e-6)
    assert torch.allclose(inner.objective(lc, lc, y, kind="trades", beta=5.0), F.cross_entropy(lc, y), atol=1e-6)
    w = torch.tensor([2.0, 0, 0, 0, 0, 0])
    assert torch.allclose(inner.objective(lc, la, y, kind="ce", weights=w),
                          2 * F.cross_entropy(la[:1], y[:1]) / 6)
