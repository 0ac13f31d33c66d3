"""PGD0 (white-box L0 PGD): the projection is the L0/box projection, outputs stay within k
pixels and the box, successes re-verify, budgets hold, seeds and chunks repeat, and it finds a
known pixel set."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from infoswarm.attacks import PGD0, registry
from infoswarm.attacks.base import probs_of
from infoswarm.attacks.pgd0 import project_l0
from infoswarm.errors import InputError

pytestmark = pytest.mark.usefixtures("one_thread_module")


def test_projection_is_the_nearest_k_sparse_point_in_the_box():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, 2, 3, generator=g)
    u = x + 0.8 * torch.randn(3, 2, 2, 3, generator=g)
    eps = 0.3
    lo, hi = (x - eps).clamp(min=0), (x + eps).clamp(max=1)
    for k in (1, 2, 4):
        p = project_l0(x, u, lo, hi, k)
        assert torch.all((p != x).any(1).flatten(1).sum(1) <= k)
        assert torch.all(p >= lo) and torch.all(p <= hi)
        for i in range(3):  # brute force over every set of k locations
            best = min(((torch.where(torch.isin(torch.arange(6), torch.tensor(s)).view(1, 2, 3),
                                     u[i].clamp(lo[i], hi[i]), x[i]) - u[i]).square().sum().item())
                       for s in itertools.combinations(range(6), k))
            assert (p[i] - u[i]).square().sum().item() == pytest.approx(best, rel=1e-6)


@pytest.mark.realdata
@pytest.mark.parametrize("k,eps,targeted", [(1, 1.0, False), (10, 1.0, False), (10, 0.3, True)])
def test_bounds_budget_and_reverified_success(mnist, k, eps, targeted):
    model, x, y = mnist
    t = (y + 1) % 10 if targeted else None
    res = PGD0(model, pixels=k, eps=eps, steps=10, restarts=3, target=t)(x, y)
    assert torch.all(res.pixel_l0 <= k)
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1 and torch.all(res.linf <= eps + 1e-6)
    assert torch.all(res.queries >= 1) and torch.all(res.queries <= 31)
    assert torch.equal(res.grad_evals, res.queries)
    p = probs_of(model, res.x_adv)
    hit = p.argmax(1) == t if targeted else p.argmax(1) != y
    assert torch.equal(res.success, hit)
    if k == 10 and not targeted:
        assert res.success.double().mean() >= 0.5     # observed 8/8: a real attack, not a no-op


@pytest.mark.realdata
def test_seed_and_chunks(mnist):
    model, x, y = mnist
    att = PGD0(model, pixels=3, steps=5, restarts=3, seed=2)
    a = att(x, y)
    assert torch.equal(a.x_adv, att(x, y).x_adv)
    parts = [att(x[:5], y[:5]), att(x[5:], y[5:], offset=5)]
    assert torch.equal(torch.cat([r.x_adv for r in parts]), a.x_adv)
    assert torch.equal(torch.cat([r.queries for r in parts]), a.queries)


class Needle(nn.Module):
    """class 1 wins only when pixels 9, 27 and 50 of an 8x8 image are all bright."""

    def forward(self, x):
        s = x.flatten(1)[:, [9, 27, 50]].sum(1)
        return torch.stack([torch.zeros_like(s), 10 * s - 25], 1)


def test_finds_the_known_pixel_set():
    x = torch.full((3, 1, 8, 8), 0.1)
    res = PGD0(Needle(), pixels=3, steps=50)(x, torch.zeros(3, dtype=torch.long))
    assert torch.all(res.success)
    for i in range(3):
        assert sorted(v for v in res.indices[i].tolist() if v >= 0) == [9, 27, 50]


def test_registry_budget():
    att = registry.build("pgd0", Needle(), pixels=3, budget=1000, target=None)
    assert att.steps * att.restarts + 1 <= 1000


@pytest.mark.parametrize("kwargs,needle", [
    (dict(pixels=65), "exceeds"), (dict(pixels=0), "pixels must be a positive integer"),
    (dict(steps=0), "steps must be a positive integer"), (dict(restarts=0), "restarts must be"),
    (dict(alpha=0), "alpha must be positive"), (dict(eps=-1), "eps must be positive"),
])
def test_bad_arguments(kwargs, needle):
    with pytest.raises(InputError) as e:
        PGD0(Needle(), **{"pixels": 2, **kwargs})(torch.zeros(1, 1, 8, 8), torch.zeros(1, dtype=torch.long))
    assert needle in str(e.value) and "\n" not in str(e.value)
