"""The benchmark scripts that turn verdicts into cards and tables: ``bench/ship_model.py`` refuses
a verdict measured on other weights and headlines the strongest one; ``bench/robust_table.py``
merges verdicts of the same images at different k and refuses to merge others. Generated data
and untrained networks only."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from infoswarm.models import SmallCNN


def _net(seed):
    torch.manual_seed(seed)
    return SmallCNN(1, 10, 28, (0.1307,), (0.3081,)).eval()


def _verdict(tmp_path, model, version="standard", images=24):
    """A verdict folder as `infoswarm robustness` writes it, made honestly for ``model``: labels
    are its own predictions (all clean-correct); at k = 10 every image gets one pixel set to 1
    and is reported broken exactly when ``model`` then misclassifies it."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(images, 1, 28, 28, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)
        xa = x.clone()
        xa[:, 0, :4, :4] = 1.0
        broken = model(xa).argmax(1) != y
    folder = tmp_path / f"v-{version}-{images}"
    folder.mkdir()
    np.savez(folder / "adversarial.npz", x=x.numpy(), y=y.numpy(), x_adv_k10=xa.numpy(), broken_k10=broken.numpy())
    per_k = {"10": {"robust": int((~broken).sum()), "total": images, "robust_accuracy": float((~broken).float().mean()),
                    "robust_ci95": [0.0, 1.0], "random_control": None}}
    summary = {"command": "robustness", "version": version, "images": images, "members": ["swarm-gain"],
               "warnings": [], "seconds": 1.0, "per_k": per_k, "clean_correct": images, "dataset": "mnist",
               "split": "test", "settings": {"dataset": "mnist", "split": "test", "limit": images, "ks": "10",
                                             "version": version, "seed": 0, "eps": 1.0}}
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder, int(broken.sum())


def _refused(capsys, excinfo, text):
    """A refusal as the CLI makes it: exit code 2 and one line on stderr that says what is wrong."""
    err = capsys.readouterr().err.strip()
    return excinfo.value.code == 2 and text in err and "\n" not in err


def test_ship_model_accepts_the_verdict_of_its_weights_and_refuses_another_models(tmp_path, bench_module, capsys):
    ship = bench_module("ship_model")
    model, other = _net(0), _net(1)
    folder, n_broken = _verdict(tmp_path, model)
    verdict = ship.read_verdict(str(folder), "mnist-cnn-l0")
    assert verdict["robustness"]["cli"].startswith("infoswarm robustness --model mnist-cnn-l0 --dataset mnist")
    ship.check_verdict(model, verdict)                       # its own weights: no complaint
    with pytest.raises(SystemExit) as e:
        ship.check_verdict(other, verdict)                   # other weights disagree on labels and breaks
    assert _refused(capsys, e, "does not match these weights")


def test_ship_model_headlines_standard_before_quick_then_images_then_ks(tmp_path, bench_module):
    ship = bench_module("ship_model")
    model = _net(0)
    quick = ship.read_verdict(str(_verdict(tmp_path, model, "quick", 40)[0]), "m")
    std_small = ship.read_verdict(str(_verdict(tmp_path, model, "standard", 20)[0]), "m")
    std_big = ship.read_verdict(str(_verdict(tmp_path, model, "standard", 30)[0]), "m")
    head = ship.headline([quick, std_small, std_big])
    assert head["robustness"]["version"] == "standard" and head["robustness"]["images"] == 30
    assert [v["robustness"]["images"] for v in head["verdicts"]] == [40, 20, 30]


def test_robust_table_merges_verdicts_of_the_same_images_only(bench_module, capsys):
    table = bench_module("robust_table")
    base = {"images": 50, "version": "standard", "members": ["a"], "clean_correct": 47, "dataset": "cifar10",
            "split": "test", "seconds": 10.0, "warnings": [], "per_k": {"10": {"robust": 18}, "20": {"robust": 6}}}
    k5 = {**base, "seconds": 5.0, "per_k": {"5": {"robust": 30}}}
    both = table.merged([base, k5])
    assert both["ks"] == [5, 10, 20] and both["per_k"]["5"]["robust"] == 30 and both["seconds"] == 15.0
    with pytest.raises(SystemExit) as e:
        table.merged([base, {**k5, "images": 100}])
    assert _refused(capsys, e, "different images")
    with pytest.raises(SystemExit) as e:
        table.merged([base, {**k5, "clean_correct": 46}])
    assert _refused(capsys, e, "different clean_correct")


def test_robust_table_names_a_budget_that_replaced_the_versions(tmp_path, bench_module, monkeypatch, capsys):
    import sys

    table = bench_module("robust_table")
    folder, _ = _verdict(tmp_path, _net(0))
    screen = tmp_path / "screen"
    screen.mkdir()
    summary = json.loads((folder / "summary.json").read_text())
    summary["per_k"]["10"]["attacks"] = [{"name": "swarm-gain", "added": 3}]
    (folder / "summary.json").write_text(json.dumps(summary))
    summary["settings"]["budget"] = 2000
    (screen / "summary.json").write_text(json.dumps(summary))
    monkeypatch.setattr(sys, "argv", ["robust_table.py", "--section", "s", "--run", f"verdict={folder}",
                                      "--run", f"screen={screen}"])
    table.main()
    rows = {line.split(" | ")[0]: line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")}
    assert "24, standard (swarm-gain)" in rows["| verdict"]
    assert "24, 2,000 queries per member (swarm-gain)" in rows["| screen"]


@pytest.mark.parametrize("argv, message", [
    (["--k", "1000", "--watch", "sparse-rs"], "eval_k=1000 must lie in 1..784"),
    (["--watch", "pgd0"], "watch=pgd0 must name one or more of"),
])
def test_watch_strength_refuses_bad_input_in_one_line(bench_module, capsys, monkeypatch, argv, message):
    import sys

    bench = bench_module("watch_strength")
    monkeypatch.setattr(sys, "argv", ["watch_strength.py", "--model", "mnist-cnn", "--dataset", "mnist", *argv])
    with pytest.raises(SystemExit) as e:
        bench.main()
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and len(err.strip().splitlines()) == 1


def _csv_run(folder, robust_k10, images=None):
    """A verdict folder with robustness.csv (one row per image, robust at k = 10 as given) and,
    when ``images`` is given, the adversarial.npz that stores them."""
    folder.mkdir()
    lines = ["index,clean_correct,broken_k10"] + [f"{i},1,{0 if r else 1}" for i, r in enumerate(robust_k10)]
    (folder / "robustness.csv").write_text("\n".join(lines) + "\n")
    if images is not None:
        np.savez(folder / "adversarial.npz", x=images)
    return folder


def test_paired_verdicts_aligns_slices_by_start_and_checks_the_images(tmp_path, bench_module, capsys):
    paired = bench_module("paired_verdicts")
    x = np.arange(6 * 4, dtype=np.float32).reshape(6, 1, 2, 2)
    whole = _csv_run(tmp_path / "whole", [1, 1, 0, 0, 1, 1], x)                # test images 0-5
    first = _csv_run(tmp_path / "first", [1, 0, 0], x[:3])                     # images 0-2
    rest = _csv_run(tmp_path / "rest", [1, 0, 0], x[3:])                       # images 3-5, indices 0-2
    assert paired.main([str(whole), f"{first}+{rest}@3"]) == 0
    out = capsys.readouterr().out
    assert "6 shared images" in out and "k=10: robust 4 vs 2; only in the first 3, only in the second 1" in out
    assert "robust in both 1" in out
    with pytest.raises(SystemExit) as e:                                       # forgot @3: images differ
        paired.main([str(whole), str(rest)])
    assert _refused(capsys, e, "test image 0 differs")
    with pytest.raises(SystemExit) as e:                                       # overlapping runs on one side
        paired.main([str(whole), f"{first}+{rest}@2"])
    assert _refused(capsys, e, "appears twice")
    with pytest.raises(SystemExit) as e:
        paired.main([str(whole), f"{rest}@x"])
    assert _refused(capsys, e, "START after @ must be an integer")
    with pytest.raises(SystemExit) as e:
        paired.main([str(whole), str(tmp_path / "missing")])
    assert _refused(capsys, e, "has no robustness.csv")
