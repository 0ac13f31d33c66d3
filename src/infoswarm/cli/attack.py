"""``infoswarm attack``: select vulnerable images and attack them."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch

from ..errors import InputError
from .common import (
    PROBE,
    DataSpec,
    ModelSpec,
    check_labels,
    check_model_for,
    class_names,
    common_args,
    data_args,
    flush_notes,
    inputs_of,
    load_data,
    load_model,
    model_args,
    note,
    positive,
    print_finished,
    print_summary,
    show_progress,
    torch_device,
)

if TYPE_CHECKING:
    from ..pipeline import AttackRequest


def add_parser(sub: Any) -> None:
    """Register ``attack``."""
    p = sub.add_parser(
        "attack", help="select vulnerable images (image FI >= tau) and attack them (SparseSwarm by default)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Select correctly classified images with image FI >= --tau (the paper's rule) "
                    "and attack them; writes adversarial.npz, results.csv, gallery.png, summary.json. "
                    "The default attack is SparseSwarm (k = 10 pixels, values free in [0, 1], 1,000 "
                    "queries, untargeted); --preset paper runs the paper's mFI-PSO with its settings.",
        epilog="examples:\n  infoswarm attack --dataset mnist --model mnist-cnn --split test --limit 500 "
               "--pixels 10 --out runs/a\n"
               "  infoswarm attack --dataset mnist --limit 500 --pixels 20 --target 3 --min-prob 0.9 "
               "--budget 10000 --out runs/t\n"
               "  infoswarm attack --dataset mnist --limit 500 --preset paper --out runs/paper")
    data_args(p)
    model_args(p)
    g = p.add_argument_group("selection of images")
    g.add_argument("--select", default="fi", choices=["fi", "all"],
                   help="which images are attacked: fi: correct images with image FI >= --tau (paper); "
                        "all: every correct image (--pixel-rule chooses the pixels)")
    g.add_argument("--tau", type=float, default=0.01, help="image FI threshold (default 0.01)")
    g = p.add_argument_group("attack")
    g.add_argument("--attack", default=None, choices=list(_attack_names()),
                   help="sparse-swarm (default), mfipso (the paper's swarm) or a baseline; each attack's defaults "
                        "for the options below are its class's (infoswarm.attacks.registry.defaults)")
    g.add_argument("--preset", default=None, choices=["paper"],
                   help="paper: the paper's mFI-PSO as published (element FI >= 0.01 entries, paper bounds, "
                        "L-inf 0.15, 500 particles on MNIST-like data / 200 on CIFAR-10, 10 + 40 iterations, "
                        "target second); flags given explicitly still win")
    g.add_argument("--budget", type=int, default=None,
                   help="model queries per image, for the attacks that use a budget (default 1000)")
    g.add_argument("--prior", default=None, choices=["auto", "uniform", "gain", "saliency", "fi", "fi-eps"],
                   help="sparse-swarm: where fresh pixel locations are drawn (auto = gain: the linearised loss change)")
    g.add_argument("--loss", default=None, choices=["margin", "ce", "paper"],
                   help="sparse-swarm: loss minimised before success (default margin)")
    g.add_argument("--refine", action="store_true", default=None,
                   help="sparse-swarm: after a success, spend leftover queries removing unneeded pixels")
    g.add_argument("--steps", type=int, default=None, help="gradient steps, for the attacks that use them (pgd: 10)")
    k = g.add_mutually_exclusive_group()
    k.add_argument("--pixels", type=int, default=None,
                   help="k pixel locations to perturb (default 10; onepixel: 1)")
    k.add_argument("--fi-threshold", type=float, default=None,
                   help="perturb every channel entry with element FI >= this (the paper's rule, 0.01)")
    g.add_argument("--target", default=None,
                   help="none (untargeted; the default), second (most probable wrong class; mfipso's and jsma's "
                        "default), least-likely (least probable class), random (a wrong class drawn per image "
                        "from --seed and its position), confusion (mfipso), or a class index")
    g.add_argument("--confusion-min", type=int, default=None, help="errors needed for a confusion pair (default 5)")
    g.add_argument("--min-prob", type=float, default=None, help="success needs p(target) >= this")
    g.add_argument("--max-prob", type=float, default=None, help="success needs p(target) <= this")
    g.add_argument("--eps", type=float, default=None,
                   help="L-infinity bound in [0,1] units (default 1 = pure L0 for the sparse attacks, "
                        "0.15 for mfipso, 8/255 for fgsm and pgd)")
    g.add_argument("--bounds", default=None, choices=["box", "paper"],
                   help="mfipso: box (default): |delta| <= eps within [0,1]; paper: delta in [-eps*x, eps*(1-x)]")
    rules = ["fi", "fi-eps", "saliency", "random"]
    g.add_argument("--pixel-rule", default=None, choices=rules,
                   help="mfipso: how the attacked pixels are chosen (default fi, exact); not --select, which "
                        "chooses the images")
    g.add_argument("--fi-eps-scale", type=float, default=None,
                   help="with --pixel-rule fi-eps: input scale of the authors' epsilon cut-off "
                        "(1 for [0,1] units, the default; 255 for the authors' raw-pixel CIFAR-10 setting, "
                        "which --preset paper uses on CIFAR-10)")
    g.add_argument("--particles", type=int, default=None,
                   help="swarm size (sparse-swarm default 1; mfipso default 200; paper: 200 CIFAR, 500 MNIST)")
    g.add_argument("--iterations", type=int, default=None, help="mfipso: swarm iterations (default 10)")
    g.add_argument("--w", type=float, default=None, help="mfipso: inertia (default 0.6)")
    g.add_argument("--c1", type=float, default=None, help="mfipso: cognitive weight (default 2)")
    g.add_argument("--c2", type=float, default=None, help="mfipso: social weight (default 2)")
    g.add_argument("--restart-iterations", type=int, default=None, help="mfipso: second-chance iterations (default 40)")
    g.add_argument("--no-restart", action="store_true", default=None, help="mfipso: skip the paper's restart")
    g.add_argument("--gallery", type=int, default=12, help="images in gallery.png (default 12)")
    g.add_argument("--chunk", type=int, default=64,
                   help="images per checkpointed chunk (default 64); a killed run continues from its last chunk")
    g.add_argument("--keep-checkpoints", action="store_true",
                   help="keep checkpoints/chunk-*.pt after the run finishes (removed by default)")
    common_args(p)
    p.set_defaults(func=cmd_attack, dataset="mnist")


def _attack_names() -> tuple[str, ...]:
    from ..attacks import registry

    return registry.names()


def cmd_attack(args: argparse.Namespace) -> int:
    """``infoswarm attack``. Under ``torchrun`` the selected images are split over the processes
    (:func:`infoswarm.runner.run_attack`) and only rank 0 writes; the process group is left on return."""
    from .. import distributed

    try:
        return _cmd_attack(args)
    finally:
        distributed.shutdown()


@dataclass(frozen=True)
class AttackCommand:
    """``infoswarm attack`` as parsed (:func:`parse_attack`): the ``data`` and ``model`` to load,
    the attack ``run`` (its spec's target is the text ``target``, parsed once the model gives K),
    and the ``device`` and ``batch_size`` flags (the model check's batch size)."""

    data: DataSpec
    model: ModelSpec
    run: AttackRequest
    target: str
    device: str
    batch_size: int | None


def parse_attack(args: argparse.Namespace) -> AttackCommand:
    """The parsed flags ``args`` checked and filled (the preset's values, then the attack's
    defaults) into an :class:`AttackCommand`; a note names the flags the attack ignores."""
    from ..artifacts import AttackSpec
    from ..attacks import registry
    from ..pipeline import AttackRequest

    _ignored_flags(args)
    flags = _resolve_attack(args)
    cls = registry.attack_class(flags["attack"])
    for flag in ("particles", "gallery", "chunk", "batch_size", "pixels", "budget", "steps", "confusion_min"):
        positive(flags[flag], "--" + flag.replace("_", "-"))
    if (flags["iterations"] or 0) < 0 or (flags["restart_iterations"] or 0) < 0:
        raise InputError("--iterations and --restart-iterations must be >= 0", "pass 0 or more")
    if flags["tau"] < 0:
        raise InputError(f"--tau must be >= 0, got {flags['tau']}", "pass e.g. --tau 0.01")
    eps = flags["eps"]
    if eps is not None and not 0 < eps <= 1:
        raise InputError(f"--eps must be positive and at most 1 (pixel units), got {eps:g}",
                         "pass e.g. --eps 0.15")
    params = _params(cls)
    if flags["fi_threshold"] is not None and "fi_threshold" not in params:
        takers = [n for n in registry.names() if "fi_threshold" in _params(registry.attack_class(n))]
        raise InputError(f"--fi-threshold is an option of {', '.join(takers)}", "use --pixels with other attacks")
    spec = AttackSpec(name=flags["attack"], pixels=flags["pixels"], eps=eps, target=flags["target"],
                      min_prob=flags["min_prob"], max_prob=flags["max_prob"], seed=flags["seed"],
                      budget=flags["budget"], steps=flags["steps"], options=_options(flags, params))
    run = AttackRequest(spec=spec, out=args.out, select=args.select, tau=args.tau, chunk=args.chunk,
                        gallery=args.gallery, keep_checkpoints=args.keep_checkpoints, overwrite=args.overwrite,
                        settings=_attack_settings(flags), inputs=tuple(inputs_of(args)), dataset=args.dataset,
                        split=args.split, model=args.model,
                        flags={k: v for k, v in flags.items() if k not in ("func", "json", "out", "overwrite")})
    return AttackCommand(data=DataSpec.of(args), model=ModelSpec.of(args), run=run, target=flags["target"],
                         device=args.device, batch_size=args.batch_size)


def _cmd_attack(args: argparse.Namespace) -> int:
    from .. import data, distributed
    from ..pipeline import attack_images
    from ..report.figures import gallery_figure
    from ..selection import parse_target

    cmd = parse_attack(args)
    run_check = cmd.run.open_run(create=False)
    if run_check.finished and not cmd.run.overwrite:
        return print_finished(args, "attack", "pass --overwrite to run it again")
    device = torch_device(cmd.device)
    ctx = distributed.init(cmd.device)          # under torchrun: join the group, a GPU per process
    device = torch.device(ctx.device) if ctx.active else device
    show = show_progress(args) and distributed.is_main(ctx)
    x8, y = load_data(cmd.data)
    probe = data.to_float(x8[:PROBE])
    model, k = load_model(cmd.model, probe, device)
    check_labels(y, k, cmd.data.dataset)
    target = parse_target(cmd.target, k, name="--target")
    check_pixels(cmd.run.spec.pixels, x8)
    run = replace(cmd.run, spec=replace(cmd.run.spec, target="none" if target is None else target),
                  flags={**cmd.run.flags, "num_classes": k})
    attack = run.spec.build(model, target=target)
    attack.check_model(probe.to(device))                      # gradients, once, before any work
    check_selectable(model, run.select)
    attack_checks(cmd.model, model, x8, y, device, run, target, cmd.batch_size, attack)

    def on_start(folder: Any) -> None:
        if folder.resumed and distributed.is_main(ctx):
            print(f"continuing the attack in {run.out} from its checkpoints", file=sys.stderr, flush=True)
        flush_notes()

    outcome = attack_images(run, attack, model, x8, y, target=target, device=device, ctx=ctx, progress=show,
                            class_names=class_names(cmd.data, k), on_start=on_start, gallery=gallery_figure,
                            run_check=run_check)
    if outcome is None:  # not rank 0: rank 0 merges and writes
        return 0
    print_summary(args, outcome.record.summary, _lines(attack, outcome, run.out))
    return 0


def check_pixels(pixels: int | None, x8: torch.Tensor) -> None:
    """Refuse --pixels above the H x W pixels of the images ``x8`` [N, C, H, W]."""
    hw = int(x8.shape[2] * x8.shape[3])
    if pixels is not None and pixels > hw:
        raise InputError(f"--pixels {pixels} exceeds the {x8.shape[2]}x{x8.shape[3]} = {hw} pixels of an image",
                         f"pass at most {hw}")


def check_selectable(model: torch.nn.Module, select: str) -> None:
    """Refuse --select fi with a query-only model: ranking by Fisher influence needs gradients."""
    from ..attacks.query import is_query_only

    if is_query_only(model) and select == "fi":
        raise InputError("--select fi ranks images by their Fisher influence, which needs gradients that a "
                         "query-only model (ONNX or a plain callable) does not give",
                         "pass --select all (every correctly classified image)")


def attack_checks(model_spec: ModelSpec, model: torch.nn.Module, x8: torch.Tensor, y: torch.Tensor,
                  device: torch.device, request: Any, target: Any, batch_size: int | None, attack: Any) -> Any:
    """Everything ``attack`` checks once its :class:`~infoswarm.pipeline.AttackRequest` is
    built, before any work: the model check (:func:`check_model_for`, at ``batch_size``), the
    time and memory the attack would need (a day at most, what fits), and notes on flags the
    settings ignore and on images the target leaves out."""
    from ..checks import check_memory, check_work

    spec = request.spec
    pixels = spec.pixels
    mc = check_model_for(model_spec, model, x8, y, device, (500, batch_size or 1024))
    q = attack.work_per_image()
    n = max(1, round(len(y) * (mc.accuracy if mc.accuracy is not None else 1.0)))
    check_work(q * n, mc.seconds_per_image, f"--attack {spec.name} on about {n} correctly classified images",
               "lower --budget / --particles / --iterations / --steps, or attack fewer images with --limit")
    options = spec.options or {}
    particles = int(options.get("particles") or 1)
    numel = int(x8[0].numel())
    chunk = min(int(request.chunk or 64), len(y))
    per = particles * chunk * (numel * 4 + 8 * (pixels or numel))
    check_memory(per * 2, f"--particles {particles} on chunks of {chunk} images",
                 "lower --particles or --chunk", device)
    if request.select == "all" and request.tau != 0.01:
        note("--select all attacks every correct image; --tau is ignored")
    if getattr(attack, "restart", None) is False and options.get("restart_iterations") not in (None, 40):
        note("--no-restart skips the restart; --restart-iterations is ignored")
    if isinstance(target, int) and not isinstance(target, bool):
        same = int((y == target).sum())
        if same:
            note(f"--target {target}: the {same} image(s) labelled {target} are left out (they are "
                 "already that class)")
    return mc


def _lines(attack: Any, outcome: Any, out: str) -> list[str]:
    """What ``attack`` prints without --json: the attack, the selection, the rates, the sizes."""
    summary = outcome.record.summary
    return [f"{attack!r}",
            f"selected {len(outcome.selection)} of {outcome.candidates} images ({outcome.selection.describe()})",
            f"success rate {summary['success_rate']:.3f} ({summary['successes']}/{summary['images']}, 95% CI "
            f"{summary['success_ci95'][0]:.3f}-{summary['success_ci95'][1]:.3f}); misclassified "
            f"{summary['misclassified']:.3f} ({summary['misclassified_count']}/{summary['images']}, 95% CI "
            f"{summary['misclassified_ci95'][0]:.3f}-{summary['misclassified_ci95'][1]:.3f})",
            f"L-inf on successes: mean "
            f"{summary['linf_success']['mean'] or 0:.3f}, max {summary['linf_success']['max'] or 0:.3f}; "
            f"pixels per image {summary['pixel_l0_mean']:.1f}; queries {summary['queries_mean']:.0f}",
            f"{summary['seconds']:.1f}s; wrote {out}/{{adversarial.npz, results.csv, gallery.png, summary.json}}"]


OWN_FLAGS: dict[str, str] = {
    "particles": "particles", "prior": "prior", "loss": "loss", "refine": "refine", "iterations": "iterations",
    "w": "w", "c1": "c1", "c2": "c2", "restart_iterations": "restart_iterations", "no_restart": "restart",
    "pixel_rule": "pixel_rule", "bounds": "bounds", "fi_threshold": "fi_threshold", "fi_eps_scale": "fi_eps_scale",
    "confusion_min": "confusion_min", "batch_size": "batch_size"}
"""Flags (argparse dests) that are constructor arguments of some attacks (dest -> keyword;
``--no-restart`` is ``restart=False``). An attack gets those its constructor takes; the others
given are named in a note. Their defaults are the constructor's."""


def _params(cls: type) -> set[str]:
    """The keyword arguments of attack class ``cls``'s constructor."""
    import inspect

    return set(inspect.signature(cls).parameters) - {"self", "model"}


def _options(flags: dict[str, Any], params: set[str]) -> dict[str, Any]:
    """The attack's own keyword arguments: the flags of :data:`OWN_FLAGS` given (or filled by a
    preset) whose keyword its constructor takes."""
    out: dict[str, Any] = {}
    for dest, kw in OWN_FLAGS.items():
        value = flags.get(dest)
        if value is not None and kw in params:
            out[kw] = (not value) if dest == "no_restart" else value
    return out


def _resolve_attack(args: argparse.Namespace) -> dict[str, Any]:
    """The flags ``args`` as a new dict with those left at None filled: the preset's values
    (:func:`infoswarm.presets.paper_attack`), then the attack's defaults for the shared options
    it uses (:func:`infoswarm.attacks.registry.defaults`, its class's); ``args`` is left as parsed."""
    from .. import presets
    from ..attacks import registry

    flags = dict(vars(args))
    if flags["preset"] == "paper":
        if flags["attack"] not in (None, "mfipso"):
            raise InputError(f"--preset paper runs mfipso, not --attack {flags['attack']}",
                             "drop --attack, or drop --preset")
        flags["attack"] = "mfipso"
        paper = presets.paper_attack(flags["dataset"])
        if flags["pixels"] is not None:          # --pixels k replaces the paper's FI threshold
            paper.pop("fi_threshold")
        flag_of = {kw: dest for dest, kw in OWN_FLAGS.items()}
        for kw, value in paper.items():
            dest = flag_of.get(kw, kw)
            if dest == "no_restart":
                continue                     # the paper restarts: the constructor's default
            if dest in flags and flags[dest] is None:
                flags[dest] = value
    flags["attack"] = flags["attack"] or "sparse-swarm"
    cls = registry.attack_class(flags["attack"])
    defaults = registry.defaults(flags["attack"])
    for key in ("pixels", "eps", "budget", "steps"):
        if key in cls.uses and flags[key] is None and not (key == "pixels" and flags["fi_threshold"] is not None):
            flags[key] = defaults.get(key)
    if flags["target"] is None:
        flags["target"] = "none" if defaults.get("target") is None else str(defaults["target"])
    return flags


def _attack_settings(flags: dict[str, Any]) -> dict[str, Any]:
    """What an attack run's results depend on (a rerun with other values is refused)."""
    return {k: v for k, v in sorted(flags.items())
            if k not in ("func", "json", "out", "overwrite", "command", "gallery", "download", "data_root",
                         "num_classes", "keep_checkpoints")}


def _ignored_flags(args: argparse.Namespace) -> None:
    """One note on stderr naming the attack options given that the chosen --attack ignores: a
    shared option not in its class's ``uses``, an own option its constructor does not take."""
    from ..attacks import registry

    attack = "mfipso" if args.preset == "paper" else (args.attack or "sparse-swarm")
    cls = registry.attack_class(attack)
    params = _params(cls)
    ignored = [k for k in ("pixels", "eps", "budget", "steps") if getattr(args, k) is not None and k not in cls.uses]
    ignored += [dest for dest, kw in OWN_FLAGS.items()
                if dest != "batch_size" and getattr(args, dest, None) is not None and kw not in params]
    if (args.target or "").lower() != "confusion" and args.confusion_min is not None \
            and "confusion_min" not in ignored:
        ignored.append("confusion_min")
    if ignored:
        note(f"--attack {attack} ignores " + ", ".join("--" + k.replace("_", "-") for k in ignored))
