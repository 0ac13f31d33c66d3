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


def _binary_world() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(3)
    net = Net(1).eval()
    x = (torch.rand(40, 1, 8, 8) > 0.7).float()          # near-binary images, as MNIST's
    return net, x, torch.randint(0, 5, (40,))


@pytest.mark.parametrize("kind", ["one-step", "swap"])
def test_far_corners_change_every_chosen_location_where_gradient_corners_waste_some(kind):
    """On binary images the gradient's corner is the pixel itself wherever the gradient points
    out of the box: uniformly drawn locations there do not change. The far corner always does."""
    net, x, y = _binary_world()
    k = 12
    kw = dict(kind=kind, steps=6, prior="uniform", random_frac=0.5)
    xg, _, _ = inner.inner_attack(net, x, y, k, corner="gradient", gen=torch.Generator().manual_seed(0), **kw)
    xf, _, _ = inner.inner_attack(net, x, y, k, corner="far", gen=torch.Generator().manual_seed(0), **kw)
    assert bool((_changed(x, xf) == k).all())
    assert bool((xf[xf != x] == 1 - x[xf != x]).all())               # flipped: 0 -> 1, 1 -> 0
    assert int(_changed(x, xg).max()) <= k and float(_changed(x, xg).float().mean()) < k - 1


def test_far_gain_counts_only_channels_the_far_move_helps(setup):
    net, x, y = setup
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(net(xg), y, reduction="sum"), xg)
    lo, hi = torch.zeros_like(x), torch.ones_like(x)
    score, v = inner.gain(g, x, lo, hi, "far")
    assert torch.equal(v, (x < 0.5).float())
    brute = torch.tensor([sum(max(0.0, float(g[i, c, a, b] * (v[i, c, a, b] - x[i, c, a, b])))
                             for c in range(x.shape[1])) for i in range(2) for a in range(8) for b in range(8)])
    assert torch.allclose(score[:2].flatten().double(), brute.double(), atol=1e-6)
    assert bool((score >= 0).all())
    with pytest.raises(ValueError, match="corner"):
        inner.inner_attack(net, x, y, 3, corner="near", gen=torch.Generator())  # type: ignore[arg-type]


@pytest.mark.parametrize("prior", ["uniform", "gain"])
def test_swarm_inner_attack_is_sparse_swarm_within_k_pixels_and_its_budget(prior):
    """The "swarm" inner attack: at most k changed locations at corners, at least as often
    misleading as one random k-pixel draw, within its query budget, seeded from ``gen``."""
    net, x, y = _binary_world()
    with torch.no_grad():
        y = net(x).argmax(1)                                  # every image starts correct
    k, budget = 6, 30
    xa, passes, ce0 = inner.inner_attack(net, x, y, k, kind="swarm", steps=budget, prior=prior,
                                         gen=torch.Generator().manual_seed(0))
    assert int(_changed(x, xa).max()) <= k and bool(((xa == 0) | (xa == 1)).all())
    assert torch.allclose(ce0, F.cross_entropy(net(x), y, reduction="none"), atol=1e-5)
    assert 1 <= passes["forward"] <= budget + 1
    assert (passes["backward"] == 0) if prior == "uniform" else (passes["backward"] >= 1)  # the gain map
    with torch.no_grad():
        fooled = int((net(xa).argmax(1) != y).sum())
        g = torch.Generator().manual_seed(5)
        loc = torch.rand(len(x), 64, generator=g).topk(k, dim=1).indices
        rand = inner._write(x, 1 - x, loc)
        fooled_random = int((net(rand).argmax(1) != y).sum())
    assert fooled >= fooled_random and fooled > 0
    again, _, _ = inner.inner_attack(net, x, y, k, kind="swarm", steps=budget, prior=prior,
                                     gen=torch.Generator().manual_seed(0))
    assert torch.equal(again, xa)
    with pytest.raises(ValueError, match="prior"):
        inner.inner_attack(net, x, y, k, kind="swarm", steps=budget, prior="both", gen=torch.Generator())
    with pytest.raises(ValueError, match="steps"):
        inner.inner_attack(net, x, y, k, kind="swarm", steps=0, gen=torch.Generator())


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
