"""Hardening pipeline: selection, baseline defences, chunked attacks with resume, run folders."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from infoswarm import hardening, runner, runs
from infoswarm.errors import InputError
from infoswarm.hardening import HardenConfig

from conftest import TinyNet


@pytest.fixture
def small():
    """A float32 TinyNet on 40 random 1x6x6 images; labels = predictions, every 5th wrong."""
    torch.manual_seed(0)
    model = TinyNet(1, 6, 4).eval()
    with torch.no_grad():
        model.fc.weight.mul_(3.0)
    x = (torch.rand(40, 1, 6, 6) * 255).round() / 255
    with torch.no_grad():
        y = model(x).argmax(1)
    y[::5] = (y[::5] + 1) % 4
    return model, x, y


def test_parse_protect_and_validate() -> None:
    assert hardening.parse_protect("3:8, 7:1") == ((3, 8), (7, 1))
    assert hardening.parse_protect(None) == ()
    with pytest.raises(InputError, match="TRUE:TARGET"):
        hardening.parse_protect("3-8")
    with pytest.raises(InputError, match="equal classes"):
        HardenConfig(protect=((3, 3),)).validate(10)
    with pytest.raises(InputError, match="class 12"):
        HardenConfig(protect=((3, 12),)).validate(10)
    with pytest.raises(InputError, match="unknown method='magic'"):
        HardenConfig(method="magic").validate(10)
    with pytest.raises(InputError, match="mFI-PSO"):
        HardenConfig(method="pgd", protect=((1, 2),)).validate(10)
    HardenConfig(protect=((3, 8),)).validate(10)


def test_select_rule_protect_and_random(small) -> None:
    model, x, y = small
    x8 = (x * 255).round().to(torch.uint8)
    xf = x8.float() / 255
    with torch.no_grad():
        logits = model(xf)
    p = torch.softmax(logits.double(), 1)
    pred = logits.argmax(1)
    fi = (1 - p.max(1).values) / p.max(1).values
    tau = float(fi.median())
    assert 0 < ((pred == y) & (fi >= tau)).sum() < (pred == y).sum()  # the rule bites
    idx, tgt = hardening.select(model, x8, y, HardenConfig(tau=tau))
    want = ((pred == y) & (fi >= tau)).nonzero().view(-1)
    assert torch.equal(idx, want) and (tgt == -1).all()

    a, b = int(y[idx[0]]), (int(y[idx[0]]) + 1) % int(logits.shape[1])
    idx_p, tgt_p = hardening.select(model, x8, y, HardenConfig(tau=tau, protect=((a, b),)))
    assert len(idx_p) >= 1 and (y[idx_p] == a).all() and (tgt_p == b).all()

    idx_r, _ = hardening.select(model, x8, y, HardenConfig(tau=tau, method="random", seed=3))
    assert len(idx_r) == len(idx) and (pred[idx_r] == y[idx_r]).all()
    idx_r2, _ = hardening.select(model, x8, y, HardenConfig(tau=tau, method="random", seed=3))
    assert torch.equal(idx_r, idx_r2)


@pytest.mark.parametrize("make", [lambda e: hardening.fgsm_rs(e), lambda e: hardening.pgd(e, steps=5)])
def test_gradient_defences_stay_in_the_ball_and_raise_the_loss(small, make) -> None:
    model, x, y = small
    eps = 0.1
    noise = torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    xa = make(eps)(model, x, y, noise)
    assert xa.shape == x.shape
    assert (xa - x).abs().max() <= eps + 1e-6 and xa.min() >= 0 and xa.max() <= 1
    with torch.no_grad():
        assert F.cross_entropy(model(xa), y) > F.cross_entropy(model(x), y)


def test_mixed_training_set() -> None:
    x8 = torch.randint(0, 256, (5, 1, 4, 4), dtype=torch.uint8)
    xa = torch.rand(2, 1, 4, 4)
    xm, ym = hardening.mixed_training_set(x8, torch.arange(5), xa, torch.tensor([7, 8]))
    assert xm.dtype == torch.float32 and xm.shape == (7, 1, 4, 4)
    assert torch.equal(xm[:5], x8.float() / 255) and torch.equal(xm[5:], xa)
    assert ym.tolist() == [0, 1, 2, 3, 4, 7, 8]


def test_resumable_run_folder_rules(tmp_path) -> None:
    out = tmp_path / "h"
    run = runs.ResumableRun(out, "harden", {"epochs": 3})
    assert not run.resumed and not run.finished and (out / "run.json").is_file()
    run.save("a.pt", {"v": torch.arange(3)})
    assert torch.equal(run.load("a.pt")["v"], torch.arange(3)) and run.load("b.pt") is None

    again = runs.ResumableRun(out, "harden", {"epochs": 3})
    assert again.resumed
    before = sorted(p.name for p in out.rglob("*"))
    with pytest.raises(InputError, match="resume settings differ.*epochs was 3, now 4"):
        runs.ResumableRun(out, "harden", {"epochs": 4})
    with pytest.raises(InputError, match="holds a harden run, not a train run"):
        runs.ResumableRun(out, "train", {"epochs": 3})
    assert sorted(p.name for p in out.rglob("*")) == before  # untouched

    other = tmp_path / "other"
    other.mkdir()
    (other / "results.csv").write_text("x\n")
    with pytest.raises(InputError, match="holds another run's files"):
        runs.ResumableRun(other, "harden", {})
    assert [p.name for p in other.iterdir()] == ["results.csv"]
    # --overwrite replaces only folders infoswarm wrote (run.json): a user's files stay
    with pytest.raises(InputError, match="did not write"):
        runs.ResumableRun(other, "harden", {}, overwrite=True)
    assert [p.name for p in other.iterdir()] == ["results.csv"]
    h2 = tmp_path / "h2"
    runs.ResumableRun(h2, "harden", {"epochs": 3}).save("a.pt", {"v": torch.arange(3)})
    fresh = runs.ResumableRun(h2, "harden", {"epochs": 4}, overwrite=True)  # an infoswarm run: replaced
    assert not fresh.resumed and sorted(p.name for p in h2.iterdir()) == ["checkpoints", "run.json"]

    # A kill while run.json was being written leaves only its temporary file: not "another run".
    half = tmp_path / "half"
    half.mkdir()
    (half / ".run.json.tmp-abc").write_text("{")
    assert not runs.ResumableRun(half, "harden", {}).resumed
    assert sorted(p.name for p in half.iterdir()) == ["checkpoints", "run.json"]

    run.write_json("summary.json", {"done": True})
    assert runs.ResumableRun(out, "harden", {"epochs": 3}).finished
    assert json.loads((out / "run.json").read_text())["settings"] == {"epochs": 3}


def test_random_pixel_choice_does_not_depend_on_the_chunk_size(small, one_thread) -> None:
    model, x, y = small
    cfg = HardenConfig(pixels=3, pixel_rule="random", particles=6, iterations=2, restart_iterations=0, seed=4)
    target = torch.full((len(x),), -1)
    target[::3] = (y[::3] + 1) % 4                        # a third of the images aimed at a class
    runs_ = {}
    for chunk in (40, 7):
        res = runner.run_attack(hardening.build_attack(model, cfg), x, y, target=target, chunk=chunk, log=False)
        assert res is not None
        runs_[chunk] = res
    assert torch.equal(runs_[40].x_adv, runs_[7].x_adv) and torch.equal(runs_[40].target, runs_[7].target)
    assert torch.equal(runs_[7].target[::3], target[::3])   # per-image targets were used
    changed = (runs_[7].x_adv != x).flatten(1).any(1)
    assert changed.any()   # the attack did perturb images, so equal outputs mean equal choices
