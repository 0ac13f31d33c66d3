"""Online sparse adversarial training (infoswarm.sparse_hardening): the loop on a tiny model and
generated data, resume after a kill, the collapse watch and the checks of its settings."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from infoswarm import sparse_hardening
from infoswarm.errors import InputError
from infoswarm.runs import ResumableRun
from infoswarm.sparse_hardening import SparseConfig, sparse_harden


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def _data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three classes of 8x8 images: a bright bar in the top, middle or bottom rows, plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.rand(n, 1, 8, 8, generator=g) * 0.3
    for c in range(3):
        x[y == c, :, 2 * c + 1: 2 * c + 3, 1:7] += 0.7
    return (x.clamp(0, 1) * 255).to(torch.uint8), y


@pytest.fixture
def world():
    torch.manual_seed(0)
    x8, y = _data(360, 0)
    xt8, yt = _data(90, 1)
    return x8, y, xt8, yt


CFG = SparseConfig(k_train=3, inner="swap", inner_steps=2, epochs=2, lr=0.05, batch_size=32, holdout=60,
                   eval_images=30, eval_k=2, eval_queries=20, warmup=0.5)


def _run(tmp_path, name, cfg=CFG):
    return ResumableRun(tmp_path / name, "harden", cfg.as_dict())


def test_training_runs_records_every_epoch_and_keeps_the_best(world, tmp_path):
    x8, y, xt8, yt = world
    model = Tiny().eval()
    summary = sparse_harden(model, x8, y, xt8, yt, CFG, _run(tmp_path, "a"))
    assert summary["method"] == "sparse" and summary["epochs_run"] == 2 and summary["train_images"] == 300
    rows = summary["history"]
    assert [r["epoch"] for r in rows] == [1, 2]
    for r in rows:
        assert 0 <= r["val_robust"] <= r["val_clean"] <= 1 and 0 <= r["test_acc"] <= 1
        assert r["inner_forward"] == 4 and r["inner_backward"] == 1
    best = max([summary["before"]["val_robust"]] + [r["val_robust"] for r in rows])
    assert summary["after"]["val_robust"] == best
    assert summary["after"]["clean_acc"] > 0.5                       # it learnt the bars
    assert not model.training


def test_a_killed_run_resumes_to_the_same_weights(world, tmp_path):
    x8, y, xt8, yt = world
    torch.manual_seed(0)
    full = Tiny().eval()
    init = {k: v.clone() for k, v in full.state_dict().items()}
    cfg = SparseConfig(**{**CFG.as_dict(), "milestones": (), "keep": "last"})
    sparse_harden(full, x8, y, xt8, yt, cfg, _run(tmp_path, "full", cfg))

    class Killed(Exception):
        pass

    def kill(row):
        if row["epoch"] == 1:
            raise Killed

    part = Tiny().eval()
    part.load_state_dict(init)
    with pytest.raises(Killed):
        sparse_harden(part, x8, y, xt8, yt, cfg, _run(tmp_path, "part", cfg), epoch_log=kill)
    # the kill came after epoch 1's checkpoint? no: epoch_log runs before the save, so epoch 1 redoes
    again = Tiny().eval()
    again.load_state_dict(init)
    resumed = ResumableRun(tmp_path / "part", "harden", cfg.as_dict())
    sparse_harden(again, x8, y, xt8, yt, cfg, resumed)
    for k, v in full.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k


def test_resume_continues_from_the_last_saved_epoch(world, tmp_path):
    x8, y, xt8, yt = world
    torch.manual_seed(0)
    cfg = SparseConfig(**{**CFG.as_dict(), "milestones": (), "keep": "last", "epochs": 3})
    a = Tiny().eval()
    init = {k: v.clone() for k, v in a.state_dict().items()}
    sparse_harden(a, x8, y, xt8, yt, cfg, _run(tmp_path, "a", cfg))
    b = Tiny().eval()
    b.load_state_dict(init)
    run = _run(tmp_path, "b", cfg)
    seen = []

    class Stop(Exception):
        pass

    real_save = run.save

    def save(name, obj):
        real_save(name, obj)
        if obj["epoch"] == 2:
            raise Stop                                              # killed right after epoch 2 was saved

    run.save = save
    with pytest.raises(Stop):
        sparse_harden(b, x8, y, xt8, yt, cfg, run)
    c = Tiny().eval()
    c.load_state_dict(init)
    summary = sparse_harden(c, x8, y, xt8, yt, cfg, ResumableRun(tmp_path / "b", "harden", cfg.as_dict()),
                            log=seen.append)
    assert "continuing from epoch 2" in seen
    assert [r["epoch"] for r in summary["history"]] == [1, 2, 3]
    for k, v in a.state_dict().items():
        assert torch.equal(v, c.state_dict()[k]), k


@pytest.mark.parametrize("mode", ["warn", "stop", "rollback"])
def test_a_collapse_of_robust_accuracy_is_reported_and_acted_on(world, tmp_path, monkeypatch, mode):
    x8, y, xt8, yt = world
    robust = iter([0.5, 0.6, 0.2, 0.1, 0.1])                         # before, epochs 1, 2, 3, 4

    monkeypatch.setattr(sparse_hardening, "robust_accuracy_on", lambda *a, **k: (0.9, next(robust)))
    cfg = SparseConfig(**{**CFG.as_dict(), "epochs": 4, "on_collapse": mode, "keep": "last"})
    lines: list[str] = []
    model = Tiny().eval()
    summary = sparse_harden(model, x8, y, xt8, yt, cfg, _run(tmp_path, mode, cfg), log=lines.append)
    assert summary["collapse"] and "fell from 60.0 % (epoch 1) to 20.0 %" in summary["collapse"][0]
    assert any("catastrophic overfitting" in s for s in lines)
    assert summary["epochs_run"] == (4 if mode == "warn" else 2)
    if mode == "rollback":
        assert summary["kept_epoch"] == 2 and summary["after"]["val_robust"] == 0.2  # the record says what ran
    if mode == "warn":
        assert len(summary["collapse"]) == 3


def test_keep_best_returns_the_best_epochs_weights(world, tmp_path, monkeypatch):
    x8, y, xt8, yt = world
    robust = iter([0.1, 0.7, 0.3])
    monkeypatch.setattr(sparse_hardening, "robust_accuracy_on", lambda *a, **k: (0.9, next(robust)))
    snaps = []
    cfg = SparseConfig(**{**CFG.as_dict(), "collapse_drop": 1.0})
    model = Tiny().eval()
    summary = sparse_harden(model, x8, y, xt8, yt, cfg, _run(tmp_path, "k", cfg),
                            epoch_log=lambda r: snaps.append({k: v.clone() for k, v in model.state_dict().items()}))
    assert summary["kept_epoch"] == 1 and summary["after"]["val_robust"] == 0.7
    for k, v in snaps[0].items():
        assert torch.equal(v, model.state_dict()[k])


@pytest.mark.parametrize("change, word", [
    ({"k_train": 0}, "k_train"), ({"k_train": 65}, "k_train"), ({"beta": -1.0}, "beta"),
    ({"inner": "fgsm"}, "inner attack"), ({"prior": "fi"}, "prior"), ({"objective": "mse"}, "objective"),
    ({"corner": "near"}, "corner"), ({"inner": "swarm", "prior": "both"}, "swarm"),
    ({"inner": "swarm", "inner_steps": 0}, "swarm"),
    ({"holdout": 360}, "holdout"), ({"eval_k": 0}, "eval_k"), ({"label_smoothing": 1.0}, "label_smoothing"),
    ({"on_collapse": "panic"}, "on_collapse"), ({"epochs": 0}, "epochs"), ({"random_frac": 1.5}, "random_frac"),
    ({"eps": 0.0}, "eps"), ({"fi_weight": -1.0}, "fi_weight"), ({"milestones": (9,)}, "milestones"),
    ({"watch": ()}, "watch"), ({"watch": ("pgd0",)}, "watch"), ({"watch": ("sparse-rs", "sparse-rs")}, "watch"),
])
def test_bad_settings_are_one_line_input_errors(change, word):
    cfg = SparseConfig(**{**CFG.as_dict(), **change})
    with pytest.raises(InputError, match=word):
        cfg.validate(64, 360)


def test_the_watch_runs_its_attacks_in_turn_and_never_reports_more_than_one_of_them(world):
    """The default watch (Sparse-RS, then SparseSwarm's gain prior on what it left) reports at most
    Sparse-RS's robust accuracy, and the clean accuracy does not depend on the attacks."""
    x8, y, _, _ = world
    torch.manual_seed(0)
    model = Tiny().eval()
    x = x8[:40].float() / 255
    yy = y[:40]
    c1, rs = sparse_hardening.robust_accuracy_on(model, x, yy, 2, 30, attacks=("sparse-rs",))
    c2, both = sparse_hardening.robust_accuracy_on(model, x, yy, 2, 30, attacks=("sparse-rs", "swarm-gain"))
    c3, _ = sparse_hardening.robust_accuracy_on(model, x, yy, 2, 30, attacks=("swarm-gain",))
    assert c1 == c2 == c3 > 0
    assert both <= rs
    assert 0.0 <= both <= c1
    assert SparseConfig().watch == ("sparse-rs", "swarm-gain")
    assert SparseConfig().watch_text() == "sparse-rs then swarm-gain, 300 queries each"


def test_runs_recorded_before_the_watch_setting_resume_with_the_old_watch(world, tmp_path):
    """A run folder whose run.json has no ``watch`` (recorded before the setting existed) resumes
    with --watch sparse-rs (what it ran with) and is refused, one line, with another watch."""
    old = {k: v for k, v in CFG.as_dict().items() if k != "watch"}
    ResumableRun(tmp_path / "old", "harden", old)
    legacy = {"watch": list(sparse_hardening.LEGACY_WATCH)}
    same = SparseConfig(**{**CFG.as_dict(), "watch": ("sparse-rs",)})
    assert ResumableRun(tmp_path / "old", "harden", same.as_dict(), legacy=legacy).resumed
    with pytest.raises(InputError, match=r"watch was \['sparse-rs'\], now \['sparse-rs', 'swarm-gain'\]"):
        ResumableRun(tmp_path / "old", "harden", CFG.as_dict(), legacy=legacy)
    # a legacy key the new settings do not hold is no difference
    assert ResumableRun(tmp_path / "old", "harden", old, legacy={**legacy, "other": 1}).resumed


def test_runs_recorded_before_the_corner_setting_resume_with_gradient_corners(tmp_path):
    """A run folder without ``corner`` (recorded before the setting) was trained with the
    gradient's corners: it resumes with corner=gradient and is refused, one line, with far."""
    old = {k: v for k, v in CFG.as_dict().items() if k != "corner"}
    ResumableRun(tmp_path / "old", "harden", old)
    legacy = {"watch": list(sparse_hardening.LEGACY_WATCH), "corner": "gradient"}
    assert CFG.corner == "gradient"
    assert ResumableRun(tmp_path / "old", "harden", CFG.as_dict(), legacy=legacy).resumed
    far = SparseConfig(**{**CFG.as_dict(), "corner": "far"})
    with pytest.raises(InputError, match=r"corner was 'gradient', now 'far'"):
        ResumableRun(tmp_path / "old", "harden", far.as_dict(), legacy=legacy)


@pytest.mark.parametrize("change", [{"inner": "swarm", "inner_steps": 8}, {"corner": "far"}])
def test_the_swarm_inner_attack_and_far_corners_train_and_record_their_passes(world, tmp_path, change):
    x8, y, xt8, yt = world
    torch.manual_seed(0)
    model = Tiny().eval()
    cfg = SparseConfig(**{**CFG.as_dict(), **change})
    summary = sparse_harden(model, x8, y, xt8, yt, cfg, _run(tmp_path, "s", cfg))
    assert summary["settings"]["inner"] == change.get("inner", "swap")
    assert summary["settings"]["corner"] == change.get("corner", "gradient")
    assert summary["after"]["clean_acc"] > 0.5                       # it learnt the bars
    for r in summary["history"]:
        if cfg.inner == "swarm":                                     # queries (≤ 8) plus the clean pass
            assert 1 <= r["inner_forward"] <= 9 and r["inner_backward"] == 0
        else:
            assert r["inner_forward"] == 4 and r["inner_backward"] == 1
