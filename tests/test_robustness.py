"""infoswarm.robustness: the ensemble verdict (union of its members, sequencing, resume, targeted
mode, masking checks, bad input) on the first MNIST test digits with small budgets."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from infoswarm import robustness as rb
from infoswarm.errors import InputError
from infoswarm.robustness import ENSEMBLE, member_names, robust_accuracy
from infoswarm.runs import ResumableRun

from conftest import TinyNet, mnist_test_digits

pytestmark = pytest.mark.usefixtures("one_thread_module")

K = 3          # few pixels: some digits stay robust at these budgets
BUDGET = 24    # queries per member and image (pgd0: one restart of 20 steps + 1)


@pytest.fixture(scope="module")
def digits():
    """mnist-cnn and 8 test digits, the first relabelled so that the model misclassifies it."""
    model, x, y = mnist_test_digits(8)
    y = y.clone()
    with torch.no_grad():
        pred = model(x[:1]).argmax(1)
    y[0] = (pred[0] + 1) % 10
    return model, x, y


@pytest.fixture(scope="module")
def verdict(digits):
    model, x, y = digits
    return robust_accuracy(model, x, y, ks=(K,), version="quick", budget=BUDGET, chunk=3, log=False)


def test_the_table_runs_gradient_members_first_and_every_member_is_in_the_registry():
    from infoswarm.attacks.registry import names

    NAMES = names()

    grad = [m.gradient for m in ENSEMBLE]
    assert grad == sorted(grad, reverse=True)             # gradient members, then query-only ones
    assert all(m.attack in NAMES and set(m.budget) == set(rb.VERSIONS) for m in ENSEMBLE)
    assert member_names() == ("swarm-gain", "pgd0", "spgd", "swarm-uniform", "sparse-rs")


@pytest.mark.realdata
@pytest.mark.slow
def test_the_ensemble_breaks_exactly_the_union_of_its_members(digits, verdict):
    """Never worse than its best member on any image: each image is broken by the ensemble
    exactly when some member alone breaks it (image i's streams depend on i only)."""
    model, x, y = digits
    union = torch.zeros(len(x), dtype=torch.bool)
    alone = {}
    for m in member_names():
        r = robust_accuracy(model, x, y, ks=(K,), version="quick", budget=BUDGET, attacks=[m], log=False)
        alone[m] = r.per_k[K].robust
        union |= r.per_k[K].broken
    got = verdict.per_k[K]
    assert torch.equal(got.broken, union)
    assert got.robust <= min(alone.values())
    assert got.broken[0] and got.by[0] == "clean" and got.at_k[0] == 0     # misclassified: not robust
    assert got.total == len(x)
    # each broken image's adversarial image is misclassified and changes at most K pixels
    with torch.no_grad():
        pred = model(got.x_adv).argmax(1)
    hit = got.broken & verdict.correct
    assert bool((pred[hit] != y[hit]).all())
    assert int(((got.x_adv != x).any(1).flatten(1).sum(1)).max()) <= K
    assert torch.equal(got.x_adv[~got.broken], x[~got.broken])


@pytest.mark.realdata
def test_later_members_only_see_the_images_still_robust(digits, monkeypatch):
    model, x, y = digits
    seen: list[tuple[str, list[int]]] = []
    real = rb.registry.build

    def spy_build(name, model, **kw):
        attack = real(name, model, **kw)
        label = f"{name}:{kw.get('prior', '')}"

        def call(xb, yb, *, offset, target=None):
            seen.append((label, offset.tolist()))
            return attack(xb, yb, offset=offset)
        return call

    monkeypatch.setattr(rb.registry, "build", spy_build)
    r = robust_accuracy(model, x, y, ks=(K,), version="quick", budget=BUDGET, chunk=100, log=False)
    stats = r.per_k[K].members
    assert [s.attacked for s in stats[1:]] == [s.attacked - s.added for s in stats[:-1]]
    assert stats[0].attacked == int(r.correct.sum())
    # member j is called on exactly the correct digits that no member before it broke (positions in x)
    names = list(member_names())
    assert len(seen) == len(names)
    by = r.per_k[K].by
    for j, (_, offsets) in enumerate(seen):
        expect = [i for i in range(len(x)) if r.correct[i] and (by[i] == "" or names.index(by[i]) >= j)]
        assert offsets == expect


@pytest.mark.realdata
@pytest.mark.slow
def test_summary_keys_and_counts(verdict):
    s = verdict.summary()
    e = s["per_k"][str(K)]
    assert e["total"] == 8 and isinstance(e["robust"], int)
    assert e["robust"] == verdict.per_k[K].robust
    lo, hi = e["robust_ci95"]
    assert lo <= e["robust_accuracy"] <= hi
    assert [a["name"] for a in e["attacks"]] == list(member_names())
    assert sum(a["added"] for a in e["attacks"]) == s["clean_correct"] - e["robust"]
    assert s["curve"][0] == [0, s["clean_accuracy"]] and s["clean_correct"] == 7
    assert all(a["queries"] >= 0 and a["seconds"] >= 0 for a in e["attacks"])


@pytest.mark.realdata
def test_robust_count_carries_what_smaller_k_broke(digits):
    model, x, y = digits
    r = robust_accuracy(model, x, y, ks=(1, K), version="quick", budget=BUDGET, attacks=["sparse-rs"], log=False)
    assert bool((r.per_k[1].broken <= r.per_k[K].broken).all())          # monotone in k
    assert r.per_k[1].robust >= r.per_k[K].robust
    first = torch.where(r.per_k[1].broken, 1, torch.where(r.per_k[K].broken, K, -1))
    assert torch.equal(r.min_k, torch.where(r.correct, first, 0))


@pytest.mark.realdata
@pytest.mark.slow
def test_a_killed_run_resumes_to_identical_results(digits, tmp_path, verdict):
    model, x, y = digits
    calls = []

    def stop_after_two(line: str) -> None:
        calls.append(line)
        if len(calls) == 2:
            raise KeyboardInterrupt

    run = ResumableRun(tmp_path / "r", "robustness", {"a": 1})
    with pytest.raises(KeyboardInterrupt):
        robust_accuracy(model, x, y, ks=(K,), version="quick", budget=BUDGET, chunk=3, run=run, log=False,
                        say=stop_after_two)
    saved = sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir())
    assert saved and all(n.startswith(f"k{K}-swarm-gain-") or n.startswith(f"k{K}-pgd0-") for n in saved)
    run2 = ResumableRun(tmp_path / "r", "robustness", {"a": 1})
    assert run2.resumed
    again = robust_accuracy(model, x, y, ks=(K,), version="quick", budget=BUDGET, chunk=3, run=run2, log=False)
    a, b = again.per_k[K], verdict.per_k[K]
    assert torch.equal(a.broken, b.broken) and a.by == b.by
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.queries, b.queries)
    assert [s.added for s in a.members] == [s.added for s in b.members]


def test_targeted_mode_tries_every_wrong_class_in_order(monkeypatch):
    torch.manual_seed(0)
    model = TinyNet(channels=1, size=5, classes=3).eval()
    x = torch.rand(6, 1, 5, 5)
    with torch.no_grad():
        logits = model(x)
    y = logits.argmax(1)
    calls: list[tuple[list[int], list[int]]] = []
    real = rb.registry.build

    def spy_build(name, model, **kw):
        attack = real(name, model, **kw)

        def call(xb, yb, *, offset, target=None):
            calls.append((offset.tolist(), target.tolist()))
            return attack(xb, yb, offset=offset, target=target)
        return call

    monkeypatch.setattr(rb.registry, "build", spy_build)
    r = robust_accuracy(model, x, y, ks=(1,), version="quick", budget=5, attacks=["sparse-rs"], targeted=True,
                        log=False)
    order = logits.masked_fill(torch.nn.functional.one_hot(y, 3).bool(), float("-inf")).argsort(1, descending=True)
    assert 1 <= len(calls) <= 2 and calls[0][0] == list(range(6))
    for rank, (offsets, target) in enumerate(calls):                    # rank r: the r-th most probable wrong class
        assert target == order[offsets, rank].tolist()
    if len(calls) == 2:                                                  # rank 2 only on the images rank 1 left
        broken = set(r.per_k[1].broken.nonzero().view(-1).tolist())
        assert set(range(6)) - set(calls[1][0]) <= broken
        assert set(range(6)) - broken <= set(calls[1][0])
    assert r.targeted and r.summary()["targeted"]
    broken = r.per_k[1].broken
    with torch.no_grad():
        assert bool((model(r.per_k[1].x_adv).argmax(1)[broken] != y[broken]).all())


class NaNNet(nn.Module):
    def forward(self, x):
        return torch.full((len(x), 10), float("nan")) + x.flatten(1)[:, :1]


@pytest.mark.parametrize("kw, match", [
    (dict(ks=()), "ks is empty"),
    (dict(ks=(26,)), "more than the 25 pixels"),
    (dict(ks=(0,)), "not a positive integer"),
    (dict(budget=0), "budget must be a positive integer"),
    (dict(version="fast"), "unknown version"),
    (dict(attacks=["spgd-x"]), "unknown member"),
    (dict(attacks=[]), "non-empty list"),
    (dict(chunk=0), "chunk must be"),
])
def test_bad_options_are_one_line_input_errors(kw, match):
    model = TinyNet(channels=1, size=5, classes=3).eval()
    x = torch.rand(2, 1, 5, 5)
    with pytest.raises(InputError, match=match) as e:
        robust_accuracy(model, x, torch.zeros(2, dtype=torch.long), **{"ks": (1,), **kw})
    assert "\n" not in str(e.value)


def test_a_model_that_returns_nan_is_refused():
    with pytest.raises(InputError, match="NaN"):
        robust_accuracy(NaNNet(), torch.rand(2, 1, 5, 5), torch.zeros(2, dtype=torch.long), ks=(1,), budget=2)


def test_labels_outside_the_model_classes_are_refused():
    model = TinyNet(channels=1, size=5, classes=3).eval()
    with pytest.raises(InputError, match="out of range"):
        robust_accuracy(model, torch.rand(2, 1, 5, 5), torch.tensor([0, 7]), ks=(1,), budget=2)


class Quantised(nn.Module):
    """Gradient masking by rounding: the input goes to the 1/255 grid with round(), whose
    gradient is zero. On images already on that grid (and 0/1 corners) outputs are unchanged."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(torch.round(x * 255) / 255)


class Noisy(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x) + 1e-3 * torch.randn(len(x), 3)


@pytest.mark.realdata
@pytest.mark.slow
def test_masked_gradients_warn_and_the_query_attacks_still_break_the_model():
    model, x, y = mnist_test_digits(12)
    masked = Quantised(model).eval()
    kw = dict(ks=(16,), version="quick", budget=100, log=False)
    r = robust_accuracy(masked, x, y, attacks=["pgd0", "swarm-uniform"], **kw)
    checks = {w["check"] for w in r.warnings}
    assert "gradient" in checks
    stats = {s.name: s for s in r.per_k[16].members}
    assert stats["pgd0"].added <= 1                                        # blind: zero gradients
    assert stats["swarm-uniform"].added >= 6                               # the query attack still breaks it
    assert "query-beats-gradient" in checks
    # query-only members see the same outputs as on the plain model (0/1 corners stay on the grid)
    plain = robust_accuracy(model, x, y, attacks=["swarm-uniform"], **kw)
    alone = robust_accuracy(masked, x, y, attacks=["swarm-uniform"], **kw)
    assert torch.equal(plain.per_k[16].broken, alone.per_k[16].broken)
    assert "gradient" not in {w["check"] for w in plain.warnings}


def test_a_randomised_model_is_reported():
    torch.manual_seed(0)
    model = Noisy(TinyNet(channels=1, size=5, classes=3)).eval()
    x = torch.rand(3, 1, 5, 5)
    # the one model check of every attack refuses it before any verdict (the `randomised` warning
    # remains for callables the check cannot probe)
    with pytest.raises(InputError, match="random"):
        robust_accuracy(model, x, torch.zeros(3, dtype=torch.long), ks=(1,), budget=2, attacks=["sparse-rs"],
                        log=False)


def test_query_vs_gradient_check_needs_disjoint_intervals():
    assert rb._query_vs_gradient(10, 100, 90, 10, 2) is None               # leftovers hard for both
    assert rb._query_vs_gradient(10, 100, 5, 95, 80) is not None           # gradient blind, queries break
    assert rb._query_vs_gradient(10, 8, 0, 8, 2) is None                   # too few images to tell


class Saturated(nn.Module):
    """Gradient masking by saturation: softmax outputs ×1e4 used as logits (the cross-entropy of
    the predicted class is flat: its gradient is exactly zero)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        return 1e4 * torch.softmax(self.model(x), 1)


def test_gradient_health_counts_zero_gradients_of_masked_models():
    torch.manual_seed(0)
    model = TinyNet(channels=1, size=5, classes=3).eval()
    x = torch.rand(5, 1, 5, 5)
    with torch.no_grad():
        y = model(x).argmax(1)
    assert rb._gradient_health(model, x, y) == (0, 0)
    assert rb._gradient_health(Saturated(model), x, y) == (5, 0)
    assert rb._gradient_health(Quantised(model), x, y) == (5, 0)
    r = robust_accuracy(Saturated(model), x, y, ks=(1,), budget=2, attacks=["sparse-rs", "pgd0"], log=False)
    assert "gradient" in {w["check"] for w in r.warnings}


def test_sparse_rs_takes_the_ce_loss_of_the_ensemble_and_refuses_unknown_losses():
    from infoswarm.attacks import SparseRS

    torch.manual_seed(0)
    model = TinyNet(channels=1, size=5, classes=3).eval()
    x = torch.rand(4, 1, 5, 5)
    y = torch.zeros(4, dtype=torch.long)
    with pytest.raises(InputError, match="unknown loss"):
        SparseRS(model, pixels=2, loss="hinge")
    margin = SparseRS(model, pixels=2, budget=20, seed=1)(x, y)
    ce = SparseRS(model, pixels=2, budget=20, seed=1, loss="ce")(x, y)
    assert SparseRS(model, pixels=2).loss == "margin"                      # the default is unchanged
    assert ce.queries.max() <= 20 and margin.queries.max() <= 20
    with torch.no_grad():
        assert torch.equal(model(ce.x_adv).argmax(1) != y, ce.success)


def test_random_control_changes_at_most_k_pixels_to_box_corners_and_counts_as_the_summary_says(digits, verdict):
    """The control beside every verdict: one random k-pixel perturbation per image, each changed
    channel at a corner of its box; reproducible, clean-misclassified images count as broken,
    and a model that ignores its input is never fooled by it."""
    model, x, y = digits
    broken = rb.random_control(model, x, y, K, eps=1.0, seed=0)
    assert broken.dtype == torch.bool and broken.shape == (8,)
    assert torch.equal(broken, rb.random_control(model, x, y, K, eps=1.0, seed=0))
    e = verdict.summary()["per_k"][str(K)]["random_control"]
    assert e["robust"] == int((~(broken | ~verdict.correct)).sum()) and e["total"] == 8 and e["queries"] == 1
    assert e["robust"] >= e["robust"] - 0 and e["robust"] <= verdict.summary()["clean_correct"]

    seen = []

    class Spy(nn.Module):  # records what the control feeds the model; constant logits
        def forward(self, xb):
            seen.append(xb.clone())
            return torch.zeros(len(xb), 10).index_fill_(1, torch.tensor([3]), 1.0)

    eps = 0.25
    out = rb.random_control(Spy(), x, torch.full((8,), 3), K, eps=eps, seed=1)
    assert not out.any()                                  # never fooled: the logits ignore the image
    xa = torch.cat(seen)
    changed = (xa != x).any(1).flatten(1)                 # [N, HW] pixels with some channel changed
    assert (changed.sum(1) <= K).all() and (changed.sum(1) >= 1).all()
    d = (xa - x).abs()
    corner = (d - eps).abs() < 1e-6
    edge = ((xa == 0) | (xa == 1))
    assert bool(((d == 0) | corner | edge).all())         # every change goes to a corner of the box
