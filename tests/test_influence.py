"""Influence kernels against a brute-force float64 reference: explicit Jacobian, explicit
Fisher metric G and torch.linalg.pinv (or, for the authors' variant, an explicit SVD)."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from infoswarm import influence as inf
from infoswarm.errors import InputError


def full_jacobian(model, xi):
    """K x D logit Jacobian of one image (explicit, float64)."""
    shape = xi.shape
    return torch.autograd.functional.jacobian(
        lambda v: model(v.view(1, *shape))[0], xi.reshape(-1).double())


def ref_fi(model, xi, c, entries, eps=None):
    """∇fᵀ G⁺ ∇f over the listed flat entries, built explicitly."""
    jac = full_jacobian(model, xi)[:, entries]
    with torch.no_grad():
        p = torch.softmax(model(xi[None]).double()[0], 0)
    k = p.numel()
    if eps is None:
        g_metric = jac.T @ (torch.diag(p) - torch.outer(p, p)) @ jac
        grad_f = jac.T @ (torch.eye(k, dtype=p.dtype)[c] - p)
        return float(grad_f @ torch.linalg.pinv(g_metric, rtol=1e-10, hermitian=True) @ grad_f)
    dp = (torch.diag(p) - torch.outer(p, p)) @ jac           # rows: ∇p_k
    cols = (dp / (p.sqrt() + eps).unsqueeze(1)).T             # d x K, columns ∇p_k/(√p_k+ε)
    u, s, _ = torch.linalg.svd(cols, full_matrices=False)
    g = dp[c] / (p[c] + eps)
    keep = s > eps
    return float(((u[:, keep].T @ g) ** 2 / s[keep] ** 2).sum())


def window_entries(shape, h, w, window, channels):
    """Flat indices of the window centred at (h, w), cut at the borders, for the channels."""
    c_, hh, ww = shape
    r = window // 2
    out = []
    for ch in channels:
        for i in range(max(0, h - r), min(hh, h + r + 1)):
            for j in range(max(0, w - r), min(ww, w + r + 1)):
                out.append(ch * hh * ww + i * ww + j)
    return out


def probs(model, x):
    with torch.no_grad():
        return torch.softmax(model(x).double(), 1)


@pytest.mark.slow
@pytest.mark.parametrize("cls", ["pred", "true", "second", 2])
def test_element_fi_matches_reference(tiny, cls):
    model, x = tiny(channels=3, size=4, classes=6)
    y = torch.tensor([1, 4, 0])
    got = inf.pixel_fi(model, x, cls, y=y, unit="element")
    assert got.shape == (3, 3, 4, 4)
    c = inf.resolve_class(model(x).detach(), cls, y)
    for n in range(3):
        for ch, i, j in itertools.product(range(3), range(4), range(4)):
            want = ref_fi(model, x[n], int(c[n]), [ch * 16 + i * 4 + j])
            assert got[n, ch, i, j].item() == pytest.approx(want, rel=1e-8, abs=1e-14)


@pytest.mark.parametrize("classes", [6, 2])  # d = 3 <= K (small Gram) and d = 3 > K (K x K)
def test_pixel_fi_all_channels_matches_reference(tiny, classes):
    model, x = tiny(channels=3, size=4, classes=classes, n=2)
    got = inf.pixel_fi(model, x, "pred", unit="pixel")
    assert got.shape == (2, 4, 4)
    c = model(x).argmax(1)
    for n, i, j in itertools.product(range(2), range(4), range(4)):
        want = ref_fi(model, x[n], int(c[n]), [ch * 16 + i * 4 + j for ch in range(3)])
        assert got[n, i, j].item() == pytest.approx(want, rel=1e-7, abs=1e-13)


@pytest.mark.slow
@pytest.mark.parametrize("window,unit", [(3, "pixel"), (5, "pixel"), (3, "element")])
def test_window_fi_matches_reference(tiny, window, unit):
    model, x = tiny(channels=3, size=5, classes=6, n=2)
    got = inf.pixel_fi(model, x, "second", unit=unit, window=window)
    c = inf.resolve_class(model(x).detach(), "second")
    for n, i, j in itertools.product(range(2), range(5), range(5)):
        chans = [range(3)] if unit == "pixel" else [[ch] for ch in range(3)]
        for k, ch in enumerate(chans):
            want = ref_fi(model, x[n], int(c[n]), window_entries((3, 5, 5), i, j, window, ch))
            val = got[n, i, j] if unit == "pixel" else got[n, k, i, j]
            assert val.item() == pytest.approx(want, rel=1e-6, abs=1e-12)


def test_block_fi_arbitrary_and_per_image_masks(tiny):
    model, x = tiny(channels=1, size=5, classes=4, n=3)
    torch.manual_seed(1)
    mask = torch.rand(3, 1, 5, 5) < 0.3
    got = inf.block_fi(model, x, "pred", mask)
    c = model(x).argmax(1)
    for n in range(3):
        entries = mask[n].reshape(-1).nonzero().view(-1).tolist()
        assert got[n].item() == pytest.approx(ref_fi(model, x[n], int(c[n]), entries), rel=1e-7)
    empty = torch.zeros(1, 5, 5, dtype=torch.bool)
    assert torch.equal(inf.block_fi(model, x, "pred", empty), torch.zeros(3, dtype=torch.float64))


def test_image_fi_closed_form_equals_general_and_reference(tiny):
    model, x = tiny(channels=3, size=4, classes=6, n=3)
    p = probs(model, x)
    c = p.argmax(1)
    closed = inf.image_fi(model, x, "pred")
    general = inf.image_fi(model, x, "pred", method="general")
    expected = (1 - p[torch.arange(3), c]) / p[torch.arange(3), c]
    torch.testing.assert_close(closed, expected, rtol=1e-10, atol=0)
    torch.testing.assert_close(general, expected, rtol=1e-8, atol=0)
    for n in range(3):
        assert ref_fi(model, x[n], int(c[n]), list(range(48))) == pytest.approx(expected[n].item(), rel=1e-8)


def test_closed_form_is_one_minus_p_over_p():
    z = torch.randn(20, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3
    y = torch.randint(0, 7, (20,), generator=torch.Generator().manual_seed(1))
    p = torch.softmax(z, 1).gather(1, y.view(-1, 1)).squeeze(1)
    torch.testing.assert_close(inf.image_fi_from_logits(z, y), (1 - p) / p, rtol=1e-9, atol=0)


def test_closed_form_is_stable_when_confident():
    logits = torch.tensor([[40.0, 0.0, -3.0], [0.0, 0.0, 0.0]])
    fi = inf.image_fi_from_logits(logits, torch.tensor([0, 1]))
    # float32 1 - p_c is exactly 0 for the first image; the log-sum-exp form is not.
    assert fi[0].item() == pytest.approx((1 + torch.exp(torch.tensor(-3.0, dtype=torch.float64)).item())
                                         * torch.exp(torch.tensor(-40.0, dtype=torch.float64)).item(), rel=1e-12)
    assert fi[1].item() == pytest.approx(2.0)


@pytest.mark.slow
@pytest.mark.parametrize("unit,window", [("element", 1), ("pixel", 1), ("pixel", 3)])
def test_eps_variant_matches_authors_formula(tiny, unit, window):
    eps = 1e-3
    model, x = tiny(channels=3, size=4, classes=6, n=2)
    got = inf.pixel_fi(model, x, "pred", unit=unit, window=window, fi_eps=eps)
    c = model(x).argmax(1)
    for n, i, j in itertools.product(range(2), range(4), range(4)):
        if unit == "element":
            for ch in range(3):
                want = ref_fi(model, x[n], int(c[n]), [ch * 16 + i * 4 + j], eps=eps)
                assert got[n, ch, i, j].item() == pytest.approx(want, rel=1e-7, abs=1e-12)
        else:
            want = ref_fi(model, x[n], int(c[n]), window_entries((3, 4, 4), i, j, window, range(3)), eps=eps)
            assert got[n, i, j].item() == pytest.approx(want, rel=1e-7, abs=1e-12)
    img = inf.image_fi(model, x, "pred", fi_eps=eps)
    for n in range(2):
        assert img[n].item() == pytest.approx(ref_fi(model, x[n], int(c[n]), list(range(48)), eps=eps), rel=1e-7)


def test_eps_variant_drops_small_singular_values(tiny):
    """With a large ε every singular value is cut and the authors' FI is 0 (exact FI is not)."""
    model, x = tiny(channels=1, size=4, classes=4, n=2)
    assert torch.all(inf.pixel_fi(model, x, "pred", fi_eps=1e3) == 0)
    assert torch.all(inf.pixel_fi(model, x, "pred") > 0)


def test_parameter_fi_matches_reference(tiny):
    from torch.func import functional_call

    model, x = tiny(channels=1, size=3, classes=6, n=2)
    got = inf.parameter_fi(model, x, "true", y=torch.tensor([3, 5]))
    assert set(got) == {"conv", "fc"}
    params = dict(model.named_parameters())
    for layer in ("conv", "fc"):
        names = [k for k in params if k.startswith(layer + ".")]
        for n in range(2):
            flat = torch.cat([params[k].detach().reshape(-1) for k in names])
            sizes = [params[k].numel() for k in names]

            def f(v, names=names, sizes=sizes, n=n):
                parts = dict(zip(names, [t.view_as(params[k]) for t, k in zip(v.split(sizes), names)]))
                return functional_call(model, {**params, **parts}, (x[n: n + 1],))[0]

            jac = torch.autograd.functional.jacobian(f, flat)
            p = probs(model, x[n: n + 1])[0]
            c = [3, 5][n]
            g_metric = jac.T @ (torch.diag(p) - torch.outer(p, p)) @ jac
            grad_f = jac.T @ (torch.eye(6, dtype=p.dtype)[c] - p)
            want = float(grad_f @ torch.linalg.pinv(g_metric, rtol=1e-10, hermitian=True) @ grad_f)
            assert got[layer][n].item() == pytest.approx(want, rel=1e-6)


def test_parameter_fi_small_layer_differs_from_image_value():
    """A layer with fewer than K-1 parameters cannot reach the image-level value."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2), nn.Tanh(), nn.Linear(2, 5)).double().eval()
    x = torch.rand(2, 1, 2, 2, dtype=torch.float64)
    got = inf.parameter_fi(model, x, "pred", layers=["1", "3"])
    img = inf.image_fi(model, x, "pred")
    assert torch.all(got["1"] <= img * (1 + 1e-9))
    torch.testing.assert_close(got["3"], img, rtol=1e-8, atol=0)  # 15 parameters, rank K-1


def test_invariant_to_rescaling_the_input(tiny):
    """A model that rescales to 0-255 internally (same function) and a Jacobian taken in
    0-255 units give the same FI maps."""
    model, x = tiny(channels=3, size=4, classes=6)

    class In255(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.conv = nn.Conv2d(3, 4, 3, padding=1).double()
            with torch.no_grad():
                self.conv.weight.copy_(inner.conv.weight / 255.0)
                self.conv.bias.copy_(inner.conv.bias)

        def forward(self, x):
            return self.inner.fc(self.inner.act(self.conv(x * 255.0)).flatten(1))

    other = In255(model).eval()
    for unit, window in [("element", 1), ("pixel", 1), ("pixel", 3)]:
        a = inf.pixel_fi(model, x, "pred", unit=unit, window=window)
        b = inf.pixel_fi(other, x, "pred", unit=unit, window=window)
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-14)
    logits, jac = inf.logit_jacobian(model, x)
    c = logits.argmax(1)
    torch.testing.assert_close(inf.fi_map_from_jacobian(jac, logits, c, unit="pixel"),
                               inf.fi_map_from_jacobian(jac / 255.0, logits, c, unit="pixel"),
                               rtol=1e-9, atol=1e-15)


def test_bounds_and_monotonicity(tiny):
    """0 <= element FI <= pixel FI <= window FI <= (1-p)/p: FI is a supremum over a subspace."""
    model, x = tiny(channels=3, size=5, classes=6, n=4, seed=3)
    img = inf.image_fi(model, x, "pred").view(-1, 1, 1)
    el = inf.pixel_fi(model, x, "pred", unit="element")
    px = inf.pixel_fi(model, x, "pred", unit="pixel")
    w3 = inf.pixel_fi(model, x, "pred", unit="pixel", window=3)
    tol = 1e-9
    assert torch.all(el >= 0)
    assert torch.all(el.amax(1) <= px * (1 + tol) + 1e-15)
    assert torch.all(px <= w3 * (1 + tol) + 1e-15)
    assert torch.all(w3 <= img * (1 + tol))


def test_dead_relu_entries_get_zero(tiny):
    model, x = tiny(channels=1, size=4, classes=4, act="relu", n=2)
    with torch.no_grad():
        model.conv.weight[:, :, :, :] = 0.0
        model.conv.weight[:, 0, 1, 1] = 1.0  # each output depends on its own pixel only
        model.conv.bias.fill_(-0.5)          # pixels below 0.5 are dead
    x = torch.rand(2, 1, 4, 4, dtype=torch.float64)
    fi = inf.pixel_fi(model, x, "pred")
    dead = x <= 0.5
    assert torch.all(fi[dead] == 0)
    assert torch.all(fi[~dead] > 0)


def test_float32_model_agrees_with_float64(tiny):
    model, x = tiny(channels=3, size=5, classes=6)
    import copy
    m32 = copy.deepcopy(model).float()
    got32 = inf.pixel_fi(m32, x.float(), "pred", unit="pixel", window=3)
    got64 = inf.pixel_fi(model.double(), x, "pred", unit="pixel", window=3)
    torch.testing.assert_close(got32, got64, rtol=1e-4, atol=1e-9)


def test_rank_images_orders_by_confidence(tiny):
    model, x = tiny(channels=1, size=4, classes=5, n=20)
    ranking = inf.rank_images(model, x, "pred", batch_size=7)
    p = probs(model, x).amax(1)
    assert torch.equal(ranking.order, torch.argsort(p, stable=True))  # least confident first
    torch.testing.assert_close(ranking.fi, (1 - p) / p)
    x8 = (x * 255).round().to(torch.uint8)
    r8 = inf.rank_images(model.float(), x8, "pred")
    assert r8.fi.shape == (20,)


@pytest.mark.parametrize("bad,msg", [
    (lambda x: x * float("nan"), "NaN"),
    (lambda x: x + 1.5, "outside [0, 1]"),
    (lambda x: x[0], "[N, C, H, W]"),
    (lambda x: (x * 255).to(torch.uint8), "float"),
])
def test_bad_images_are_refused(tiny, bad, msg):
    model, x = tiny()
    with pytest.raises(InputError, match=None) as e:
        inf.pixel_fi(model, bad(x), "pred")
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_bad_classes_and_outputs_are_refused(tiny):
    model, x = tiny(classes=6)
    with pytest.raises(InputError, match="out of range"):
        inf.pixel_fi(model, x, torch.tensor([0, 1, 6]))
    with pytest.raises(InputError, match="needs the labels"):
        inf.image_fi(model, x, "true")
    with pytest.raises(InputError, match="expected \\[N, K\\]"):
        inf.pixel_fi(nn.Identity(), x, "pred")
    with pytest.raises(InputError, match="window"):
        inf.pixel_fi(model, x, "pred", window=2)


class _Raw255(nn.Module):
    """The same network fed raw 0..255 pixels (as the authors' CIFAR-10 model was)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, v):
        return self.model(v / 255.0)


@pytest.mark.slow
@pytest.mark.parametrize("unit,window", [("element", 1), ("pixel", 1), ("pixel", 3)])
def test_eps_scale_matches_authors_formula_on_raw_pixels(tiny, unit, window):
    """fi_eps_scale=255 on a [0,1] model = the authors' ε-FI of the same network on 0..255 input,
    built explicitly (Jacobian w.r.t. raw pixels, SVD cut at ε)."""
    eps = 1e-3
    model, x = tiny(channels=3, size=4, classes=6, n=2)
    raw = _Raw255(model)
    got = inf.pixel_fi(model, x, "pred", unit=unit, window=window, fi_eps=eps, fi_eps_scale=255)
    plain = inf.pixel_fi(model, x, "pred", unit=unit, window=window, fi_eps=eps)
    c = model(x).argmax(1)
    for n, i, j in itertools.product(range(2), range(4), range(4)):
        if unit == "element":
            for ch in range(3):
                want = ref_fi(raw, x[n] * 255, int(c[n]), [ch * 16 + i * 4 + j], eps=eps)
                assert got[n, ch, i, j].item() == pytest.approx(want, rel=1e-6, abs=1e-12)
        else:
            want = ref_fi(raw, x[n] * 255, int(c[n]), window_entries((3, 4, 4), i, j, window, range(3)), eps=eps)
            assert got[n, i, j].item() == pytest.approx(want, rel=1e-6, abs=1e-12)
    assert not torch.allclose(got, plain)  # the cut-off really depends on the units
    img = inf.image_fi(model, x, "pred", fi_eps=eps, fi_eps_scale=255)
    for n in range(2):
        want = ref_fi(raw, x[n] * 255, int(c[n]), list(range(48)), eps=eps)
        assert img[n].item() == pytest.approx(want, rel=1e-6, abs=1e-12)


def test_eps_scale_leaves_exact_fi_alone(tiny):
    model, x = tiny(channels=3, size=4, classes=6, n=2)
    assert torch.equal(inf.pixel_fi(model, x, "pred", fi_eps_scale=255), inf.pixel_fi(model, x, "pred"))


@pytest.mark.parametrize("kw", [dict(fi_eps=-1.0), dict(fi_eps=float("nan")), dict(fi_eps=1e-3, fi_eps_scale=0),
                                dict(fi_eps=1e-3, fi_eps_scale=float("inf"))])
def test_bad_eps_is_refused(tiny, kw):
    model, x = tiny(channels=1, size=4, classes=4, n=1)
    with pytest.raises(InputError):
        inf.pixel_fi(model, x, "pred", **kw)


def test_old_keywords_eps_and_eps_scale_still_work_with_a_warning(tiny):
    """The FI regulariser was ``eps=`` / ``eps_scale=`` before ``fi_eps=`` / ``fi_eps_scale=``:
    the old keywords give a DeprecationWarning naming the new one (pointing at the caller) and
    their values are used; both names at once is an InputError."""
    model, x = tiny(channels=3, size=4, classes=6, n=2)
    want = inf.pixel_fi(model, x, "pred", fi_eps=1e-3, fi_eps_scale=255)
    assert not torch.allclose(want, inf.pixel_fi(model, x, "pred", fi_eps=1e-3))  # the scale matters here
    with pytest.warns(DeprecationWarning) as rec:
        got = inf.pixel_fi(model, x, "pred", eps=1e-3, eps_scale=255)
    assert torch.equal(got, want)
    assert sorted(str(w.message) for w in rec) == [
        "pixel_fi(): the keyword eps= is deprecated, use fi_eps=",
        "pixel_fi(): the keyword eps_scale= is deprecated, use fi_eps_scale="]
    assert {w.filename for w in rec} == {__file__}
    with pytest.warns(DeprecationWarning, match="use fi_eps="):
        img = inf.image_fi(model, x, "pred", eps=0.5)
    assert torch.equal(img, inf.image_fi(model, x, "pred", fi_eps=0.5))
    assert not torch.allclose(img, inf.image_fi(model, x, "pred"))
    with pytest.raises(InputError, match="both eps= and fi_eps="):
        inf.pixel_fi(model, x, "pred", eps=1e-3, fi_eps=1e-3)
    with pytest.raises(InputError, match="`fi_eps_scale` must be"):
        inf.check_eps(1e-3, 0)  # the old name of check_fi_eps
