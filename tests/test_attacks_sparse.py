"""One-pixel DE and Sparse-RS: sparsity and box hold, successes re-verify, seeds repeat,
batching is invisible (bit for bit), budgets are respected, bad arguments are refused."""

from __future__ import annotations

import pytest
import torch

from infoswarm.attacks._sparse import _apply, _loss
from infoswarm.attacks.base import probs_of
from infoswarm.attacks.onepixel import OnePixel
from infoswarm.attacks.sparse_rs import SparseRS, alpha_schedule
from infoswarm.criteria import Criterion
from infoswarm.errors import InputError

from conftest import mnist_test_digits

# These attacks make many small model calls; with two OpenMP threads on a busy 2-core machine
# each call can take 20x longer (spin-waiting), so this module runs on one thread.
pytestmark = pytest.mark.usefixtures("one_thread_module")


@pytest.fixture(scope="module")
def digits():
    """mnist-cnn, the first 2000 MNIST test digits and the model's probabilities on them."""
    model, x, y = mnist_test_digits(2000)
    return model, x, y, probs_of(model, x)


@pytest.fixture(scope="module")
def mnist_right_wrong(digits):
    """mnist-cnn, the first 16 correctly classified digits, and the first misclassified one."""
    model, x, y, p = digits
    pred = p.argmax(1)
    right = (pred == y).nonzero().view(-1)[:16]
    wrong = (pred != y).nonzero().view(-1)[:1]
    return model, x[right], y[right], x[wrong], y[wrong]


@pytest.fixture(scope="module")
def mixed(digits, mnist_right_wrong):
    """Eight digits on which small budgets give mixed outcomes: six correctly classified with
    p_y ≈ 0.66–0.71 (the 13th–18th least confident of the first 2000) and two confident ones."""
    model, x, y, p = digits
    _, xc, yc, _, _ = mnist_right_wrong
    conf = torch.where(p.argmax(1) == y, p.max(1).values, torch.full_like(p[:, 0], 2.0))
    pick = torch.argsort(conf)[12:18]
    return model, torch.cat([x[pick], xc[:2]]), torch.cat([y[pick], yc[:2]])


def small_op(model, **kw):
    return OnePixel(model, **{"population": 8, "iterations": 3, **kw})


def small_rs(model, **kw):
    return SparseRS(model, **{"budget": 40, **kw})


def check_box(res, x, k, eps):
    assert torch.all(res.pixel_l0 <= k)
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    assert torch.all(res.linf <= eps + 1e-6)
    changed = (res.x_adv != x).any(1).flatten(1)
    for i in range(len(x)):  # only reported locations move
        assert set(changed[i].nonzero().view(-1).tolist()) <= set(res.indices[i].tolist())
    assert res.indices.shape == (len(x), k)


def fresh_success(model, res, lo=None, hi=None, classes=10):
    p = probs_of(model, res.x_adv)
    pred = p.argmax(1)
    tgt = res.target
    judged = torch.where(tgt >= 0, tgt, p.masked_fill(torch.nn.functional.one_hot(res.y, classes).bool(), -1).argmax(1))
    pj = p.gather(1, judged.view(-1, 1)).view(-1)
    hit = torch.where(tgt >= 0, pred == tgt, pred != res.y)
    if lo is not None:
        hit &= pj >= lo
    if hi is not None:
        hit &= pj <= hi
    return hit


# --- bounds, re-verification, budgets ------------------------------------------------------

@pytest.mark.realdata
@pytest.mark.parametrize("k,eps", [(1, 1.0), (3, 0.3), (20, 1.0)])
def test_sparse_rs_sparsity_box_corners_and_budget(mnist_right_wrong, k, eps):
    model, x, y, _, _ = mnist_right_wrong
    x, y = x[:6], y[:6]
    res = small_rs(model, pixels=k, eps=eps)(x, y)
    check_box(res, x, k, eps)
    # every changed entry sits at a corner of its box
    lo, hi = (x - eps).clamp(min=0), (x + eps).clamp(max=1)
    moved = res.x_adv != x
    assert torch.all((res.x_adv[moved] == lo[moved]) | (res.x_adv[moved] == hi[moved]))
    assert torch.all(res.queries >= 1) and torch.all(res.queries <= 40)
    assert torch.equal(res.success, fresh_success(model, res))
    assert torch.all(res.queries[~res.success] == 40)  # failures spend the whole budget


@pytest.mark.realdata
@pytest.mark.parametrize("k,eps", [(1, 1.0), (3, 0.3)])
def test_onepixel_sparsity_box_and_budget(mnist_right_wrong, k, eps):
    model, x, y, _, _ = mnist_right_wrong
    x, y = x[:6], y[:6]
    res = small_op(model, pixels=k, eps=eps)(x, y)
    check_box(res, x, k, eps)
    assert torch.all(res.queries % 8 == 0) and torch.all(res.queries <= 8 * 4) and torch.all(res.queries >= 8)
    assert torch.all(res.queries[~res.success] == 8 * 4)
    assert torch.equal(res.success, fresh_success(model, res))


@pytest.mark.realdata
def test_pixels_equal_to_all_locations(mnist_right_wrong):
    model, x, y, _, _ = mnist_right_wrong
    res = small_rs(model, pixels=28 * 28, budget=4)(x[:2], y[:2])
    check_box(res, x[:2], 784, 1.0)
    assert res.indices.sort(1).values.equal(torch.arange(784).expand(2, 784))


@pytest.mark.realdata
def test_already_misclassified_image_is_returned_unchanged(mnist_right_wrong):
    model, _, _, xw, yw = mnist_right_wrong
    if len(xw) == 0:
        pytest.skip("mnist-cnn classifies the first 2000 test digits correctly")
    for attack in (small_rs(model, pixels=5), small_op(model, pixels=2)):
        res = attack(xw, yw)
        assert bool(res.success[0]) and int(res.queries[0]) == 0
        assert torch.equal(res.x_adv, xw) and torch.all(res.indices == -1)


# --- windows and targets -----------------------------------------------------------------------

@pytest.mark.realdata
@pytest.mark.parametrize("lo,hi", [(0.8, None), (None, 0.6)])
def test_success_respects_probability_window(mixed, lo, hi):
    model, x, y = mixed
    for attack in (SparseRS(model, pixels=20, budget=150, min_prob=lo, max_prob=hi),
                   OnePixel(model, pixels=10, population=16, iterations=8, min_prob=lo, max_prob=hi)):
        res = attack(x, y)
        assert torch.equal(res.success, fresh_success(model, res, lo, hi))
        assert res.success.sum() >= 1, f"{type(attack).__name__} met the window on no digit"


@pytest.mark.realdata
def test_targeted_success_hits_the_target(mnist_right_wrong):
    model, x, y, _, _ = mnist_right_wrong
    x, y = x[:8], y[:8]
    t = (y + 1) % 10
    res = SparseRS(model, pixels=20, budget=200, target=t)(x, y)
    assert torch.equal(res.target, t)
    pred = probs_of(model, res.x_adv).argmax(1)
    assert torch.equal(res.success, pred == t)
    assert res.success.sum() >= 2
    res2 = small_op(model, pixels=3, target="second")(x, y)
    assert torch.all(res2.target != y) and torch.all(res2.target >= 0)
    assert torch.equal(res2.success, probs_of(model, res2.x_adv).argmax(1) == res2.target)


# --- seeds and batching --------------------------------------------------------------------------

@pytest.mark.realdata
@pytest.mark.parametrize("make", [lambda m, s: small_rs(m, pixels=4, seed=s),
                                  lambda m, s: small_op(m, pixels=2, seed=s)], ids=["sparse-rs", "onepixel"])
def test_batched_equals_one_at_a_time_and_seeds_repeat(mixed, make):
    model, x, y = mixed
    a = make(model, 3)(x, y)
    assert a.queries.unique().numel() > 1, "images should finish at different times"
    b = make(model, 3)(x, y)
    for f in ("x_adv", "indices", "queries", "success"):
        assert torch.equal(getattr(a, f), getattr(b, f)), f
    for i in range(len(x)):
        one = make(model, 3)(x[i: i + 1], y[i: i + 1], offset=i)    # image i draws from (seed, i)
        for f in ("x_adv", "indices", "queries", "success"):
            assert torch.equal(getattr(one, f)[0], getattr(a, f)[i]), (i, f)
        # finalize's fresh forward pass on a single image may round differently in the last bits
        assert one.target_prob[0].item() == pytest.approx(a.target_prob[i].item(), rel=1e-4, abs=1e-9)
    other = make(model, 4)(x, y)
    assert not torch.equal(other.x_adv, a.x_adv)
    assert not torch.equal(other.indices, a.indices)


@pytest.mark.realdata
def test_batch_size_does_not_change_results(mixed):
    """batch_size splits the candidates over several model calls; results stay the same."""
    model, x, y = mixed
    for make in (lambda bs: small_op(model, pixels=2, batch_size=bs),
                 lambda bs: small_rs(model, pixels=4, batch_size=bs)):
        a, b = make(4096)(x, y), make(5)(x, y)
        assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.queries, b.queries)


def test_colour_images_and_float64_models(tiny):
    """3-channel float64 model: boxes per channel, corners per channel, batching invisible."""
    model, x = tiny(channels=3, size=5, classes=6, n=5)
    x[0] = (x[0] > 0.5).double()              # a binary image: every corner but its own differs
    y = model(x).argmax(1)
    for eps in (1.0, 0.2):
        for attack in (SparseRS(model, pixels=4, budget=30, eps=eps, seed=1),
                       OnePixel(model, pixels=3, population=6, iterations=4, eps=eps, seed=1)):
            res = attack(x, y)
            check_box(res, x, attack.pixels, eps)
            assert res.x_adv.dtype == torch.float64
            assert torch.equal(res.success, fresh_success(model, res, classes=6))
            for i in range(len(x)):
                one = attack(x[i: i + 1], y[i: i + 1], offset=i)
                assert torch.equal(one.x_adv[0], res.x_adv[i]) and torch.equal(one.queries[0], res.queries[i])
            if isinstance(attack, SparseRS):
                lo, hi = (x - eps).clamp(min=0), (x + eps).clamp(max=1)
                moved = res.x_adv != x
                assert torch.all((res.x_adv[moved] == lo[moved]) | (res.x_adv[moved] == hi[moved]))
                if eps == 1.0:                          # new corners never equal the clean pixel
                    assert int(res.queries[0]) > 0 and int(res.pixel_l0[0]) == 4


# --- strength --------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.realdata
def test_sparse_rs_20_pixels_fools_most_digits(mnist_right_wrong):
    model, x, y, _, _ = mnist_right_wrong
    res = SparseRS(model, pixels=20, budget=1000)(x, y)
    rate = float(res.success.double().mean())
    # observed (seed 0): 16/16, median 34 queries, at most 397
    assert rate >= 0.75, f"Sparse-RS 20 px / 1000 queries fooled only {rate:.0%} of 16 digits"
    assert torch.all(res.queries <= 1000)
    assert torch.equal(res.success, fresh_success(model, res))


# --- pieces --------------------------------------------------------------------------------------

def test_alpha_schedule_is_the_papers_rescaled_table():
    assert alpha_schedule(1, 10000, 0.3) == pytest.approx(0.15)
    assert alpha_schedule(50, 10000, 0.3) == pytest.approx(0.15)
    assert alpha_schedule(51, 10000, 0.3) == pytest.approx(0.075)
    assert alpha_schedule(600, 10000, 0.3) == pytest.approx(0.05)
    assert alpha_schedule(9999, 10000, 0.3) == pytest.approx(0.015)
    assert alpha_schedule(1, 100000, 0.3) == pytest.approx(0.3)       # j = 0
    assert alpha_schedule(100, 1000, 0.3) == pytest.approx(0.3 / 6)  # rescaled: j = 1000
    vals = [alpha_schedule(s, 1000, 0.3) for s in range(1, 1000)]
    assert all(a >= b for a, b in zip(vals, vals[1:]))


def test_de_partners_are_distinct_and_not_self():
    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        for p in (4, 5, 37):
            r = OnePixel._others(g, p)
            me = torch.arange(p).unsqueeze(1)
            full = torch.cat([me, r], 1)
            assert torch.all(r >= 0) and torch.all(r < p)
            assert torch.all(full.sort(1).values.diff(dim=1) > 0)


def test_repeated_location_takes_first_value_and_apply_skips_padding():
    lo, hi = torch.zeros(1, 2, 3, 3), torch.ones(1, 2, 3, 3)
    genes = torch.tensor([[[1.5, 2.2, 0.25, 0.5], [0.1, 0.9, 1.0, 1.0], [1.9, 2.99, 0.75, 0.0]]],
                         dtype=torch.float64)
    loc, val, first = OnePixel._decode(genes, torch.zeros(1, dtype=torch.long), lo, hi)
    assert loc.tolist() == [[5, 0, 5]] and first.tolist() == [[True, True, False]]
    assert val[0, 2].tolist() == val[0, 0].tolist() == [0.25, 0.5]
    x = torch.full((1, 2, 3, 3), 0.5)
    out = _apply(x, torch.tensor([[-1, 4, -1]]), torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]]))
    diff = (out != x).any(1).flatten()
    assert diff.nonzero().view(-1).tolist() == [4]
    assert _apply(x, torch.full((1, 2), -1), torch.zeros(1, 2, 2)).equal(x)


def test_loss_is_minus_one_exactly_on_success():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(200, 5, generator=g) * 3
    y = torch.randint(0, 5, (200,), generator=g)
    t = torch.where(torch.arange(200) % 2 == 0, (y + 1) % 5, torch.full_like(y, -1))
    for crit in (Criterion(), Criterion(0.5, None), Criterion(None, 0.7)):
        loss, ok = _loss(z, y, t, crit)
        ok2 = crit.evaluate(torch.softmax(z.double(), -1), y, t)[0]
        assert torch.equal(ok, ok2)
        assert torch.all(loss[ok] == -1) and torch.all(loss[~ok] >= 0)


# --- bad input -------------------------------------------------------------------------------

@pytest.mark.realdata
@pytest.mark.parametrize("cls,kwargs,needle", [
    (SparseRS, dict(pixels=0), "pixels must be a positive integer"),
    (OnePixel, dict(pixels=0), "pixels must be a positive integer"),
    (SparseRS, dict(pixels=2.5), "pixels must be a positive integer"),
    (SparseRS, dict(pixels=785), "exceeds"),
    (OnePixel, dict(pixels=785), "exceeds"),
    (OnePixel, dict(population=3), "population must be an integer >= 4"),
    (OnePixel, dict(iterations=0), "iterations must be a positive integer"),
    (SparseRS, dict(budget=0), "budget must be a positive integer"),
    (SparseRS, dict(eps=0), "eps must be positive"),
    (OnePixel, dict(eps=-0.1), "eps must be positive"),
    (SparseRS, dict(p_init=0), "p_init must lie in"),
    (SparseRS, dict(min_prob=1.5), "min_prob must lie in"),
    (OnePixel, dict(min_prob=0.8, max_prob=0.5), "above max_prob"),
    (SparseRS, dict(batch_size=0), "batch_size must be a positive integer"),
    (SparseRS, dict(target="magic"), "unknown target"),
])
def test_bad_arguments(mnist_right_wrong, cls, kwargs, needle):
    model, x, y, _, _ = mnist_right_wrong
    with pytest.raises(InputError) as e:
        cls(model, **{"pixels": 1, **kwargs})(x[:1], y[:1])
    assert needle in str(e.value) and "\n" not in str(e.value)


@pytest.mark.realdata
def test_bad_images_and_targets(mnist_right_wrong):
    model, x, y, _, _ = mnist_right_wrong
    with pytest.raises(InputError, match="its true class"):
        small_rs(model, pixels=2, target=y[:2])(x[:2], y[:2])
    with pytest.raises(InputError, match=r"\[N, C, H, W\]"):
        small_op(model, pixels=2)(x[0], y[:1])
    with pytest.raises(InputError, match="outside"):
        small_rs(model, pixels=2)(x[:1] * 2 + 0.5, y[:1])
