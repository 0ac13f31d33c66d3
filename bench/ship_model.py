"""Ship a hardened model into the zoo: weights and a card made from its runs.

    python bench/ship_model.py --name mnist-cnn-l0 --harden RUN [--harden RUN2 ...] --robustness ROBUST_RUN
    python bench/ship_model.py --name cifar10-cnn-l0 --extend --harden NEW_RUN --robustness ROBUST_RUN

Copies the last harden run's ``model.safetensors`` to ``src/infoswarm/weights/NAME.safetensors``
and writes ``NAME.json``: the base model's recipe (the architecture's training), every harden
stage's command, settings, epochs and seconds, the test accuracy measured here on the whole test
split, and the robust accuracy per k read from the ``infoswarm robustness`` run (with its image
count, version and command). ``--extend`` keeps the stages of the zoo's current card (for weights
whose earlier run folders are gone) and appends the new ones. Nothing is typed by hand: every number comes from a file a command
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from infoswarm import __version__, data, training, zoo  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True, help="zoo name (an entry of infoswarm.zoo.ZOO)")
    p.add_argument("--harden", action="append", required=True,
                   help="harden run folder(s), in training order; FOLDER:last takes the last epoch's weights "
                        "from its checkpoint (what --keep last keeps) instead of the kept epoch's, also of a run "
                        "stopped before its last epoch (the card says so: stopped_early)")
    p.add_argument("--command", action="append", default=None,
                   help="the command of each stage, where its folder has no card.json (a run made by the same "
                        "library call from a script)")
    p.add_argument("--extend", action="store_true",
                   help="the --harden runs continued the zoo's current weights: keep its card's stages before them")
    p.add_argument("--robustness", required=True, help="infoswarm robustness run folder of the final weights")
    args = p.parse_args()
    if args.name not in zoo.ZOO:
        raise SystemExit(f"unknown zoo name {args.name!r}; use one of {', '.join(zoo.ZOO)}")
    entry = zoo.ZOO[args.name]
    stages: list[dict] = []
    if args.extend:
        current = zoo.card(args.name)
        if current is None:
            raise SystemExit(f"--extend: {args.name} has no card to extend; ship it without --extend")
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
            raise SystemExit(f"{folder} has no summary.json (an unfinished run): pass {folder}:last")
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
    robust = json.loads((Path(args.robustness) / "summary.json").read_text())
    dest = zoo.weights_path(args.name)
    if weights is not None:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in weights.items()}, str(dest))
    else:
        shutil.copyfile(Path(args.harden[-1].partition(":")[0]) / "model.safetensors", dest)
    model = zoo.load(args.name)
    x, y = data.load(entry.dataset, "test")
    base = zoo.card(args.name.rsplit("-l0", 1)[0]) or {}
    per_k = {k: {key: v.get(key) for key in ("robust", "total", "robust_accuracy", "robust_ci95", "random_control")}
             for k, v in robust["per_k"].items()}
    card = {
        "name": args.name, "architecture": type(model).__name__, "dataset": entry.dataset,
        "base": base.get("name"), "recipe": base.get("recipe"), "seed": base.get("seed", 0),
        "test_accuracy": training.accuracy(model, x, y), "test_images": len(y),
        "hardening": stages, "train_seconds": sum(s["train_seconds"] or 0 for s in stages),
        "robust_accuracy": per_k,
        "robustness": {k: robust.get(k) for k in ("version", "images", "limit", "members", "command", "warnings")
                       if k in robust},
        "machine": f"{platform.processor() or platform.machine()}, 2 shared CPU cores", "torch": torch.__version__,
        "infoswarm": __version__,
    }
    dest.with_suffix(".json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    print(json.dumps({"name": args.name, "test_accuracy": card["test_accuracy"], "robust": per_k}, indent=1))


if __name__ == "__main__":
    main()
