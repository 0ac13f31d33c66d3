"""mFI-PSO: bounds hold exactly, successes re-verify, seeds repeat, batching is invisible."""

from __future__ import annotations

import pytest
import torch

from infoswarm import influence
from infoswarm.attacks.base import probs_of
from infoswarm.attacks.mfipso import MFIPSO, confusion_counts
from infoswarm.errors import InputError

from conftest import mnist_test_digits


@pytest.fixture(scope="module")
def mnist_least_confident():
    model, x, y = mnist_test_digits(300)
    p = probs_of(model, x)
    conf = torch.where(p.argmax(1) == y, p.max(1).values, torch.full_like(conf := p.max(1).values, 2.0))
    pick = torch.argsort(conf)[:6]  # the six least confident correctly classified digits
    return model, x[pick], y[pick]


SMALL = dict(particles=24, iterations=4, restart_iterations=4)


@pytest.mark.realdata
@pytest.mark.slow
def test_outputs_respect_k_pixels_linf_and_unit_range(mnist_least_confident):
    model, x, y = mnist_least_confident
    for k, eps in [(1, 0.15), (5, 0.3)]:
        res = MFIPSO(model, pixels=k, eps=eps, **SMALL)(x, y)
        assert torch.all(res.pixel_l0 <= k)
        assert torch.all(res.linf <= eps + 1e-6)
        assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
        changed = (res.x_adv != x).any(1).flatten(1)
        for i in range(len(x)):  # only the selected locations move
            moved = changed[i].nonzero().view(-1)
            assert set(moved.tolist()) <= set(res.indices[i].tolist())


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize("lo,hi", [(0.4, None), (None, 0.55)])
def test_successes_are_real_and_respect_probability_window(mnist_least_confident, lo, hi):
    model, x, y = mnist_least_confident
    res = MFIPSO(model, pixels=20, eps=0.4, min_prob=lo, max_prob=hi, target="second",
                 particles=40, iterations=8)(x, y)
    p = probs_of(model, res.x_adv)
    lo_, hi_ = lo or 0.0, hi or 1.0
    for i in range(len(x)):
        t = int(res.target[i])
        hit = p[i].argmax().item() == t and lo_ <= p[i, t].item() <= hi_
        assert bool(res.success[i]) == hit
        if res.success[i]:
            assert t != int(y[i])
            assert res.target_prob[i].item() == pytest.approx(p[i, t].item(), rel=1e-5)
    assert res.success.any(), "a 20-pixel, eps 0.4 attack should fool at least one unsure digit"
    assert torch.all(res.queries > 0)


@pytest.mark.slow
@pytest.mark.realdata
def test_untargeted_success_means_misclassified(mnist_least_confident):
    model, x, y = mnist_least_confident
    res = MFIPSO(model, pixels=10, eps=0.3, target=None, **SMALL)(x, y)
    assert torch.all(res.target == -1)
    pred = probs_of(model, res.x_adv).argmax(1)
    assert torch.equal(res.success, pred != y)


@pytest.mark.realdata
@pytest.mark.slow
def test_same_seed_same_output_and_batch_invariance(mnist_least_confident):
    model, x, y = mnist_least_confident
    a = MFIPSO(model, pixels=3, seed=7, **SMALL)(x, y)
    b = MFIPSO(model, pixels=3, seed=7, **SMALL)(x, y)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.queries, b.queries)
    for i in (0, 3):
        one = MFIPSO(model, pixels=3, seed=7, **SMALL)(x[i: i + 1], y[i: i + 1], offset=i)
        torch.testing.assert_close(one.x_adv[0], a.x_adv[i], rtol=0, atol=1e-6)
        assert one.queries[0] == a.queries[i]


@pytest.mark.slow
@pytest.mark.realdata
def test_fi_selection_takes_the_top_fi_pixels(mnist_least_confident):
    model, x, y = mnist_least_confident
    res = MFIPSO(model, pixels=4, **SMALL)(x[:2], y[:2])
    fi = influence.pixel_fi(model, x[:2], res.target, unit="pixel").flatten(1)
    for i in range(2):
        chosen = fi[i, res.indices[i]]
        assert chosen.min() >= fi[i].topk(4).values.min() - 1e-12


@pytest.mark.slow
@pytest.mark.realdata
def test_paper_threshold_rule_perturbs_elements_above_tau(mnist_least_confident):
    model, x, y = mnist_least_confident
    tau = 0.01
    res = MFIPSO(model, fi_threshold=tau, bounds="paper", eps=0.15, **SMALL)(x[:2], y[:2])
    fi = influence.pixel_fi(model, x[:2], res.target, unit="element").flatten(1)
    changed = (res.x_adv != x[:2]).flatten(1)
    assert torch.all(fi[changed] >= tau)
    # paper bounds: delta in [-eps*x, eps*(1-x)]
    d = (res.x_adv - x[:2]).flatten(1)
    xv = x[:2].flatten(1)
    assert torch.all(d >= -0.15 * xv - 1e-6) and torch.all(d <= 0.15 * (1 - xv) + 1e-6)


@pytest.mark.realdata
def test_confusion_targets(mnist_least_confident):
    model, x, y = mnist_least_confident
    counts = torch.zeros(10, 10, dtype=torch.long)
    counts[y[0], (y[0] + 3) % 10] = 9
    res = MFIPSO(model, pixels=2, target="confusion", confusion=counts, restart=False, **SMALL)(x[:2], y[:2])
    assert int(res.target[0]) == (int(y[0]) + 3) % 10
    cc = confusion_counts(model, x, y)
    assert cc.shape == (10, 10) and int(cc.sum()) == len(x)


@pytest.mark.realdata
@pytest.mark.parametrize("kwargs,needle", [
    (dict(pixels=0), "pixels must be a positive integer"),
    (dict(pixels=785), "exceeds"),
    (dict(pixels=3, eps=0), "eps must be positive"),
    (dict(pixels=3, min_prob=0.0), "min_prob must lie in"),
    (dict(pixels=3, min_prob=1.5), "min_prob must lie in"),
    (dict(pixels=3, min_prob=0.8, max_prob=0.5), "above max_prob"),
    (dict(), "exactly one"),
    (dict(pixels=3, fi_threshold=0.1), "exactly one"),
    (dict(pixels=3, pixel_rule="magic"), "unknown pixel_rule"),
])
def test_bad_arguments(mnist_least_confident, kwargs, needle):
    model, x, y = mnist_least_confident
    with pytest.raises(InputError) as e:
        MFIPSO(model, **{**SMALL, **kwargs})(x[:1], y[:1])
    assert needle in str(e.value) and "\n" not in str(e.value)


@pytest.mark.realdata
def test_bad_targets_and_inputs(mnist_least_confident):
    model, x, y = mnist_least_confident
    with pytest.raises(InputError, match="its true class"):
        MFIPSO(model, pixels=2, target=y[:2], **SMALL)(x[:2], y[:2])
    with pytest.raises(InputError, match=r"\[N, C, H, W\]"):
        MFIPSO(model, pixels=2, **SMALL)(x[0], y[:1])
    with pytest.raises(InputError, match="expected \\[N, K\\]"):
        MFIPSO(torch.nn.Identity(), pixels=2, **SMALL)(x[:1], y[:1])
