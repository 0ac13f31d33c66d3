"""``infoswarm report`` over folders it cannot read, or that are damaged: the unreadable ones are
left out with one warning each naming why, the rest are drawn, a damaged run gets its summary
card marked DAMAGED and nothing else (never drawn as if whole)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from infoswarm.cli import main
from infoswarm.report.html import damage_of, load_run


def attack_run(root: Path, name: str) -> Path:
    run = root / name
    run.mkdir()
    x = np.random.default_rng(0).random((2, 1, 28, 28)).astype(np.float32)
    np.savez(run / "adversarial.npz", x=x, x_adv=x, y=np.array([1, 2]), success=np.array([True, False]))
    (run / "results.csv").write_text("index,label,success,linf,pixel_l0\n0,1,1,0.5,3\n1,2,0,0.2,3\n")
    (run / "summary.json").write_text(json.dumps({"command": "attack", "images": 2, "success_rate": 0.5}))
    (run / "run.json").write_text(json.dumps({"kind": "attack"}))
    return run


DAMAGE = {
    "truncated results.csv": lambda r: (r / "results.csv").write_text("index,label,success\n0,1"),
    "adversarial.npz corrupt": lambda r: (r / "adversarial.npz").write_bytes(b"PK\x03\x04 broken"),
    "gallery.png not a PNG": lambda r: (r / "gallery.png").write_bytes(b"not a png"),
    "summary disagrees with results.csv": lambda r: (r / "summary.json").write_text(
        json.dumps({"command": "attack", "images": 20})),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_run_is_marked_and_not_drawn(damage: str, tmp_path: Path, capsys) -> None:
    good, bad = attack_run(tmp_path, "good"), attack_run(tmp_path, "bad")
    assert damage_of(load_run(good)) is None
    DAMAGE[damage](bad)
    assert damage_of(load_run(bad))
    out = tmp_path / "r.html"
    assert main(["report", str(good), str(bad), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "bad is damaged" in err and "DAMAGED" in err
    page = out.read_text()
    assert "bad (DAMAGED)" in page and "good" in page
    assert page.count("data:image/png") >= 1  # the whole run is still drawn


def test_unreadable_folders_are_left_out_with_a_reason(tmp_path: Path, capsys) -> None:
    good = attack_run(tmp_path, "good")
    (tmp_path / "nosummary").mkdir()
    (tmp_path / "badjson").mkdir()
    (tmp_path / "badjson" / "summary.json").write_text("{not json")
    assert main(["report", str(tmp_path / "missing"), str(tmp_path / "nosummary"), str(tmp_path / "badjson"),
                 str(good), "--json"]) == 0
    cap = capsys.readouterr()
    warnings = [line for line in cap.err.splitlines() if line.startswith("warning: left out")]
    assert len(warnings) == 3 and "does not exist" in warnings[0] and "no summary.json" in warnings[1]
    assert "cannot read" in warnings[2]
    summary = json.loads(cap.out)
    assert [Path(s["run"]).name for s in summary["skipped"]] == ["missing", "nosummary", "badjson"]
    assert Path(summary["path"]) == good / "report.html"   # the default page: in the first readable folder
    assert not (tmp_path / "missing").exists()


def test_no_readable_folder_is_an_error(tmp_path: Path, capsys) -> None:
    (tmp_path / "nosummary").mkdir()
    assert main(["report", str(tmp_path / "nosummary"), str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no summary.json" in err
