"""Named settings (infoswarm.presets) and how ``infoswarm attack`` / ``harden`` resolve them:
the paper's values per dataset, each attack's defaults, and flags given explicitly winning."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from torch import nn

from infoswarm import presets
from infoswarm.attacks import MFIPSO
from infoswarm.cli import build_parser
from infoswarm.cli.attack import _resolve_attack


def test_cifar_like_reads_the_channels_of_named_sets_and_the_name_of_others() -> None:
    assert presets.cifar_like("cifar10") and presets.cifar_like("CIFAR10")
    assert not presets.cifar_like("mnist") and not presets.cifar_like("fashion-mnist")
    assert presets.cifar_like("cifar-mine.npz") and not presets.cifar_like("data/cifar.npz")
    assert not presets.cifar_like(None)


def test_paper_attack_per_dataset_builds_the_papers_mfipso() -> None:
    mnist, cifar = presets.paper_attack("mnist"), presets.paper_attack("cifar10")
    assert (mnist["particles"], cifar["particles"]) == (500, 200)
    assert (mnist["pixel_rule"], cifar["pixel_rule"]) == ("fi", "fi-eps")
    assert (mnist["fi_eps_scale"], cifar["fi_eps_scale"]) == (1.0, 255.0)
    for p in (mnist, cifar):
        assert (p["fi_threshold"], p["eps"], p["bounds"], p["target"]) == (0.01, 0.15, "paper", "second")
        assert (p["iterations"], p["restart_iterations"]) == (10, 40) and p["restart"]
    attack = MFIPSO(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), **cifar)   # the keywords are MFIPSO's
    assert attack.swarm.particles == 200 and attack.fi_eps_scale == 255.0 and attack.pixel_rule == "fi-eps"
    cifar["particles"] = 1
    assert presets.paper_attack("cifar10")["particles"] == 200            # a fresh dict each call


def test_attack_defaults_live_on_the_attack_classes() -> None:
    from infoswarm.attacks import registry

    assert registry.defaults("sparse-swarm") == {"pixels": 10, "target": None, "eps": 1.0, "budget": 1000}
    mf = registry.defaults("mfipso")
    assert (mf["target"], mf["eps"], mf["pixels"]) == ("second", 0.15, 10)
    assert [registry.defaults(a)["eps"] for a in ("fgsm", "pgd", "sparse-rs", "pgd0")] == [8 / 255, 8 / 255, 1.0, 1.0]


def test_paper_harden_schedule_drops_milestones_past_the_last_epoch() -> None:
    assert presets.paper_harden("mnist") == {"epochs": 30, "milestones": (10, 20), "particles": 500}
    assert presets.paper_harden("cifar10") == {"epochs": 50, "milestones": (15, 40), "particles": 200}
    assert presets.paper_harden("cifar10", epochs=20)["milestones"] == (15,)
    assert presets.paper_harden("mnist", epochs=5)["milestones"] == ()


def _attack_args(*flags: str):  # noqa: ANN202
    args = build_parser().parse_args(["attack", "--out", "unused", *flags])
    parsed = dict(vars(args))
    flags = _resolve_attack(args)
    assert vars(args) == parsed                   # the parsed namespace is left as it was
    return SimpleNamespace(**flags)


@pytest.mark.parametrize("dataset, particles, rule, scale", [("mnist", 500, "fi", 1.0),
                                                             ("cifar10", 200, "fi-eps", 255.0)])
def test_cli_paper_preset_fills_only_what_was_not_given(dataset, particles, rule, scale) -> None:
    a = _attack_args("--dataset", dataset, "--preset", "paper")
    assert (a.attack, a.particles, a.pixel_rule, a.fi_eps_scale) == ("mfipso", particles, rule, scale)
    assert (a.fi_threshold, a.pixels, a.bounds, a.eps, a.target) == (0.01, None, "paper", 0.15, "second")
    b = _attack_args("--dataset", dataset, "--preset", "paper", "--pixels", "7", "--particles", "9",
                     "--fi-eps-scale", "1", "--target", "none", "--bounds", "box")
    given = (b.pixels, b.fi_threshold, b.particles, b.fi_eps_scale, b.target, b.bounds)
    assert given == (7, None, 9, 1.0, "none", "box")


def test_cli_attack_defaults_per_attack() -> None:
    s = _attack_args()
    assert (s.attack, s.eps, s.budget, s.target, s.pixels, s.particles) == ("sparse-swarm", 1.0, 1000, "none", 10, None)
    m = _attack_args("--attack", "mfipso")
    assert (m.eps, m.target, m.pixels, m.budget) == (0.15, "second", 10, None)   # mfipso has no budget
    assert _attack_args("--attack", "pgd").eps == 8 / 255 and _attack_args("--attack", "pgd", "--eps", "0.3").eps == 0.3
    assert _attack_args("--attack", "onepixel").pixels == 1 and _attack_args("--attack", "pgd").steps == 10
