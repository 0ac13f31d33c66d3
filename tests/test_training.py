"""Training loop: determinism, resume from a checkpoint (bitwise), adversarial batches."""

from __future__ import annotations

import copy

import pytest
import torch

from infoswarm import training
from infoswarm.models import SmallCNN
from infoswarm.zoo import Recipe


def _data(n: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (n, 1, 8, 8), generator=g, dtype=torch.uint8), torch.randint(0, 3, (n,), generator=g)


def _model() -> SmallCNN:
    torch.manual_seed(0)
    return SmallCNN(1, 3, 8)


RECIPE = Recipe(epochs=3, lr=0.05, batch_size=32, milestones=(2,), augment="crop", crop_pad=1)


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.slow
def test_resume_from_any_epoch_is_bitwise_equal() -> None:
    x, y = _data()
    ref = _model()
    saved: list[dict] = []
    hist = training.train(ref, x, y, RECIPE, seed=5, checkpoint=lambda st: saved.append(copy.deepcopy(st)))
    assert [s["epoch"] for s in saved] == [1, 2, 3]
    for state in saved[:2]:
        fresh = _model()
        torch.manual_seed(123)  # a different global state before resuming must not matter
        hist2 = training.train(fresh, x, y, RECIPE, seed=5, resume=state)
        assert _same(ref, fresh)
        assert [r["train_loss"] for r in hist2] == [r["train_loss"] for r in hist]


@pytest.mark.slow
def test_float_images_and_perturb_hook() -> None:
    x, y = _data()
    a, b = _model(), _model()
    training.train(a, x, y, RECIPE, seed=1)
    training.train(b, x.float() / 255.0, y, RECIPE, seed=1)
    assert _same(a, b)  # uint8 and the same images as float train identically

    calls = []

    def perturb(model, xb, yb, noise):
        assert noise.shape == xb.shape and noise.abs().max() <= 1
        calls.append((model.training, len(xb)))
        return (xb + 0.1).clamp(0, 1)

    c = _model()
    training.train(c, x, y, Recipe(epochs=1, lr=0.05, batch_size=32), seed=1, perturb=perturb)
    assert calls == [(False, 32)] * 3  # made in eval mode, once per batch
    assert not _same(a, c)


def test_onecycle_schedule_ramps_then_falls_to_zero() -> None:
    r = Recipe(epochs=10, lr=0.2, schedule="onecycle", warmup=2.0)
    assert training.lr_at(r, 0) == pytest.approx(0.02)
    assert training.lr_at(r, 1) == pytest.approx(0.02 + 0.09)
    assert training.lr_at(r, 2) == pytest.approx(0.2)
    assert training.lr_at(r, 6) == pytest.approx(0.1)
    assert training.lr_at(r, 10) == pytest.approx(0.0)


def test_channels_last_and_label_smoothing_train_and_restore_layout() -> None:
    x, y = _data()
    r = Recipe(epochs=1, lr=0.05, batch_size=32, label_smoothing=0.1, channels_last=True,
               schedule="onecycle", warmup=0.5)
    m = _model()
    training.train(m, x, y, r, seed=1)
    assert all(p.is_contiguous() for p in m.parameters())  # saved weights are plain NCHW
    m2 = _model()
    training.train(m2, x, y, r, seed=1)
    assert _same(m, m2)
