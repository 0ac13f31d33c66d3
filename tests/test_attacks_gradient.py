"""Baseline gradient attacks (FGSM, PGD, JSMA): bounds hold exactly, reported success is real,
targets are hit, seeds repeat, early stopping saves queries, bad arguments are refused."""

from __future__ import annotations

import pytest
import torch

from infoswarm.attacks.base import probs_of
from infoswarm.attacks.fgsm import FGSM
from infoswarm.attacks.jsma import JSMA
from infoswarm.attacks.pgd import PGD
from infoswarm.errors import InputError

from conftest import mnist_test_digits


@pytest.fixture(scope="module")
def mnist32():
    """The shipped MNIST CNN and 32 correctly classified test digits (float in [0,1])."""
    model, x, y = mnist_test_digits(100)
    ok = probs_of(model, x).argmax(1) == y
    return model, x[ok][:32].contiguous(), y[ok][:32].contiguous()


def rate(res) -> float:
    return float(res.success.double().mean())


def check_bounds(res, x, eps):
    xa = res.x_adv
    assert xa.shape == x.shape and xa.dtype == x.dtype
    assert xa.min() >= 0 and xa.max() <= 1
    assert (xa - x).abs().max() <= eps + 1e-6
    assert torch.all(res.linf <= eps + 1e-6)


def check_success_is_real(model, res, y, lo=None, hi=None):
    """success == (class condition on a fresh forward pass) and probability window."""
    p = probs_of(model, res.x_adv)
    pred = p.argmax(1)
    for i in range(len(y)):
        t = int(res.target[i])
        if t >= 0:
            judged, cls_ok = t, int(pred[i]) == t
        else:
            pw = p[i].clone()
            pw[int(y[i])] = -1.0
            judged, cls_ok = int(pw.argmax()), int(pred[i]) != int(y[i])
        pj = float(p[i, judged])
        want = cls_ok and (lo is None or pj >= lo) and (hi is None or pj <= hi)
        assert bool(res.success[i]) == want, f"image {i}: reported {bool(res.success[i])}, fresh {want}"
        assert float(res.target_prob[i]) == pytest.approx(pj, rel=1e-4, abs=1e-6)
    assert torch.equal(res.pred, pred)


ATTACKS = {
    "fgsm": lambda m, **kw: FGSM(m, eps=0.2, **kw),
    "fgsm-rs": lambda m, **kw: FGSM(m, eps=0.2, random_start=True, **kw),
    "pgd": lambda m, **kw: PGD(m, eps=0.2, alpha=0.05, steps=8, **kw),
    "jsma": lambda m, **kw: JSMA(m, pixels=10, eps=0.6, **kw),
}
EPS = {"fgsm": 0.2, "fgsm-rs": 0.2, "pgd": 0.2, "jsma": 0.6}


@pytest.mark.realdata
@pytest.mark.parametrize("name", list(ATTACKS))
def test_bounds_and_fresh_success(mnist32, name):
    model, x, y = mnist32
    res = ATTACKS[name](model)(x, y)
    check_bounds(res, x, EPS[name])
    check_success_is_real(model, res, y)
    assert torch.all(res.queries > 0)
    assert res.success.any(), f"{name} at this strength should fool some digits"
    if name == "jsma":
        assert torch.all(res.pixel_l0 <= 10)
        assert torch.all(res.target >= 0)               # default target "second"


@pytest.mark.slow
@pytest.mark.realdata
def test_pgd_beats_fgsm_and_large_eps_succeeds(mnist32):
    model, x, y = mnist32
    for eps in (0.1, 0.2):
        f = FGSM(model, eps=eps)(x, y)
        p = PGD(model, eps=eps, alpha=eps / 4, steps=10)(x, y)
        assert rate(p) >= rate(f), f"eps {eps}: PGD {rate(p)} < FGSM {rate(f)}"
    big = PGD(model, eps=0.3, alpha=0.075, steps=10)(x, y)
    check_bounds(big, x, 0.3)
    assert rate(big) >= 0.9, f"PGD eps 0.3 fooled only {rate(big):.2f} of 32 digits"


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.parametrize("lo,hi", [(0.9, None), (None, 0.6), (0.4, 0.7)])
def test_probability_window_is_respected(mnist32, lo, hi):
    model, x, y = mnist32
    for attack in (PGD(model, eps=0.3, alpha=0.03, steps=15, min_prob=lo, max_prob=hi),
                   PGD(model, eps=0.3, alpha=0.03, steps=15, target="second", min_prob=lo, max_prob=hi),
                   FGSM(model, eps=0.3, min_prob=lo, max_prob=hi),
                   JSMA(model, pixels=12, min_prob=lo, max_prob=hi)):
        res = attack(x, y)
        check_success_is_real(model, res, y, lo, hi)
    res = PGD(model, eps=0.3, alpha=0.03, steps=15, min_prob=lo, max_prob=hi)(x, y)
    assert rate(res) >= 0.5, f"PGD met the window [{lo}, {hi}] on only {rate(res):.2f}"


@pytest.mark.slow
@pytest.mark.realdata
def test_targeted_modes_hit_the_requested_target(mnist32):
    model, x, y = mnist32
    t = (y + 3) % 10
    for attack in (PGD(model, eps=0.3, alpha=0.03, steps=20, target=t),
                   FGSM(model, eps=0.3, target=t),
                   JSMA(model, pixels=25, target=t)):
        res = attack(x, y)
        assert torch.equal(res.target, t)
        assert torch.equal(res.pred[res.success], t[res.success])
        assert not torch.any(res.pred[~res.success] == t[~res.success])  # no criterion window
        check_success_is_real(model, res, y)
    pgd = PGD(model, eps=0.3, alpha=0.03, steps=20, target=t)(x, y)
    assert rate(pgd) >= 0.8
    # "second" = most probable wrong class of the clean image, for every attack
    p = probs_of(model, x)
    p[torch.arange(len(y)), y] = -1
    for attack in (JSMA(model, pixels=10), PGD(model, eps=0.2, alpha=0.05, steps=5, target="second")):
        assert torch.equal(attack(x, y).target, p.argmax(1))


@pytest.mark.slow
@pytest.mark.realdata
def test_jsma_budget_counts_locations_and_untargeted(mnist32):
    model, x, y = mnist32
    r10 = JSMA(model, pixels=10)(x, y)
    r20 = JSMA(model, pixels=20)(x, y)
    assert torch.all(r10.pixel_l0 <= 10) and torch.all(r20.pixel_l0 <= 20)
    assert rate(r20) >= rate(r10) and rate(r20) > 0.2
    # the reported indices are exactly the changed locations
    changed = (r20.x_adv != x).any(1).flatten(1)
    for i in range(len(x)):
        got = set(r20.indices[i][r20.indices[i] >= 0].tolist())
        assert got == set(changed[i].nonzero().view(-1).tolist())
    # queries: one Jacobian per move, +1 final judgement for images that spent the budget
    # (theta 1 saturates a location per move, so moves = changed locations)
    assert torch.equal(r20.queries, r20.pixel_l0 + 1)
    un = JSMA(model, pixels=20, target=None)(x, y)
    assert torch.all(un.target == -1)
    check_success_is_real(model, un, y)
    assert rate(un) > 0.2
    # theta < 0 only lowers values; theta 0.25 with eps 0.5 stays in the eps ball
    dec = JSMA(model, pixels=15, theta=-1.0)(x, y)
    assert torch.all(dec.x_adv <= x) and torch.all(dec.pixel_l0 <= 15)
    small = JSMA(model, pixels=8, theta=0.25, eps=0.5)(x, y)
    check_bounds(small, x, 0.5)
    assert torch.all(small.pixel_l0 <= 8) and torch.all(small.x_adv >= x)


@pytest.mark.realdata
def test_pgd_early_stop_saves_queries_and_freezes_images(mnist32):
    model, x, y = mnist32
    steps = 10
    short = PGD(model, eps=0.2, alpha=0.03, steps=steps, seed=3)(x, y)
    q = short.queries
    assert torch.all(q >= 1) and torch.all(q <= steps + 1)
    assert torch.all(q[~short.success] == steps + 1)
    early = short.success & (q <= steps)
    assert early.sum() >= 8, "most digits should fall well before the last step"
    assert float(q[short.success].double().mean()) < steps + 1
    # a finished image stops moving: more steps leave its (first successful) iterate unchanged
    long = PGD(model, eps=0.2, alpha=0.03, steps=2 * steps, seed=3)(x, y)
    assert torch.equal(long.x_adv[early], short.x_adv[early])
    assert torch.equal(long.queries[early], q[early])
    assert rate(long) >= rate(short)


@pytest.mark.slow
@pytest.mark.realdata
def test_seeds_repeat_and_differ(mnist32):
    model, x, y = mnist32
    for make in (lambda s: FGSM(model, eps=0.1, random_start=True, seed=s),
                 lambda s: PGD(model, eps=0.1, alpha=0.02, steps=3, seed=s)):
        a, b, c = make(5)(x, y), make(5)(x, y), make(6)(x, y)
        assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.queries, b.queries)
        assert not torch.equal(a.x_adv, c.x_adv)
    # deterministic attacks repeat as well
    assert torch.equal(JSMA(model, pixels=5)(x, y).x_adv, JSMA(model, pixels=5)(x, y).x_adv)
    assert torch.equal(FGSM(model, eps=0.1)(x, y).x_adv, FGSM(model, eps=0.1)(x, y).x_adv)


def test_colour_float64_and_whole_locations(tiny):
    """3-channel float64 images: dtype kept, bounds exact, JSMA moves whole locations."""
    model, x = tiny(channels=3, size=5, classes=6, n=6, seed=1)
    x = x.clamp(0.05, 0.95)                           # strictly inside (0,1): every channel can move
    y = probs_of(model, x).argmax(1)
    for att, eps in ((FGSM(model, eps=0.05, random_start=True), 0.05),
                     (PGD(model, eps=0.05, alpha=0.01, steps=4), 0.05)):
        res = att(x, y)
        check_bounds(res, x, eps)
        check_success_is_real(model, res, y)
    res = JSMA(model, pixels=3, theta=0.02, eps=0.04)(x, y)
    check_bounds(res, x, 0.04)
    assert torch.all(res.pixel_l0 <= 3)
    assert torch.equal(res.element_l0, 3 * res.pixel_l0)  # all channels of a location move
    check_success_is_real(model, res, y)
    with pytest.raises(InputError, match="exceeds"):
        JSMA(model, pixels=26)(x, y)


@pytest.mark.realdata
def test_target_equal_to_label_and_bad_arguments_are_refused(mnist32):
    model, x, y = mnist32
    for make in (lambda: FGSM(model, target=y), lambda: PGD(model, target=y),
                 lambda: JSMA(model, target=y), lambda: PGD(model, target=int(y[0]))):
        with pytest.raises(InputError, match="its true class"):
            make()(x, y)
    bad = [lambda: FGSM(model, eps=0), lambda: FGSM(model, eps=-0.1), lambda: PGD(model, eps=0.0),
           lambda: PGD(model, steps=0), lambda: PGD(model, alpha=0), lambda: JSMA(model, pixels=0),
           lambda: JSMA(model, theta=0.0), lambda: JSMA(model, eps=0), lambda: FGSM(model, min_prob=1.5),
           lambda: PGD(model, min_prob=0.8, max_prob=0.5), lambda: FGSM(model, eps=float("nan"))]
    for make in bad:
        with pytest.raises(InputError) as err:
            make()
        assert "\n" not in str(err.value) and ";" in str(err.value)
    with pytest.raises(InputError):
        FGSM(model)(x * 2, y)                         # images outside [0, 1]
