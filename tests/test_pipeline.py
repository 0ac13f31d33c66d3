"""The pipeline middle tier on its own: image selection, target parsing, the chunked attack runner
and the attack-run records (fast: tiny models and fake attacks, no data sets)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from infoswarm import artifacts, runner, selection
from infoswarm.artifacts import AttackRun, AttackSpec
from infoswarm.attacks.result import AttackResult
from infoswarm.errors import InputError


def _result(x: torch.Tensor, y: torch.Tensor, k: int = 2) -> AttackResult:
    n = len(x)
    return AttackResult(x_adv=x + 0.5, success=y % 2 == 0, pred=(y + 1) % 3, target=y.clone(),
                        target_prob=torch.full((n,), 0.25), indices=torch.zeros(n, k, dtype=torch.long),
                        pixel_l0=torch.full((n,), k), element_l0=torch.full((n,), k), linf=torch.full((n,), 0.5),
                        queries=torch.arange(n), seconds=0.0, y=y.clone(), grad_evals=torch.zeros(n, dtype=torch.long))


class _Fake:
    """An attack that records the chunks and offsets it was called with."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, x: torch.Tensor, y: torch.Tensor, offset: int = 0) -> AttackResult:
        self.calls.append((offset, len(x)))
        return _result(x, y)


class _Store:
    """A ResumableRun stand-in: checkpoints in a dict."""

    def __init__(self) -> None:
        self.saved: dict[str, object] = {}

    def save(self, name: str, obj: object) -> None:
        self.saved[name] = obj

    def load(self, name: str) -> object | None:
        return self.saved.get(name)


def test_parse_target_words_indices_and_errors() -> None:
    assert selection.parse_target("none", 10) is None and selection.parse_target(None, 10) is None
    assert selection.parse_target("Second", 10) == "second" and selection.parse_target("confusion", 10) == "confusion"
    assert selection.parse_target("3", 10) == 3 and selection.parse_target(9, 10) == 9
    with pytest.raises(InputError, match="target 10 is out of range"):
        selection.parse_target("10", 10)
    with pytest.raises(InputError, match="unknown --target 'foo'"):
        selection.parse_target("foo", 10, name="--target")


def test_select_images_fi_all_and_target() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).eval()
    x = torch.rand(40, 1, 2, 2)
    with torch.no_grad():
        y = model(x).argmax(1)
    y[:5] = (y[:5] + 1) % 3                                    # five wrong labels
    every = selection.select_images(model, x, y, rule="all")
    assert every.indices.tolist() == list(range(5, 40)) and every.describe() == "every correct image"
    fi = selection.select_images(model, x, y, rule="fi", tau=0.5)
    assert set(fi.indices.tolist()) == {i for i in range(5, 40) if float(fi.ranking.fi[i]) >= 0.5}
    aimed = selection.select_images(model, x, y, rule="all", target=1)
    assert all(int(y[i]) != 1 for i in aimed.indices)
    with pytest.raises(InputError, match="rule"):
        selection.select_images(model, x, y, rule="some")


def test_run_attack_chunks_checkpoints_and_resumes() -> None:
    x, y = torch.rand(10, 1, 2, 2), torch.arange(10)
    store, attack = _Store(), _Fake()
    res = runner.run_attack(attack, x, y, chunk=4, run=store, offset=100, log=False)
    assert attack.calls == [(100, 4), (104, 4), (108, 2)]
    assert sorted(store.saved) == ["chunk-0000000-0000004.pt", "chunk-0000004-0000008.pt", "chunk-0000008-0000010.pt"]
    assert res is not None and torch.equal(res.x_adv, x + 0.5)
    assert torch.equal(res.queries, torch.tensor([0, 1, 2, 3] * 2 + [0, 1]))
    again = _Fake()
    res2 = runner.run_attack(again, x, y, chunk=4, run=store, log=False)   # every chunk loaded
    assert again.calls == [] and res2 is not None and torch.equal(res2.success, res.success)
    store.saved["chunk-0000000-0000004.pt"] = {"x_adv": 1}
    with pytest.raises(InputError, match="checkpoint"):
        runner.run_attack(_Fake(), x, y, chunk=4, run=store, log=False)


class _Aimed:
    """An attack with an own target (class 9) that records each call's offsets and targets."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[int], list[int] | None]] = []

    def __call__(self, x: torch.Tensor, y: torch.Tensor, *, offset: torch.Tensor,
                 target: torch.Tensor | None = None) -> AttackResult:
        self.calls.append((offset.tolist(), None if target is None else target.tolist()))
        res = _result(x, y)
        res.target = torch.full((len(x),), 9) if target is None else target.clone()
        return res


def test_run_attack_per_image_targets_split_each_chunk_and_keep_the_order() -> None:
    x, y = torch.arange(10, dtype=torch.float32).view(10, 1, 1, 1) / 10, torch.zeros(10, dtype=torch.long)
    target = torch.tensor([-1, 4, -1, -1, 2, 2, -1, 5, -1, -1])
    store, attack = _Store(), _Aimed()
    res = runner.run_attack(attack, x, y, target=target, chunk=4, run=store, name="stage", log=False)
    assert attack.calls == [([0, 2, 3], None), ([1], [4]), ([6], None), ([4, 5, 7], [2, 2, 5]), ([8, 9], None)]
    assert res is not None and torch.equal(res.x_adv, x + 0.5)
    assert res.target.tolist() == [9, 4, 9, 9, 2, 2, 9, 5, 9, 9]
    assert sorted(store.saved) == ["stage-0000000-0000004.pt", "stage-0000004-0000008.pt", "stage-0000008-0000010.pt"]
    del store.saved["stage-0000004-0000008.pt"]
    again = _Aimed()
    res2 = runner.run_attack(again, x, y, target=target, chunk=4, run=store, name="stage", log=False)
    assert again.calls == [([6], None), ([4, 5, 7], [2, 2, 5])]   # only the missing chunk
    assert res2 is not None and all(torch.equal(getattr(res, f), getattr(res2, f)) for f in ("x_adv", "target"))
    empty = runner.run_attack(_Aimed(), x[:0], y[:0], target=target[:0], log=False)
    assert empty is not None and len(empty) == 0 and empty.x_adv.shape == (0, 1, 1, 1)
    for bad, msg in ((target[:3], "3 entries for 10 images"), (target - 5, "not a class")):
        with pytest.raises(InputError, match=msg):
            runner.run_attack(_Aimed(), x, y, target=bad, log=False)


def test_spec_round_trip_and_query_budget_from_the_attack() -> None:
    spec = AttackSpec(name="mfipso", pixels=None, eps=0.15, target="second", seed=2,
                      options={"fi_threshold": 0.01, "particles": 20, "iterations": 3, "restart_iterations": 4,
                               "pixel_rule": "fi", "bounds": "paper"})
    assert spec.query_budget() == 20 * (3 + 4)                  # read from the built MFIPSO
    assert AttackSpec.from_dict(json.loads(json.dumps(spec.to_dict())), "summary.json") == spec
    assert AttackSpec(name="mfipso", pixels=5, options={"restart": False}).query_budget() == 200 * 10  # its defaults
    assert AttackSpec(name="sparse-swarm", budget=50).query_budget() == 50
    assert AttackSpec(name="pgd", eps=0.1, steps=4).query_budget() == 5
    for bad in ({**spec.to_dict(), "options": {"particles": 0}}, {**spec.to_dict(), "name": "cw"},
                {**spec.to_dict(), "target": "foo"}, [1]):
        with pytest.raises(InputError, match="summary.json"):
            AttackSpec.from_dict(bad, "summary.json")
    with pytest.raises(InputError, match="unknown attack_spec.colour"):
        AttackSpec.from_dict({**spec.to_dict(), "colour": 1}, "summary.json")


def test_attack_run_save_load(tmp_path) -> None:
    x, y = torch.rand(6, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1, 2])
    res = _result(x, y)
    probs = torch.full((6, 3), 1 / 3)
    spec = AttackSpec(name="sparse-rs", pixels=2, eps=1.0, target="none", budget=30)
    record = AttackRun.from_result(res, x, y, torch.arange(10, 16), probs, probs,
                                   {"command": "attack", "dataset": "mnist", "settings": {"attack": "sparse-rs"}}, spec)
    assert [r["index"] for r in record.rows] == list(range(10, 16))
    assert list(record.rows[0]) == list(artifacts.RESULT_COLUMNS)
    record.save(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"adversarial.npz", "results.csv", "summary.json"}
    back = AttackRun.load(tmp_path)
    assert back.spec == spec and back.dataset == "mnist" and back.summary["images"] == 6
    assert torch.equal(back.arrays["x_adv"], x + 0.5) and back.arrays["dataset_index"].tolist() == list(range(10, 16))
    from infoswarm.attacks import AttackResult

    for read in (AttackResult.load(tmp_path / "adversarial.npz"), back.result(tmp_path)):   # one format
        assert all(torch.equal(getattr(read, f), getattr(res, f)) for f in ("x_adv", "success", "queries", "y"))
        assert read.seconds == pytest.approx(res.seconds)
    artifacts.write_npz(tmp_path / "adversarial.npz", {**record.arrays, "y": record.arrays["y"][:3]})
    with pytest.raises(InputError, match="inconsistent shapes"):
        AttackRun.load(tmp_path)
    with pytest.raises(InputError, match="not a finished attack run"):
        AttackRun.load(tmp_path / "nowhere", name="--against")


def test_harden_run_save_load(tmp_path) -> None:
    from safetensors.torch import load_file

    from infoswarm.artifacts import HardenRun

    summary = {"command": "harden", "settings": {"method": "fi"}, "before": {"clean_acc": 0.9},
               "after": {"clean_acc": 0.91},
               "history": [{"epoch": 1, "train_loss": 0.5}, {"epoch": 2, "train_loss": 0.4}]}
    adv = {"x_adv": torch.rand(3, 1, 4, 4), "y": torch.tensor([1, 2, 0]), "dataset_index": torch.tensor([5, 9, 11])}
    weights = nn.Linear(2, 3).state_dict()
    HardenRun(summary=summary, card={"name": "m-hardened-fi"}, adversarial=adv).save(tmp_path, weights, {"base": "m"})
    assert {p.name for p in tmp_path.iterdir()} == {"model.safetensors", "card.json", "metrics.csv",
                                                    "adversarial-train.npz", "summary.json"}
    assert (tmp_path / "metrics.csv").read_text().splitlines()[0] == "epoch,train_loss"
    assert torch.equal(load_file(str(tmp_path / "model.safetensors"))["weight"], weights["weight"])
    back = HardenRun.load(tmp_path)
    assert back.summary == summary and back.card["name"] == "m-hardened-fi"
    assert all(torch.equal(back.adversarial[k], adv[k]) for k in adv)
    empty = {"x_adv": torch.empty(0, 1, 4, 4), "y": torch.empty(0, dtype=torch.long),
             "dataset_index": torch.empty(0, dtype=torch.long)}
    HardenRun(summary=summary, card={}, adversarial=empty).save(tmp_path / "e", weights, {})
    assert len(HardenRun.load(tmp_path / "e").adversarial["y"]) == 0        # no adversarial image is a result
    (tmp_path / "summary.json").write_text(json.dumps({**summary, "command": "attack"}))
    with pytest.raises(InputError, match="is an attack run, not a harden run"):
        HardenRun.load(tmp_path)
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    (tmp_path / "adversarial-train.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="cannot read .*adversarial-train.npz"):
        HardenRun.load(tmp_path)
    with pytest.raises(InputError, match="not a finished harden run"):
        HardenRun.load(tmp_path / "nowhere", name="--run")


def test_influence_run_save_load(tmp_path) -> None:
    from infoswarm.artifacts import INFLUENCE_COLUMNS, InfluenceRun

    rows = [dict(zip(INFLUENCE_COLUMNS, (i, i % 3, i % 3, 0.5, 1.0, 1.0))) for i in range(4)]
    InfluenceRun(summary={"command": "influence", "images": 4}, rows=rows).save(tmp_path)
    back = InfluenceRun.load(tmp_path)
    assert back.summary["images"] == 4 and [r["index"] for r in back.rows] == ["0", "1", "2", "3"]
    (tmp_path / "summary.json").write_text(json.dumps({"command": "influence", "images": 5}))
    with pytest.raises(InputError, match="does not match its summary.json"):
        InfluenceRun.load(tmp_path)
    (tmp_path / "summary.json").write_text(json.dumps({"command": "harden"}))
    with pytest.raises(InputError, match="is a harden run, not an influence run"):
        InfluenceRun.load(tmp_path)
    with pytest.raises(InputError, match="not a finished influence run"):
        InfluenceRun.load(tmp_path / "nowhere")


def test_reattack_runs_the_runs_attack_then_each_other_baseline_at_its_budget() -> None:
    from infoswarm import pipeline

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()
    x = torch.rand(4, 1, 4, 4)
    y = model(x).argmax(1).detach()
    spec = AttackSpec(name="sparse-rs", pixels=2, eps=1.0, budget=20)
    run = AttackRun(summary={"attack_spec": spec.to_dict(), "pixel_l0_mean": 2.0},
                    arrays={"x": x, "x_adv": x, "y": y, "success": torch.zeros(4, dtype=torch.bool)})
    rows, budget = pipeline.reattack(run, model, ["sparse-rs", "fgsm"], num_classes=3,
                                     device=torch.device("cpu"), seed=0, where="run")
    assert budget == 20
    assert [r["attack"] for r in rows] == ["sparse-rs", "fgsm"]          # the run's own attack once, first
    assert rows[0]["pixels"] is not None and rows[0]["pixels"] <= 2 and rows[1]["pixels"] is None   # fgsm is L-inf
    assert all(0 <= r["success_rate"] <= 1 and r["queries_mean"] <= 20 for r in rows)
