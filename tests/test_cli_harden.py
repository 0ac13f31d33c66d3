"""`infoswarm harden` / `evaluate` end to end on a small slice of real MNIST: a run killed with
SIGKILL at an attack chunk and again after an epoch, then restarted with the same command, ends
bitwise equal to an uninterrupted run; bad input leaves existing runs untouched."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from infoswarm import training, zoo
from infoswarm.artifacts import HardenRun
from infoswarm.cli import main
from infoswarm.hardening import HardenConfig

from conftest import mnist_npz

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def npz(tmp_path_factory) -> Path:
    """1,200 MNIST training and 300 test images as a user .npz dataset."""
    return mnist_npz(tmp_path_factory.mktemp("data") / "mini.npz", 1200, 300)


def _args(npz: Path, out: Path, *extra: str) -> list[str]:
    return ["harden", "--dataset", str(npz), "--model", "mnist-cnn", "--pixels", "20", "--particles", "10",
            "--pixel-rule", "saliency", "--iterations", "3", "--restart-iterations", "0", "--bounds", "box",
            "--eps", "0.5",
            "--tau", "0.001", "--limit", "200", "--epochs", "3", "--lr", "0.01", "--milestones", "2",
            "--eval-images", "12", "--chunk", "8", "--batch-size", "64", "--out", str(out), *extra]


def _kill_when(args: list[str], path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "infoswarm", *args], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not path.exists():
        assert proc.poll() is None, f"run ended before {path.name}: {proc.stderr.read().decode()[-300:]}"
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _table(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


def _strip(summary: dict) -> dict:
    out = {k: v for k, v in summary.items() if "seconds" not in k and k != "resumed"}
    out["history"] = [{k: v for k, v in r.items() if k != "seconds"} for r in summary["history"]]
    return out


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.subprocess
def test_killed_run_resumes_to_the_same_result(npz, tmp_path, capsys, one_thread) -> None:
    ref, out = tmp_path / "ref", tmp_path / "killed"
    assert main(_args(npz, ref)) == 0
    _kill_when(_args(npz, out), out / "checkpoints" / "attack-train-0000008-0000016.pt")
    assert not (out / "summary.json").exists()
    _kill_when(_args(npz, out), out / "checkpoints" / "train.pt")
    assert not (out / "summary.json").exists()
    capsys.readouterr()
    assert main(_args(npz, out)) == 0
    assert "continuing" in capsys.readouterr().out
    assert (ref / "model.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()
    assert _table(ref / "metrics.csv") == _table(out / "metrics.csv")
    a, b = (json.loads((d / "summary.json").read_text()) for d in (ref, out))
    assert _strip(a) == _strip(b) and b["resumed"]
    record = HardenRun.load(ref)                       # the record reads back what the command wrote
    assert record.summary == a and len(record.adversarial["y"]) == a["adversarial_added"]
    with np.load(ref / "adversarial-train.npz") as za, np.load(out / "adversarial-train.npz") as zb:
        assert all(np.array_equal(za[k], zb[k]) for k in za.files)
    assert a["selected"] > 0 and a["adversarial_added"] > 0 and len(a["history"]) == 3
    assert set(a["before"]) == set(a["after"]) == {"clean_acc", "reattack_success", "adv_test_acc",
                                                   "reattack_train_success"}
    # The training-image re-attack on the original model is the hardening attack itself on the
    # first images it attacked: same successes (same seed, same per-image positions).
    m = a["eval_train_images"]
    sel = torch.load(ref / "checkpoints" / "selection.pt", weights_only=True)["index"]
    with np.load(ref / "adversarial-train.npz") as z:
        fooled = set(z["dataset_index"].tolist())
    assert 0 < m <= 12 and a["before"]["reattack_train_success"] == pytest.approx(
        sum(int(i) in fooled for i in sel[:m]) / m)

    # Finished: running it again does nothing; other settings are refused, the run untouched.
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    capsys.readouterr()
    assert main(_args(npz, out)) == 0
    assert "nothing to do" in capsys.readouterr().err
    assert main(_args(npz, out, "--seed", "1")) == 2
    err = capsys.readouterr().err
    assert "resume settings differ" in err and "seed" in err and len(err.strip().splitlines()) == 1
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == stamp
    assert oct((out / "summary.json").stat().st_mode & 0o777) != "0o600"  # usual file mode

    # --overwrite redoes a finished run from scratch (same result: the run is deterministic).
    assert main(_args(npz, out, "--overwrite")) == 0
    assert (out / "summary.json").stat().st_mtime_ns > stamp[out / "summary.json"]
    assert (ref / "model.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()

    # evaluate: the original model on the attack images it was beaten by has accuracy 0.
    attack = tmp_path / "attack"
    assert main(["attack", "--attack", "mfipso", "--dataset", str(npz), "--model", "mnist-cnn", "--limit", "60",
                 "--pixels", "20", "--particles", "20", "--iterations", "5", "--restart-iterations", "0",
                 "--eps", "0.5",
                 "--tau", "0", "--out", str(attack)]) == 0
    for weights, name in ((None, "e0"), (ref / "model.safetensors", "e1")):
        extra = ["--weights", str(weights)] if weights else []
        assert main(["evaluate", "--model", "mnist-cnn", *extra, "--against", str(attack),
                     "--baselines", "sparse-rs", "--out", str(tmp_path / name)]) == 0
    e0 = json.loads((tmp_path / "e0" / "summary.json").read_text())
    made = json.loads((attack / "summary.json").read_text())
    if made["success_rate"] > 0:
        assert e0["adv_acc"] == 0.0
    assert e0["reattack"][0]["attack"] == "mfipso"
    assert abs(e0["reattack"][0]["success_rate"] - made["success_rate"]) < 1e-9  # same model, same seed
    assert [r["attack"] for r in e0["reattack"]] == ["mfipso", "sparse-rs"]


@pytest.mark.realdata
@pytest.mark.parametrize("extra, message", [
    (["--protect", "3:3"], "equal classes"),
    (["--protect", "3:12"], "class 12"),
    (["--protect", "3-8"], "TRUE:TARGET"),
    (["--method", "pgd", "--protect", "3:8"], "mFI-PSO method"),
    (["--method", "none", "--protect", "3:8"], "mFI-PSO method"),
    (["--milestones", "a,b"], "--milestones"),
])
def test_bad_harden_input_writes_nothing(npz, tmp_path, capsys, extra, message) -> None:
    out = tmp_path / "h"
    assert main(_args(npz, out, *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


@pytest.mark.realdata
def test_harden_refuses_a_folder_with_another_runs_files(npz, tmp_path, capsys) -> None:
    out = tmp_path / "a"
    out.mkdir()
    (out / "results.csv").write_text("index\n1\n")
    assert main(_args(npz, out)) == 2
    assert "another run's files" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["results.csv"]


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.subprocess
def test_harden_under_torchrun_with_two_processes(npz, tmp_path, one_thread) -> None:
    """2 CPU processes (gloo): attack chunks shared out, fine-tuning under DDP. The attack part
    is deterministic per image, so the adversarial images equal a single-process run's."""
    single, multi = tmp_path / "single", tmp_path / "multi"
    assert main(_args(npz, single)) == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "infoswarm", *_args(npz, multi)]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-800:]
    a, b = (json.loads((d / "summary.json").read_text()) for d in (single, multi))
    assert b["world_size"] == 2 and a["selected"] == b["selected"]
    assert a["adversarial_added"] == b["adversarial_added"]
    with np.load(single / "adversarial-train.npz") as za, np.load(multi / "adversarial-train.npz") as zb:
        assert all(np.array_equal(za[k], zb[k]) for k in za.files)
    assert abs(a["after"]["clean_acc"] - b["after"]["clean_acc"]) < 0.02
    assert len(b["history"]) == 3 and (multi / "model.safetensors").is_file()


@pytest.mark.realdata
@pytest.mark.slow
def test_control_method_none_is_plain_fine_tuning(npz, tmp_path, one_thread) -> None:
    out = tmp_path / "none"
    assert main(_args(npz, out, "--method", "none", "--epochs", "1", "--milestones", "1")) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["selected"] == 0 and s["adversarial_added"] == 0 and s["attack_success_rate"] is None
    assert s["eval_train_images"] > 0 and s["before"]["reattack_train_success"] is not None
    # the same schedule run directly on the clean training split gives the same weights
    with np.load(npz) as z:
        x8, y = torch.from_numpy(z["x_train"]), torch.from_numpy(z["y_train"]).long()
    model = zoo.load("mnist-cnn")
    cfg = HardenConfig(epochs=1, lr=0.01, milestones=(1,), batch_size=64)
    training.train(model, x8.float() / 255.0, y, cfg.recipe(), seed=0)
    saved = load_file(str(out / "model.safetensors"))
    state = model.state_dict()
    assert set(saved) == set(state) and all(torch.equal(saved[k], state[k]) for k in state)
    assert not torch.equal(state["fc2.weight"], zoo.load("mnist-cnn").state_dict()["fc2.weight"])  # it trained


def _sparse(npz: Path, out: Path, *extra: str) -> list[str]:
    return ["harden", "--method", "sparse", "--dataset", str(npz), "--model", "mnist-cnn", "--limit", "600",
            "--holdout", "200", "--eval-images", "16", "--eval-queries", "10", "--epochs", "2", "--k-train", "20",
            "--inner-steps", "1", "--batch-size", "100", "--out", str(out), *extra]


@pytest.mark.slow
def test_sparse_method_trains_watches_and_writes_a_harden_run(npz, tmp_path, capsys, one_thread) -> None:
    out = tmp_path / "sparse"
    assert main(_sparse(npz, out)) == 0
    text = capsys.readouterr().out
    assert "sparse: 2 epochs on 400 images at k_train=20 (swap)" in text and "watch set" in text
    run = HardenRun.load(out)
    assert run.summary["method"] == "sparse" and run.summary["settings"]["k_train"] == 20
    assert [r["epoch"] for r in run.summary["history"]] == [1, 2]
    rows = _table(out / "metrics.csv")
    assert {"val_clean", "val_robust", "test_acc", "inner_forward", "inner_backward"} <= set(rows[0])
    assert run.card["name"] == "mnist-cnn-sparse" and run.card["command"].startswith("infoswarm ")
    weights = load_file(str(out / "model.safetensors"))
    model = zoo.load("mnist-cnn")
    kept = run.summary["kept_epoch"]
    if kept:  # the saved weights are the kept epoch's, not the start's
        assert any(not torch.equal(v, model.state_dict()[k]) for k, v in weights.items())
    # the same command again: finished, nothing to do; other settings: refused, nothing lost
    assert main(_sparse(npz, out)) == 0
    before = (out / "summary.json").read_bytes()
    assert main(_sparse(npz, out, "--beta", "6")) == 2
    assert "resume settings differ" in capsys.readouterr().err
    assert (out / "summary.json").read_bytes() == before


@pytest.mark.parametrize("extra, message", [
    (["--k-train", "0"], "--k-train 0 must lie in 1..784"),
    (["--k-train", "785"], "--k-train 785 must lie in 1..784"),
    (["--beta", "-1"], "beta must be >= 0"),
    (["--inner", "fgsm"], "invalid choice: 'fgsm'"),
    (["--corner", "near"], "invalid choice: 'near'"),
    (["--from", "cifar10-cnn"], "cifar10-cnn is made for cifar10, not mnist"),
    (["--from", "resnet-9000"], "--from 'resnet-9000' is not a zoo model"),
    (["--holdout", "600"], "--holdout 600 must leave training images"),
    (["--watch", "pgd0"], "--watch pgd0 must name one or more of sparse-rs, swarm-gain, swarm-uniform"),
    (["--watch", "sparse-rs,sparse-rs"], "must name one or more of"),
])
def test_bad_sparse_input_writes_nothing(extra, message, tmp_path, capsys) -> None:
    out = tmp_path / "never"
    args = ["harden", "--method", "sparse", "--dataset", "mnist", "--limit", "600", "--out", str(out), *extra]
    try:
        rc = main(args)
    except SystemExit as e:                                           # argparse's own refusals
        rc = e.code
    assert rc == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
