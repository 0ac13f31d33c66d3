"""Adding an attack is one class and one registry row: a gradient L∞ attack with a query budget,
defined here and registered by monkeypatching the table, runs through ``infoswarm attack``,
``infoswarm evaluate`` and the benchmark harness's builder without touching another file."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from infoswarm import cli, zoo
from infoswarm.attacks import registry
from infoswarm.attacks.base import Attack, Call
from infoswarm.attacks.result import AttackResult

REPO = Path(__file__).resolve().parents[1]


class StepLinf(Attack):
    """``budget − 1`` signed-gradient steps of eps/2 inside the L∞ ball (a test attack)."""

    norm = "linf"
    uses = ("eps", "budget")
    gradients = "always"
    defaults = {"eps": 0.1, "budget": 4, "target": None}

    def __init__(self, model: Any, eps: float = 0.1, budget: int = 4, target: Any = None,
                 min_prob: float | None = None, max_prob: float | None = None, seed: int = 0) -> None:
        super().__init__(model, target=target, min_prob=min_prob, max_prob=max_prob, seed=seed)
        self.eps, self.budget = eps, budget

    def _run(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor, offset: torch.Tensor,
             call: Call) -> AttackResult:
        cur = x.clone()
        aim = torch.where(target >= 0, target, y)
        sign = torch.where(target >= 0, -1.0, 1.0).to(x.dtype).view(-1, 1, 1, 1)
        for _ in range(self.budget - 1):
            xa = cur.detach().requires_grad_(True)
            with torch.enable_grad():
                (g,) = torch.autograd.grad(F.cross_entropy(self.model(xa), aim), xa)
            cur = (x + (xa.detach() + self.eps / 2 * sign * g.sign() - x).clamp(-self.eps, self.eps)).clamp(0, 1)
        return self._finish(x, cur, y, target, torch.full((len(x),), self.budget, device=x.device))


def run(argv: list[Any], capsys: Any) -> tuple[int, str, str]:
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def registered(monkeypatch):
    """The test attack as one more registry row."""
    monkeypatch.setitem(registry.ATTACKS, "step-linf", registry.Spec(StepLinf, "test: signed steps within budget"))
    return "step-linf"


@pytest.mark.subprocess
def test_a_new_attack_runs_through_attack_evaluate_and_the_benchmark_builder(own_model, registered, tmp_path, capsys):
    model_args = ["--model", own_model["model"], "--weights", own_model["weights"], "--device", "cpu"]
    code, out, err = run(["attack", "--dataset", own_model["data"], *model_args, "--attack", registered,
                          "--select", "all", "--eps", 0.2, "--budget", 3, "--steps", 7, "--pixels", 2,
                          "--out", tmp_path / "a", "--json"], capsys)
    assert code == 0, err
    assert "--attack step-linf ignores --pixels, --steps" in err        # read from StepLinf.uses
    summary = json.loads(out)
    assert summary["attack_spec"]["name"] == registered and summary["attack_spec"]["eps"] == 0.2
    assert summary["attack_spec"]["budget"] == 3 and summary["queries_mean"] == 3
    assert summary["attack_repr"] == "StepLinf(eps=0.2, budget=3, target=None, min_prob=None, max_prob=None, seed=0)"
    assert 0 < summary["linf_success"]["max"] <= 0.2 + 1e-6 and summary["images"] == 60
    assert not (tmp_path / "a" / "checkpoints").exists()                 # removed once the run finished

    code, out, err = run(["evaluate", *model_args, "--against", tmp_path / "a", "--baselines", f"{registered},fgsm",
                          "--out", tmp_path / "e", "--json"], capsys)
    assert code == 0, err
    rows = {r["attack"]: r for r in json.loads(out)["reattack"]}
    assert set(rows) == {registered, "fgsm"} and rows[registered]["pixels"] is None   # an L∞ attack: no k
    assert rows[registered]["success_rate"] == pytest.approx(summary["success_rate"])    # same attack, same seed
    assert json.loads(out)["query_budget"] == 3                            # StepLinf.query_budget(): its budget

    spec = importlib.util.spec_from_file_location("bench_attack", REPO / "bench" / "attack.py")
    bench = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(bench)  # type: ignore[union-attr]
    model = zoo.load(str(own_model["model"]), own_model["weights"])
    attack = bench.make(registered, model, 3, 5, None, 0)
    assert isinstance(attack, StepLinf) and attack.budget == 5 and attack.eps == 0.1   # L∞: its own eps
    data = np.load(own_model["data"])
    res = attack(data["x"][:8] / 255.0, data["y"][:8])                     # numpy in, as elsewhere
    assert len(res) == 8 and float(res.linf.max()) <= 0.1 + 1e-6


def test_the_registry_reads_the_new_row(registered):
    assert registered in registry.names() and registry.defaults(registered) == StepLinf.defaults
    attack = registry.build(registered, torch.nn.Flatten())
    assert (attack.eps, attack.budget) == (0.1, 4) and attack.needs_gradient()


def test_every_attack_states_its_work_per_image_without_a_name_list():
    """The commands bound a run's time by ``Attack.work_per_image()``: each registered attack
    answers from its own configuration (no list of names in the CLI), a gradient pass counts
    twice, and more budget or pixels means more work."""
    from infoswarm.attacks import registry

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    for name in registry.names():
        a = registry.build(name, model)
        w = a.work_per_image()
        q = a.query_budget()
        assert w >= 1.0 and w == float(q or 1) * (2.0 if a.gradients == "always" else 1.0), name
    small, big = registry.build("jsma", model, pixels=2), registry.build("jsma", model, pixels=20)
    assert big.work_per_image() > small.work_per_image() and small.query_budget() == 2 * 1 + 1
    assert registry.build("sparse-rs", model, budget=5000).work_per_image() == 5000.0
