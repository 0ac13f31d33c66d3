"""Ship a hardened model into the zoo: weights and a card made from its runs.

    python bench/ship_model.py --name mnist-cnn-l0 --harden RUN [--harden RUN2 ...] --robustness ROBUST_RUN
    python bench/ship_model.py --name cifar10-cnn-l0 --extend --harden NEW_RUN --robustness ROBUST_RUN
    python bench/ship_model.py --name mnist-cnn-l0 --add-verdict --robustness STANDARD_RUN

Copies the last harden run's ``model.safetensors`` to ``src/infoswarm/weights/NAME.safetensors``
and writes ``NAME.json``: the base model's recipe (the architecture's training), every harden
stage's command, settings, epochs and seconds, the test accuracy measured here on the whole test
split, and the robust accuracy per k read from the ``infoswarm robustness`` run (with its image
count, version and command). ``--robustness`` may be given more than once (e.g. a ``quick`` and a
``standard`` verdict): the card keeps each under ``verdicts``, and its headline ``robust_accuracy``
is the strongest (``standard`` before ``quick``, then the most images, then the most k). Every verdict is checked
against the weights being shipped before anything is written: the model must classify the
verdict's clean images as the verdict says, and misclassify each adversarial image it reports as
a break (a verdict of other weights is refused in one line). ``--extend`` keeps the stages of the
zoo's current card (for weights whose earlier run folders are gone) and appends the new ones;
``--add-verdict`` ships no weights and adds the verdicts to the current card. Nothing is typed by hand: every number comes from a file a command
wrote, or from a measurement made by this script.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from infoswarm import __version__, data, training, zoo  # noqa: E402

from common import fail  # noqa: E402  (bench/ is not a package)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True, help="zoo name (an entry of infoswarm.zoo.ZOO)")
    p.add_argument("--harden", action="append", default=[],
                   help="harden run folder(s), in training order; FOLDER:last takes the last epoch's weights "
                        "from its checkpoint (what --keep last keeps) instead of the kept epoch's, also of a run "
                        "stopped before its last epoch (the card says so: stopped_early)")
    p.add_argument("--command", action="append", default=None,
                   help="the command of each stage, where its folder has no card.json (a run made by the same "
                        "library call from a script)")
    p.add_argument("--extend", action="store_true",
                   help="the --harden runs continued the zoo's current weights: keep its card's stages before them")
    p.add_argument("--robustness", action="append", required=True,
                   help="infoswarm robustness run folder(s) of the final weights (repeat for several verdicts)")
    p.add_argument("--add-verdict", action="store_true",
                   help="ship no weights: check the --robustness verdicts against the zoo's current weights and "
                        "add them to its card")
    args = p.parse_args()
    if args.name not in zoo.ZOO:
        fail(f"unknown zoo name {args.name!r}; use one of {', '.join(zoo.ZOO)}")
    entry = zoo.ZOO[args.name]
    verdicts = [read_verdict(folder, args.name) for folder in args.robustness]
    if args.add_verdict:
        if args.harden or args.extend:
            fail("--add-verdict ships no weights: leave out --harden and --extend")
        add_verdicts(args.name, verdicts)
        return
    if not args.harden:
        fail("name the harden run(s) with --harden (or use --add-verdict to add a verdict to the card)")
    stages: list[dict] = []
    if args.extend:
        current = zoo.card(args.name)
        if current is None:
            fail(f"--extend: {args.name} has no card to extend; ship it without --extend")
        stages = list(current.get("hardening", []))
    weights: dict[str, torch.Tensor] | None = None
    for i, spec in enumerate(args.harden):
        folder, _, which = spec.partition(":")
        if (Path(folder) / "summary.json").is_file():
            summary = json.loads((Path(folder) / "summary.json").read_text())
        elif which == "last":        # a run stopped after an epoch: its settings and its checkpoint's history
            state = torch.load(Path(folder) / "checkpoints" / "train.pt", weights_only=True)
            settings = json.loads((Path(folder) / "run.json").read_text())["settings"]
            summary = {"settings": settings, "epochs_run": state["epoch"], "stopped": True,
                       "train_seconds": sum(r["seconds"] for r in state["history"]), "history": state["history"],
                       "before": None, "after": None}
        else:
            fail(f"{folder} has no summary.json (an unfinished run): pass {folder}:last")
        card_file = Path(folder) / "card.json"
        command = json.loads(card_file.read_text()).get("command") if card_file.is_file() else args.command[i]
        after, kept = summary["after"], summary.get("kept_epoch")
        if which == "last":
            state = torch.load(Path(folder) / "checkpoints" / "train.pt", weights_only=True)
            weights = state["model"]
            row = state["history"][-1]
            kept = row["epoch"]
            after = {"clean_acc": row["test_acc"], "val_clean": row["val_clean"], "val_robust": row["val_robust"]}
        else:
            weights = None
        stages.append({"command": command, "settings": summary["settings"], "weights": which or "kept",
                       "epochs_run": summary.get("epochs_run"), "kept_epoch": kept,
                       "stopped_early": bool(summary.get("stopped")),
                       "train_seconds": summary.get("train_seconds"), "collapse": summary.get("collapse", []),
                       "history": summary.get("history"), "watch_before": summary["before"], "watch_after": after})
    dest = zoo.weights_path(args.name)
    tmp = dest.with_suffix(".tmp")
    if weights is not None:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp))
    else:
        shutil.copyfile(Path(args.harden[-1].partition(":")[0]) / "model.safetensors", tmp)
    try:                                # refuse a verdict of other weights before anything is replaced
        model = zoo.load(args.name, weights=tmp)
        for verdict in verdicts:
            check_verdict(model, verdict)
    except BaseException:
        tmp.unlink()
        raise
    tmp.replace(dest)
    x, y = data.load(entry.dataset, "test")
    base = zoo.card(args.name.rsplit("-l0", 1)[0]) or {}
    card = {
        "name": args.name, "architecture": type(model).__name__, "dataset": entry.dataset,
        "base": base.get("name"), "recipe": base.get("recipe"), "seed": base.get("seed", 0),
        "test_accuracy": training.accuracy(model, x, y), "test_images": len(y),
        "hardening": stages, "train_seconds": sum(s["train_seconds"] or 0 for s in stages),
        **headline(verdicts),
        "machine": f"{platform.processor() or platform.machine()}, 2 shared CPU cores", "torch": torch.__version__,
        "infoswarm": __version__,
    }
    write_card(args.name, card)
    print(json.dumps({"name": args.name, "test_accuracy": card["test_accuracy"], "robust": card["robust_accuracy"]},
                     indent=1))


def write_card(name: str, card: dict) -> None:
    """Replace the zoo card of ``name`` atomically (a temporary file, then a rename)."""
    path = zoo.weights_path(name).with_suffix(".json")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def read_verdict(folder: str, name: str) -> dict:
    """One ``infoswarm robustness`` run: its summary's version, images, members, warnings and per-k
    figures, the command line that reproduces it on the zoo model ``name``, and the folder (for
    the check against the weights)."""
    path = Path(folder) / "summary.json"
    if not path.is_file() or not (Path(folder) / "adversarial.npz").is_file():
        fail(f"{folder} has no summary.json and adversarial.npz: name a finished `infoswarm robustness` run")
    robust = json.loads(path.read_text())
    if robust.get("command") != "robustness":
        fail(f"{folder} is not an `infoswarm robustness` run (its summary says {robust.get('command')!r})")
    per_k = {k: {key: v.get(key) for key in ("robust", "total", "robust_accuracy", "robust_ci95", "random_control")}
             for k, v in robust["per_k"].items()}
    info = {k: robust.get(k) for k in ("version", "images", "limit", "members", "command", "warnings", "seconds")
            if k in robust}
    st = robust.get("settings") or {}
    if st:                              # the command line that reproduces it (on the zoo's weights, once shipped)
        flags = [("--dataset", st.get("dataset")), ("--split", st.get("split")), ("--limit", st.get("limit")),
                 ("--ks", st.get("ks")), ("--version", st.get("version")), ("--attacks", st.get("attacks")),
                 ("--budget", st.get("budget")), ("--seed", st.get("seed"))]
        eps = st.get("eps")
        flags += [("--eps", eps if eps not in (None, 1.0) else None), ("--targeted", "" if st.get("targeted") else None)]
        info["cli"] = " ".join([f"infoswarm robustness --model {name}"] + [f"{f} {v}".strip() for f, v in flags
                                                                            if v is not None])
    return {"folder": folder, "robustness": info, "robust_accuracy": per_k}


def check_verdict(model: torch.nn.Module, verdict: dict) -> None:
    """Refuse a verdict that was not measured on ``model``: its clean images must be classified as
    it says, and every adversarial image it reports as a break must be misclassified. A logit
    margin under 1e-4 is a tie (the verdict ran at another batch size) and is not counted."""
    import numpy as np

    npz = np.load(Path(verdict["folder"]) / "adversarial.npz")
    x, y = torch.from_numpy(npz["x"]).float(), torch.from_numpy(npz["y"]).long()

    def margin(inputs: torch.Tensor) -> torch.Tensor:      # > 0: correct, < 0: misclassified
        with torch.no_grad():
            z = torch.cat([model(inputs[i:i + 256]) for i in range(0, len(inputs), 256)])
        true = z.gather(1, y.view(-1, 1)).squeeze(1)
        other = z.scatter(1, y.view(-1, 1), float("-inf")).amax(1)
        return true - other

    clean = margin(x)
    right, wrong_clean = clean > 1e-4, clean < -1e-4          # clear calls; ties are not judged
    disagree = 0
    for k in verdict["robust_accuracy"]:
        broken = torch.from_numpy(npz[f"broken_k{k}"]).bool()
        adv = margin(torch.from_numpy(npz[f"x_adv_k{k}"]).float())
        disagree += int((broken & right & (adv > 1e-4)).sum())   # a reported break the model resists
        disagree += int((~broken & wrong_clean).sum())           # reported robust, but clean-misclassified
    if len(y) != int(verdict["robustness"].get("images", len(y))) or disagree:
        fail(f"{verdict['folder']}: the verdict does not match these weights ({disagree} of its "
                         f"per-image calls disagree with them): measure the weights being shipped")


def headline(verdicts: list[dict]) -> dict:
    """The card's ``robust_accuracy`` and ``robustness`` from the strongest verdict (``standard``
    before ``quick``, then the most images, then the most k), and every verdict under ``verdicts``."""
    rank = {"standard": 1, "quick": 0}
    best = max(verdicts, key=lambda v: (rank.get(v["robustness"].get("version"), -1), v["robustness"].get("images", 0),
                                        len(v["robust_accuracy"])))
    return {"robust_accuracy": best["robust_accuracy"], "robustness": best["robustness"],
            "verdicts": [{k: v[k] for k in ("robustness", "robust_accuracy")} for v in verdicts]}


def add_verdicts(name: str, verdicts: list[dict]) -> None:
    """Check ``verdicts`` against the zoo's current weights of ``name`` and add them to its card."""
    card = zoo.card(name)
    if card is None:
        fail(f"{name} has no card: ship it with --harden first")
    model = zoo.load(name)
    for verdict in verdicts:
        check_verdict(model, verdict)
    old = card.get("verdicts") or [{"robustness": card["robustness"], "robust_accuracy": card["robust_accuracy"]}]
    new = [{k: v[k] for k in ("robustness", "robust_accuracy")} for v in verdicts]
    def same(a: dict, b: dict) -> bool:          # one verdict read twice (a new reading replaces the card's)
        return (a["robust_accuracy"] == b["robust_accuracy"]
                and all(a["robustness"].get(k) == b["robustness"].get(k) for k in ("version", "images", "members")))

    merged = [{**v, "folder": ""} for v in [o for o in old if not any(same(o, n) for n in new)] + new]
    card.update(headline(merged))
    write_card(name, card)
    print(json.dumps({"name": name, "robustness": card["robustness"], "robust": card["robust_accuracy"]}, indent=1))


if __name__ == "__main__":
    main()
