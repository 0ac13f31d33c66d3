"""The attack contract, checked once for every registry entry: bounds, re-verified success, the
model's mode, chunk invariance (bit for bit at one thread), seeds, per-call targets, devices,
bad input; and AttackResult's cat / to / save / load."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from infoswarm.attacks import MFIPSO, Attack, AttackResult, Criterion, registry
from infoswarm.attacks.base import Call, probs_of, takes_offset
from infoswarm.errors import InputError

from conftest import TinyNet

PIXELS, EPS, CLASSES = 3, 0.3, 4
SPARSE = {"mfipso", "jsma", "onepixel", "sparse-rs", "sparse-swarm", "pgd0", "spgd"}
SMALL: dict[str, dict[str, Any]] = {
    "mfipso": dict(particles=4, iterations=2, restart_iterations=2),
    "sparse-swarm": dict(particles=2),
    "fgsm+random-start": dict(random_start=True),
}
CASES = [*registry.names(), "fgsm+random-start"]


def make(case: str, model: torch.nn.Module, **kw: Any) -> Attack:
    """A small instance of the registry entry ``case`` (budget 30 queries, 3 PGD steps)."""
    opts: dict[str, Any] = dict(pixels=PIXELS, eps=EPS, target=None, seed=1, budget=30, steps=3)
    opts.update(kw)
    return registry.build(case.split("+")[0], model, **opts, **SMALL.get(case, {}))


@pytest.fixture
def setup() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """float64 TinyNet (1 channel, 6x6, 4 classes) in eval mode, 6 images, their predictions."""
    torch.manual_seed(6)                                # predictions [3, 0, 0, 1, 3, 2]: every class
    model = TinyNet(channels=1, size=6, classes=CLASSES).double().eval()
    with torch.no_grad():
        model.fc.weight.mul_(4.0)
    x = torch.rand(6, 1, 6, 6, dtype=torch.float64)
    x[0] = (x[0] > 0.5).double()                        # corners only: a sparse attack's edge case
    return model, x, model(x).argmax(1)


def fields_equal(a: AttackResult, b: AttackResult, rows: Any = slice(None)) -> None:
    for f in ("x_adv", "success", "pred", "target", "queries", "grad_evals", "pixel_l0", "linf", "target_prob"):
        assert torch.equal(getattr(a, f)[rows], getattr(b, f)), f
    width = max(a.indices.shape[1], b.indices.shape[1])
    pad = lambda t: torch.nn.functional.pad(t, (0, width - t.shape[1]), value=-1)  # noqa: E731
    assert torch.equal(pad(a.indices)[rows], pad(b.indices)), "indices"


# ---- the contract, for every attack ------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_outputs_within_bounds_and_success_reverified(setup, case):
    model, x, y = setup
    res = make(case, model)(x, y)
    assert len(res) == 6 and res.x_adv.shape == x.shape and res.x_adv.dtype == x.dtype
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    assert float((res.x_adv - x).abs().max()) <= EPS + 1e-12
    assert torch.equal(res.linf, (res.x_adv - x).abs().flatten(1).amax(1))
    changed = (res.x_adv != x).any(1).flatten(1).sum(1)
    assert torch.equal(res.pixel_l0, changed)
    if case in SPARSE:
        assert int(changed.max()) <= PIXELS
    assert torch.all(res.queries >= 0) and torch.all(res.grad_evals >= 0)
    assert torch.equal(res.y, y) and torch.all(res.target == -1)
    ok, _, judged, p_j = Criterion().evaluate(probs_of(model, res.x_adv), y, res.target)
    assert torch.equal(res.success, ok)                 # a fresh forward pass agrees
    assert torch.allclose(res.target_prob.double(), p_j, atol=1e-6)
    assert res.success.any(), "the tiny model should be fooled at least once"


@pytest.mark.parametrize("case", CASES)
def test_model_mode_is_restored(setup, case):
    model, x, y = setup
    attack = make(case, model)
    model.train()
    with pytest.warns(UserWarning, match="train mode"):
        res = attack(x, y)
    assert model.training and all(m.training for m in model.modules())
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = attack(x, y)
    assert not model.training
    assert torch.equal(res.x_adv, again.x_adv)          # the call ran in eval mode both times


@pytest.mark.parametrize("case", CASES)
def test_chunks_and_positions_give_the_same_results(setup, one_thread, case):
    model, x, y = setup
    attack = make(case, model)
    whole = attack(x, y)
    parts = AttackResult.cat([attack(x[:3], y[:3], offset=0), attack(x[3:], y[3:], offset=3)])
    fields_equal(whole, parts)
    pick = torch.tensor([4, 1])
    fields_equal(whole, attack(x[pick], y[pick], offset=pick), rows=pick)


@pytest.mark.parametrize("case", CASES)
def test_same_seed_same_output(setup, case):
    model, x, y = setup
    a, b = make(case, model)(x, y), make(case, model)(x, y)
    fields_equal(a, b)


def test_positions_matter_for_random_attacks(setup):
    """Image i draws from (seed, offset + i): the same image at another position draws other
    numbers (what makes the offset necessary for chunked runs)."""
    model, x, y = setup
    for case in ("fgsm+random-start", "pgd", "sparse-rs"):
        attack = make(case, model)
        a, b = attack(x[:2], y[:2]), attack(x[:2], y[:2], offset=10)
        assert not torch.equal(a.x_adv, b.x_adv), case
        other = make(case, model, seed=2)(x[:2], y[:2])
        assert not torch.equal(a.x_adv, other.x_adv), case


@pytest.mark.parametrize("case", CASES)
def test_per_call_target_overrides_the_constructors(setup, case):
    model, x, y = setup
    attack = make(case, model, target="second", **({"restart": False} if case == "mfipso" else {}))
    logits = model(x).detach()
    second = logits.scatter(1, y.view(-1, 1), float("-inf")).argmax(1)
    assert torch.equal(attack(x, y).target, second)
    t = (y + 1) % CLASSES
    assert torch.equal(attack(x, y, target=t).target, t)
    assert torch.all(attack(x, y, target="none").target == -1)
    attack.target = t                                   # the attribute is the default target
    assert torch.equal(attack(x, y).target, t)
    with pytest.raises(InputError, match="its true class"):
        attack(x, y, target=y)


@pytest.mark.parametrize("case", CASES)
def test_device_of_the_result(setup, case):
    model, x, y = setup
    res = make(case, model)(x, y.tolist())              # labels as a list are accepted too
    assert res.x_adv.device == x.device and res.success.device == x.device
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here: the CPU-inputs-to-CUDA-model case is not run")
    gpu = make(case, model.cuda())(x, y)                # CPU inputs move to the model's device
    model.cpu()
    assert gpu.x_adv.is_cuda
    torch.testing.assert_close(gpu.x_adv.cpu(), make(case, model)(x, y).x_adv, atol=1e-6, rtol=0)


@pytest.mark.parametrize("case", CASES)
def test_bad_input_raises_one_line_input_errors(setup, case):
    model, x, y = setup
    attack = make(case, model)
    bad: dict[str, Any] = {
        "outside \\[0, 1\\]": lambda: attack(x * 2, y),
        "\\[N, C, H, W\\]": lambda: attack(x[0], y),
        "NaN": lambda: attack(torch.full_like(x, float("nan")), y),
        "out of range": lambda: attack(x, y + CLASSES),
        "class indices for": lambda: attack(x, y[:2]),
        "labels y must be integers": lambda: attack(x, y.double()),
        "offset": lambda: attack(x, y, offset=-1),
        "offset must be": lambda: attack(x, y, offset=torch.zeros(2, dtype=torch.long)),
        "unknown target": lambda: attack(x, y, target="third"),
    }
    for match, call in bad.items():
        with pytest.raises(InputError, match=match) as err:
            call()
        assert "\n" not in str(err.value)

    class Broken(torch.nn.Module):
        def forward(self, v: torch.Tensor) -> torch.Tensor:
            return torch.full((len(v), CLASSES), float("nan"), dtype=v.dtype)

    attack.model = Broken().eval()
    with pytest.raises(InputError, match="NaN or infinite"):
        attack(x, y)


def test_every_attack_is_an_attack_and_call_is_final():
    for name, spec in registry.ATTACKS.items():
        assert issubclass(spec.cls, Attack) and "__call__" not in vars(spec.cls), name
    assert registry.names() == tuple(registry.ATTACKS)
    assert takes_offset(make("fgsm", TinyNet()))
    with pytest.raises(TypeError, match="final"):
        class Rogue(Attack):  # noqa: F841
            def __call__(self, x: torch.Tensor, y: torch.Tensor) -> None:  # type: ignore[override]
                pass


def test_a_new_attack_needs_only_run(setup):
    """The base does the checks, the mode, the device, the targets and the positions."""
    model, x, y = setup
    seen: dict[str, Any] = {}

    class Nothing(Attack):
        def _run(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor, offset: torch.Tensor,
                 call: Call) -> AttackResult:
            seen.update(offset=offset, clean=call.clean, spec=call.spec)
            return self._finish(x, x, y, target, torch.zeros(len(x), dtype=torch.long))

    res = Nothing(model, target="second")(x, y, offset=7)
    assert torch.equal(seen["offset"], torch.arange(7, 13)) and seen["spec"] == "second"
    assert torch.allclose(seen["clean"], model(x))
    assert torch.equal(res.x_adv, x) and not res.success.any() and res.seconds > 0


# ---- registry -----------------------------------------------------------------------------------


def test_registry_passes_extra_arguments_and_refuses_unknown_ones(setup):
    model, _, _ = setup
    assert make("pgd", model, alpha=0.01).alpha == 0.01        # type: ignore[attr-defined]
    with pytest.raises(InputError, match="fgsm takes no argument particles="):
        make("fgsm", model, particles=3)
    with pytest.raises(InputError, match="population= is set by build"):
        make("onepixel", model, population=10)
    with pytest.raises(InputError, match="only for mfipso"):
        make("pgd", model, target="confusion")
    with pytest.raises(InputError, match="needs `pixels`"):
        make("jsma", model, pixels=None)
    with pytest.raises(InputError, match="unknown attack"):
        registry.build("cw", model)


def test_mfipso_takes_confusion_counts_in_the_constructor(setup):
    model, x, y = setup
    counts = torch.zeros(CLASSES, CLASSES, dtype=torch.long)
    counts[y, (y + 2) % CLASSES] = 9                    # every class's frequent mistake: +2
    small = dict(pixels=PIXELS, particles=4, iterations=1, restart_iterations=0, target="confusion")
    res = MFIPSO(model, confusion=counts, **small)(x, y)
    assert torch.equal(res.target, (y + 2) % CLASSES)
    attack = MFIPSO(model, **small)
    with pytest.raises(InputError, match="needs a confusion count matrix"):
        attack(x, y)
    attack.confusion = counts                           # the attribute keeps working
    assert torch.equal(attack(x, y).target, res.target)
    attack.confusion = torch.zeros(CLASSES + 1, CLASSES + 1, dtype=torch.long)
    with pytest.raises(InputError, match="confusion must be"):
        attack(x, y)


# ---- AttackResult -------------------------------------------------------------------------------


def test_cat_pads_indices_and_to_moves(setup, tmp_path: Path):
    model, x, y = setup
    attack = make("sparse-rs", model)
    a, b = attack(x[:2], y[:2]), attack(x[2:], y[2:], offset=2)
    b.indices = b.indices[:, :1]                        # a narrower chunk
    both = AttackResult.cat([a, b])
    assert len(both) == 6 and both.indices.shape == (6, PIXELS)
    assert torch.all(both.indices[2:, 1:] == -1) and torch.equal(both.indices[2:, :1], b.indices)
    assert both.seconds == pytest.approx(a.seconds + b.seconds)
    assert AttackResult.cat([a, b], seconds=3.0).seconds == 3.0
    with pytest.raises(InputError, match="results is empty"):
        AttackResult.cat([])
    moved = both.to("cpu")
    assert moved is not both and torch.equal(moved.x_adv, both.x_adv)


def test_save_and_load_round_trip(setup, tmp_path: Path):
    model, x, y = setup
    res = make("sparse-swarm", model)(x, y)
    path = tmp_path / "adversarial"                     # no .npz suffix is added
    res.save(path, x=x, dataset_index=np.arange(6))
    with np.load(path) as z:
        assert {"x_adv", "success", "pred", "target", "target_prob", "indices", "queries", "grad_evals", "linf",
                "pixel_l0", "element_l0", "y", "seconds", "x", "dataset_index"} == set(z.files)
        assert z["indices"].dtype == np.int64 and np.array_equal(z["x"], x.numpy())
    back = AttackResult.load(path)
    fields_equal(back, res)
    assert torch.equal(back.element_l0, res.element_l0) and back.seconds == res.seconds
    with pytest.raises(InputError, match="taken by the result"):
        res.save(tmp_path / "b.npz", y=y)
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(InputError, match="path .*junk.npz is not an .npz file"):
        AttackResult.load(tmp_path / "junk.npz")
    np.savez(tmp_path / "partial.npz", x_adv=x.numpy())
    with pytest.raises(InputError, match="lacks the result's"):
        AttackResult.load(tmp_path / "partial.npz")


# ---- capabilities, defaults, targets, repr, numpy --------------------------------------------------


@pytest.mark.parametrize("name", registry.names())
def test_capabilities_are_declared_and_the_constructor_agrees_with_the_defaults(name):
    import inspect

    from infoswarm.attacks.base import GRADIENTS, NORMS, OPTIONS, TARGETS

    cls = registry.attack_class(name)
    assert cls.norm in NORMS and cls.gradients in GRADIENTS and set(cls.uses) <= set(OPTIONS)
    assert set(TARGETS) <= set(cls.targets)
    assert set(cls.defaults) == set(cls.uses) | {"target"}, name         # one default per option it uses
    params = inspect.signature(cls.__init__).parameters
    for option, kw in (("pixels", "pixels"), ("eps", "eps"), ("steps", "steps"), ("budget", "budget"),
                       ("target", "target")):
        if option in cls.defaults and kw in params and params[kw].default is not None:
            assert params[kw].default == cls.defaults[option], (name, option)


@pytest.mark.parametrize("name", [n for n in registry.names() if n != "mfipso"])
def test_build_with_no_options_is_the_class_with_no_options(name):
    """One place per default: ``registry.build(name, m)`` is ``Cls(m)`` (the budget-mapped
    attacks, onepixel and pgd0, differ only in how the budget is spent)."""
    model = TinyNet().eval()
    built, plain = registry.build(name, model), registry.attack_class(name)(model)
    assert built.target == plain.target == registry.defaults(name)["target"]
    if name not in ("onepixel", "pgd0"):
        assert repr(built) == repr(plain)
    assert repr(built).startswith(type(plain).__name__ + "(") and "model" not in repr(built)


def test_needs_gradient_follows_the_configuration():
    from infoswarm.attacks import MFIPSO, SparseSwarm

    model = TinyNet().eval()
    assert SparseSwarm(model).needs_gradient() and SparseSwarm(model).prior == "gain"
    assert not SparseSwarm(model, prior="uniform").needs_gradient()
    assert not SparseSwarm(lambda v: model(v)).needs_gradient()               # query-only: uniform prior
    assert MFIPSO(model, pixels=2).needs_gradient()
    assert not MFIPSO(model, pixels=2, pixel_rule="random").needs_gradient()
    assert [registry.build(n, model).needs_gradient() for n in ("fgsm", "pgd", "sparse-rs", "onepixel")] == \
        [True, True, False, False]


def test_the_default_sparse_swarm_runs_the_up_front_gradient_check(setup):
    """SparseSwarm(model) uses gradients (prior gain), so a model without them is refused in one
    line before any work, as for PGD."""
    model, x, y = setup

    class Detached(torch.nn.Module):
        def forward(self, v: torch.Tensor) -> torch.Tensor:
            return model(v).detach()

    with pytest.raises(InputError, match="no gradient"):
        registry.build("sparse-swarm", Detached().eval(), pixels=2, budget=5)(x, y)
    registry.build("sparse-swarm", Detached().eval(), pixels=2, budget=5, prior="uniform")(x, y)


def test_query_only_models_work_where_no_gradient_is_needed_and_are_refused_in_one_line_elsewhere(setup):
    model, x, y = setup
    fn = lambda v: model(v).detach().numpy()  # noqa: E731 - a plain callable returning numpy
    for name in ("sparse-rs", "onepixel", "sparse-swarm"):
        res = make(name, fn)(x, y)
        assert len(res) == len(x)
    for name in ("fgsm", "pgd", "jsma", "pgd0"):
        with pytest.raises(InputError, match="needs input gradients, which a query-only model"):
            make(name, fn)(x, y)


def test_random_and_least_likely_targets(setup):
    model, x, y = setup
    clean = model(x).detach()
    attack = make("sparse-rs", model, budget=3)
    least = attack(x, y, target="least-likely").target
    assert torch.equal(least, clean.masked_fill(torch.nn.functional.one_hot(y, CLASSES).bool(), 1e9).argmin(1))
    whole = attack(x, y, target="random").target
    assert (whole != y).all() and (whole >= 0).all() and (whole < CLASSES).all()
    parts = torch.cat([attack(x[:2], y[:2], target="random").target,
                       attack(x[2:], y[2:], target="random", offset=2).target])
    assert torch.equal(whole, parts)                                          # seeded per image position


def test_numpy_images_and_labels_are_accepted(setup):
    model, x, y = setup
    attack = make("sparse-rs", model, budget=5)
    a, b = attack(x, y), attack(x.numpy(), y.numpy())
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.success, b.success)
