"""Universality measures on a model where a shared one-pixel perturbation must work."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from infoswarm import cli
from infoswarm import universality as U


class ThresholdNet(nn.Module):
    """Class 1 iff pixel (1, 2) of a 1x4x4 image exceeds 0.5 (smoothly). The other pixels feed
    a third class with their own weights, so their gradient directions differ from the key
    pixel's and exact FI (which ignores gradient size) singles the key pixel out. With two
    classes every pixel would share one direction and tie at (1 - p)/p."""

    def __init__(self):
        super().__init__()
        w = torch.linspace(0.5, 2.0, 16)
        w[1 * 4 + 2] = 0.0
        self.register_buffer("w", w)

    def forward(self, x):
        key = x[:, 0, 1, 2]
        z1 = 40.0 * (key - 0.5)
        z2 = (x.flatten(1) * self.w).sum(1) - 3.0
        return torch.stack([torch.zeros_like(z1), z1, z2], 1)


@pytest.fixture
def near_threshold():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(60, 1, 4, 4, generator=gen) * 0.2
    x[:, 0, 1, 2] = 0.55 + 0.05 * torch.rand(60, generator=gen)    # all class 1, just above 0.5
    return ThresholdNet().eval(), x, torch.ones(60, dtype=torch.long)


def test_shared_perturbation_finds_the_key_pixel_and_generalises(near_threshold):
    model, x, y = near_threshold
    sp = U.shared_perturbation(model, x[:20], y[:20], 1, eps=0.15, particles=16, iterations=10)
    assert sp.locations.tolist() == [[1 * 4 + 2]]
    assert sp.delta.abs().max() <= 0.15 + 1e-7 and sp.delta.item() < -0.1
    held = U.fooling_rate(model, x[20:], y[20:], sp.apply(x[20:], y[20:]))
    assert held["fooling_rate"] == 1.0 and held["correct_before"] == 40
    control = U.fooling_rate(model, x[20:], y[20:], U.random_control(x[20:], 1, 0.15))
    assert control["fooling_rate"] < 0.5


def test_shared_study_fits_then_measures_held_out_and_control(near_threshold):
    model, x, y = near_threshold
    sp, numbers = U.shared_study(model, x, y, 1, fit=20, holdout=100, eps=0.15, particles=16, iterations=10)
    assert (numbers["fit_images"], numbers["holdout_images"]) == (20, 40)        # the hold-out is what is left
    assert numbers["locations"] == sp.locations.tolist() == [[1 * 4 + 2]]
    assert numbers["holdout"]["fooling_rate"] == 1.0 and numbers["random_control"]["fooling_rate"] < 0.5
    with pytest.raises(ValueError, match="only 60 images for `fit` 60"):
        U.shared_study(model, x, y, 1, fit=60, holdout=10)


def test_apply_changes_only_k_pixels_within_eps(near_threshold):
    model, x, y = near_threshold
    sp = U.SharedPerturbation(locations=torch.tensor([[0, 5, 15]]), delta=torch.full((1, 1, 3), 0.1),
                              groups=torch.tensor([-1]), eps=0.1)
    xa = sp.apply(x, y)
    changed = (xa != x).flatten(1)
    assert changed[:, [0, 5, 15]].all() and not changed[:, [1, 2, 3, 4]].any()
    assert (xa - x).abs().max() <= 0.1 + 1e-7
    per_class = U.SharedPerturbation(locations=torch.tensor([[0], [1]]), delta=torch.full((2, 1, 1), -0.05),
                                     groups=torch.tensor([0, 1]), eps=0.05)
    xb = per_class.apply(x, y)                       # all labels are 1 -> location 1 only
    assert torch.equal((xb != x).flatten(1).nonzero()[:, 1].unique(), torch.tensor([1]))


def test_random_control_respects_k_and_eps():
    x = torch.full((5, 3, 6, 6), 0.5)
    xa = U.random_control(x, 4, 0.2, seed=3)
    assert ((xa != x).any(1).flatten(1).sum(1) == 4).all()
    assert torch.allclose((xa - x).abs().amax((1, 2, 3)), torch.full((5,), 0.2))


def test_pattern_reuse_and_transfer(near_threshold):
    model, x, y = near_threshold
    src_adv = x[:2].clone()
    src_adv[:, 0, 1, 2] -= 0.15
    reuse = U.pattern_reuse(model, x[:2], src_adv, x[2:], y[2:])
    assert reuse["sources"] == 2 and reuse["max_fooling_rate"] == 1.0
    tr = U.transfer(model, x[:2], src_adv, y[:2], torch.tensor([True, True]))
    assert tr["transfer_rate"] == 1.0 and tr["accuracy_adversarial"] == 0.0


@pytest.mark.slow
def test_cli_modes_and_bad_input(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (80, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=rng.integers(0, 10, 80))
    base = ["universality", "--dataset", tmp_path / "d.npz", "--particles", 4, "--iterations", 1]
    code = cli.main([str(a) for a in base + ["--mode", "shared", "--fit", 16, "--holdout", 30,
                                             "--pixels", 3, "--out", tmp_path / "s"]])
    assert code == 0, capsys.readouterr().err
    s = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert s["fit_images"] == 16 and s["holdout_images"] == 30 and len(s["locations"][0]) == 3
    xf = x[:4, None].astype(np.float32) / 255
    xa = np.clip(xf + 0.1, 0, 1)
    np.savez(tmp_path / "adv.npz", x=xf, x_adv=xa, y=np.zeros(4, np.int64), success=np.ones(4, bool))
    for mode in ("reuse", "transfer"):
        code = cli.main([str(a) for a in base + ["--mode", mode, "--adversarial", tmp_path / "adv.npz",
                                                 "--holdout", 20, "--out", tmp_path / mode]])
        assert code == 0, capsys.readouterr().err
        assert json.loads((tmp_path / mode / "summary.json").read_text())["mode"] == mode
    capsys.readouterr()
    (tmp_path / "junk.npz").write_bytes(b"junk")
    for extra, needle in ([["--mode", "reuse"], "no --adversarial was given"],
                          [["--mode", "transfer", "--adversarial", tmp_path / "junk.npz"], "cannot read"],
                          [["--mode", "shared", "--fit", 500], "raise --limit"]):
        code = cli.main([str(a) for a in base + extra + ["--out", tmp_path / "bad"]])
        err = capsys.readouterr().err
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "bad").exists()
