"""What every command shares: the argument groups, the typed data and model flags
(:class:`DataSpec`, :class:`ModelSpec`), the device, data and model loading with their up-front
checks, notes held until the checks pass, printing the summary, the run-folder lock and the
checks every command gets before it runs."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import torch

from ..errors import InputError


class Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in one line with exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message}; see `{self.prog} --help`", file=sys.stderr)
        sys.exit(2)


def common_args(p: argparse.ArgumentParser, out_required: bool = True) -> None:
    """--out, --overwrite, --device, --seed, --batch-size and --json."""
    g = p.add_argument_group("common options")
    g.add_argument("--out", required=out_required, help="output folder (written atomically)")
    g.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    g.add_argument("--device", default="auto", type=_device_name,
                   help="torch device: auto (the default: cuda when a CUDA device is present, else cpu), cpu, cuda, "
                        "cuda:N")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.add_argument("--batch-size", type=int, default=None, help="images per batch")
    g.add_argument("--threads", type=int, default=None,
                   help="intra-op CPU threads (default: 1 for attack, robustness and demo: results bit for bit the "
                        "same across chunkings and machines' loads, and no slowdown when other programs hold the "
                        "cores, BENCHMARKS.md section cli-cpu; torch's own choice for the other commands; "
                        "OMP_NUM_THREADS, when set, replaces either default)")
    g.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")


def _device_name(text: str) -> str:
    """--device as parsed: ``auto`` becomes the one device of the whole command (and of its child
    commands), cuda when a CUDA device is present, else cpu; other names are checked later
    (:func:`torch_device`)."""
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return text


def data_args(p: argparse.ArgumentParser, default_split: str = "test") -> None:
    """--dataset, --split, --data-root, --download and --limit."""
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default=None,
                   help="mnist, fashion-mnist, cifar10, or a path to an .npz / image folder")
    g.add_argument("--split", default=default_split, choices=["train", "test"])
    g.add_argument("--data-root", default=None, help="extra folder to look for dataset files in")
    g.add_argument("--download", action="store_true",
                   help="download the official files (checked by SHA-256) if no local copy exists")
    g.add_argument("--limit", type=int, default=None, help="use only the first N images")


def model_args(p: argparse.ArgumentParser) -> None:
    """--model, --weights and --outputs."""
    g = p.add_argument_group("model")
    g.add_argument("--model", default="mnist-cnn",
                   help="zoo name; path/to/file.py:ClassName (an nn.Module, with --weights); path/to/file.py:name "
                        "of a plain function (query-only); a TorchScript file; or an .onnx file (query-only: "
                        "the attacks that need no gradients)")
    g.add_argument("--weights", default=None,
                   help=".safetensors weights, or a .pt/.pth state dict (torch.save(model.state_dict()); read "
                        "weights-only), for --model")
    g.add_argument("--outputs", default="logits", choices=["logits", "probs"],
                   help="what the model returns: logits (default) or probabilities (then log is used)")
    g.add_argument("--mean", type=_floats, default=None,
                   help="the per-channel mean the model standardises its inputs with, e.g. 0.4914,0.4822,0.4465 "
                        "(with --std): the model is wrapped to take [0, 1] images")
    g.add_argument("--std", type=_floats, default=None, help="the per-channel std to go with --mean")


def _floats(text: str) -> tuple[float, ...]:
    """Comma-separated numbers (argparse type of --mean and --std)."""
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def torch_device(name: str) -> torch.device:
    """The torch device --device names (``auto``: cuda when a CUDA device is present, else cpu),
    refused in one line when it cannot run a model here."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown --device {name!r}", "use cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda", "mps", "xpu"):  # e.g. meta: a valid torch device that computes nothing
        raise InputError(f"--device {name!r} cannot run a model", "use cpu, cuda or cuda:N")
    for kind, backend in (("mps", getattr(torch.backends, "mps", None)), ("xpu", getattr(torch, "xpu", None))):
        if dev.type == kind and (backend is None or not backend.is_available()):
            raise InputError(f"--device {name} but no {kind.upper()} device is available here", "use --device cpu")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda but no CUDA device is available", "use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(f"--device {name} but only {torch.cuda.device_count()} CUDA device(s) are visible",
                         f"use cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    return dev


_NOTES: list[str] = []


def note(msg: str, kind: str = "note") -> None:
    """A one-line note for the user (an ignored flag, a model switched to eval mode); ``kind``
    ``"warning"`` for results that may mean little (accuracy near chance). Notes are held until
    the command's checks have passed (:func:`flush_notes`), so bad input still gets exactly one
    line, and dropped when the command fails."""
    from ..checks import printable

    _NOTES.append(f"{kind}: {printable(msg)}")


def flush_notes() -> None:
    """Print the held notes on stderr (called when the real work starts, and at the end). Under
    ``torchrun`` only rank 0 prints them: every rank runs the same checks, so the other ranks'
    notes are copies (the RANK variable is read because the process group may not exist yet)."""
    if _rank() == 0:
        for line in _NOTES:
            print(line, file=sys.stderr, flush=True)
    _NOTES.clear()


def _rank() -> int:
    """This process's torchrun rank (0 outside torchrun or when RANK is not a number)."""
    import os

    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def clear_notes() -> None:
    """Drop the held notes (the command failed: its one error line is all the user sees)."""
    _NOTES.clear()


def positive(value: int | None, flag: str) -> None:
    """Refuse a ``value`` below 1 given for ``flag`` (None: not given, accepted)."""
    if value is not None and value <= 0:
        raise InputError(f"{flag} must be positive, got {value}", f"pass {flag} 1 or more")


@dataclass(frozen=True)
class DataSpec:
    """The data flags of a command (:func:`data_args`): ``dataset`` (a name or a path),
    ``split``, ``root`` (--data-root), ``download``, ``limit`` (first N images, None: all) and
    ``quiet`` (--json: no note on an image folder's class mapping)."""

    dataset: str
    split: str = "test"
    root: str | None = None
    download: bool = False
    limit: int | None = None
    quiet: bool = False

    @classmethod
    def of(cls, args: argparse.Namespace, dataset: str | None = None) -> DataSpec:
        """The spec of the parsed flags ``args`` (``dataset`` in place of --dataset when given)."""
        return cls(dataset=dataset if dataset is not None else args.dataset, split=getattr(args, "split", "test"),
                   root=getattr(args, "data_root", None), download=bool(getattr(args, "download", False)),
                   limit=getattr(args, "limit", None), quiet=bool(getattr(args, "json", False)))


@dataclass(frozen=True)
class ModelSpec:
    """The model flags of a command (:func:`model_args`): ``model`` (a zoo name, file.py:Class,
    file.py:function, TorchScript or .onnx file), ``weights``, ``outputs`` ("logits" or "probs"),
    ``mean``/``std`` (per-channel normalisation the model is wrapped with, or None) and
    ``dataset``, the data it is used on (named in messages, checked against a zoo model's)."""

    model: str
    weights: str | None = None
    outputs: str = "logits"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    dataset: str | None = None

    @classmethod
    def of(cls, args: argparse.Namespace, dataset: str | None = None) -> ModelSpec:
        """The spec of the parsed flags ``args`` (``dataset`` in place of --dataset when given)."""
        return cls(model=str(args.model), weights=getattr(args, "weights", None),
                   outputs=getattr(args, "outputs", "logits"), mean=getattr(args, "mean", None),
                   std=getattr(args, "std", None),
                   dataset=dataset if dataset is not None else getattr(args, "dataset", None))


def load_data(spec: DataSpec, split: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The images (uint8 [N, C, H, W]) and labels (int64 [N]) of ``spec`` (its ``split``, or
    ``split``), cut to its limit; an image folder's class mapping is noted."""
    from .. import data

    positive(spec.limit, "--limit")
    x, y = data.load(spec.dataset, split or spec.split, root=spec.root, download=spec.download)
    if spec.limit is not None:
        x, y = x[: spec.limit], y[: spec.limit]
    if len(x) == 0:
        raise InputError(f"dataset {spec.dataset} {spec.split} has no images", "check the data")
    folder = Path(spec.dataset).expanduser()
    if folder.is_dir() and not spec.quiet:
        from ..data import folder_labels

        sub = folder / (split or spec.split)
        labels = folder_labels(sub if sub.is_dir() else folder)
        shown = ", ".join(f"{n} -> {k}" for n, k in list(labels.items())[:12])
        note(f"image folder classes (folder -> label): {shown}"
             + (f" (+{len(labels) - 12} more)" if len(labels) > 12 else ""))
    return x, y


def class_names(spec: DataSpec, k: int) -> tuple[str, ...]:
    """K class names: the dataset's (an image folder's folder names, shown escaped where they are
    not UTF-8), numbers for the rest."""
    from .. import data
    from ..checks import printable

    names = [printable(n) for n in list(data.class_names_of(spec.dataset, spec.split) or ())[:k]]
    return tuple(names + [str(i) for i in range(len(names), k)])


def show_progress(args: argparse.Namespace) -> bool:
    """Progress bars go to stderr, only when it is a terminal and --json is off."""
    return not args.json and sys.stderr.isatty()


def print_summary(args: argparse.Namespace, summary: dict[str, Any], lines: list[str]) -> None:
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True, default=str))
    else:
        from ..checks import printable

        print("\n".join(printable(line) for line in lines))


PROBE = 64
"""Images in the model probe of :func:`load_model`: a realistic batch, so that models that fail
only on bigger batches, or whose outputs look like probabilities only over many rows, are caught
before any work."""


def load_model(spec: ModelSpec, x_probe: torch.Tensor, device: torch.device,
               grad: bool = False) -> tuple[torch.nn.Module, int]:
    """Load --model/--weights and check, once and up front, on a batch of up to :data:`PROBE`
    images, that it takes the dataset's images and returns finite [N, K] logits (or, with
    ``--outputs probs``, probabilities, which are then turned into log-probabilities); with
    ``grad``, that its outputs have a gradient with respect to the images. A model in train
    mode is switched to eval mode with a note. Returns the model and its number of classes K."""
    from .. import data, zoo
    from ..checks import LogOutputs, check_gradient, check_input_shape, check_logits, check_outputs, set_eval

    x_probe = x_probe[:PROBE]
    outputs = spec.outputs
    model = _open_model(spec, device)
    mean = spec.mean
    if mean is not None and len(mean) not in (1, x_probe.shape[1]):
        raise InputError(f"--mean/--std give {len(mean)} values but {spec.dataset} images have {x_probe.shape[1]} "
                         "channel(s)", "pass one value per channel (or one for all)")
    if spec.model in zoo.ZOO:            # a zoo model knows its image shape: say so before any call
        check_input_shape(data.INFO[zoo.ZOO[spec.model].dataset].shape, x_probe.shape[1:], f"model {spec.model}",
                          f"{spec.dataset} images")
    set_eval(model, note)
    if outputs == "probs" and not getattr(model, "query_only", False):
        model = LogOutputs(model).eval()
    try:
        with torch.no_grad():
            out = model(x_probe.to(device))
    except RuntimeError as e:
        raise InputError(f"model {spec.model} cannot take {spec.dataset} images of shape "
                         f"{tuple(x_probe.shape[1:])} ({(str(e).splitlines() or [''])[0][:120]})",
                         "use the model made for this dataset") from None
    except Exception as e:  # a user's model can fail in any way; report it in one line
        raise InputError(f"model {spec.model} failed on {spec.dataset} images of shape "
                         f"{tuple(x_probe.shape[1:])} ({type(e).__name__}: {(str(e).splitlines() or [''])[0][:120]})",
                         "fix the model's forward, or use the model made for this dataset") from None
    if not isinstance(out, torch.Tensor):
        raise InputError(f"model {spec.model} returned a {type(out).__name__}, not a tensor of logits",
                         "wrap the model so that it returns one row of class logits per image")
    k = check_logits(out, x_probe.shape[0])
    check_outputs(out)  # after LogOutputs, probabilities have become log-probabilities
    if grad:
        check_gradient(model, x_probe.to(device))
    return model, k


def check_model_for(spec: ModelSpec, model: torch.nn.Module, x: torch.Tensor,
                    y: torch.Tensor | None, device: torch.device, batch_sizes: tuple[int, ...] = (),
                    images: str | None = None, shipped: bool = True) -> Any:
    """The model check of every command (:func:`infoswarm.checks.check_model`), run once the
    model is loaded: on the first :data:`ACCURACY_IMAGES` images ``x`` (uint8 or float [N, C, H, W],
    any device) with labels ``y`` (or None), at the command's ``batch_sizes``; a zoo model must get
    its dataset's image shape, a model on a built-in dataset must have its number of classes.
    A zoo name without --weights (``shipped``: its shipped weights, not a fresh model as in
    ``train``) on another built-in dataset is refused.
    Notes the clean accuracy (and a warning when it is near chance). Returns the
    :class:`~infoswarm.checks.ModelCheck` (``seconds_per_image`` feeds :func:`check_work`)."""
    from .. import data, zoo
    from ..checks import check_model, printable, unit_float
    from ..stats import wilson

    ds = spec.dataset
    name = spec.model
    shape = data.INFO[zoo.ZOO[name].dataset].shape if name in zoo.ZOO else None
    classes = len(data.INFO[ds].classes) if isinstance(ds, str) and data.is_named(ds) else None
    if (name in zoo.ZOO and shipped and not spec.weights
            and isinstance(ds, str) and data.is_named(ds) and images is None and zoo.ZOO[name].dataset != ds):
        made = [n for n, e in zoo.ZOO.items() if e.dataset == ds]   # shipped weights, trained on another dataset
        raise InputError(f"model {name} ships weights trained on {zoo.ZOO[name].dataset}, not {ds} (a mismatched "
                         "pair gives meaningless results)",
                         f"use {' or '.join(made) if made else 'a model trained on ' + ds}, or pass --weights "
                         f"trained on {ds} for this architecture")
    what = images or f"{printable(ds)} images"
    xf = unit_float(x[:ACCURACY_IMAGES]).to(device)
    yy = None if y is None else y[:ACCURACY_IMAGES]
    res = check_model(model, xf, yy, batch_sizes=batch_sizes, outputs=spec.outputs,
                      input_shape=shape, classes=classes, name=f"model {printable(name)}", data_name=what)
    if res.accuracy is not None:
        lo, hi = wilson(round(res.accuracy * res.images), res.images)
        note(f"clean accuracy of {printable(name)} on the first {res.images} {what}: {res.accuracy:.3f} "
             f"(95% CI {lo:.3f}-{hi:.3f})")
    if res.warning:
        note(res.warning, "warning")
    return res


ACCURACY_IMAGES = 256
"""Images of the model check (:func:`check_model_for`) and its clean-accuracy note."""
def _open_model(spec: ModelSpec, device: torch.device) -> torch.nn.Module:
    """--model as a module on ``device``: a zoo name, file.py:Class or TorchScript file
    (:func:`infoswarm.zoo.load`), an .onnx file or file.py:function (query-only,
    :func:`infoswarm.attacks.query.as_model`), wrapped by --mean/--std."""
    from .. import zoo
    from ..attacks.query import as_model
    from ..models import Normalized

    mean, std = spec.mean, spec.std
    if (mean is None) != (std is None):
        raise InputError("--mean and --std go together", "pass both, one value per channel each")
    name, outputs = spec.model, spec.outputs
    query: Any = None
    if name.lower().endswith(".onnx"):
        query = name
    elif ":" in name and name.rpartition(":")[0].endswith(".py"):
        obj = zoo.user_attribute(name)
        if callable(obj) and not (isinstance(obj, type) and issubclass(obj, torch.nn.Module)):
            query = obj
    if query is not None:
        if spec.weights is not None:
            raise InputError(f"--weights is not used with --model {name}", "drop --weights; it carries its own")
        model = as_model(query, "probs" if outputs == "probs" else "logits")
    else:
        model = zoo.load(name, spec.weights, device=device)
    if mean is not None and std is not None:
        model = Normalized(model, mean, std).to(device).eval()
    return model


def check_labels(y: torch.Tensor, k: int, name: str) -> None:
    """Every label of the data ``name`` (a dataset name or path, named in the message) must name
    one of the model's K classes (refused up front, never dropped)."""
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= k):
        bad = int(y[(y < 0) | (y >= k)][0])
        n = int(((y < 0) | (y >= k)).sum())
        raise InputError(f"{n} label(s) of {name} (e.g. {bad}) lie outside the model's {k} classes 0..{k - 1}",
                         "use the model made for this dataset, or relabel the data")


def read_adversarial(path: str | None) -> dict[str, Any]:
    """The arrays of ``--adversarial`` (see :func:`infoswarm.artifacts.read_npz`)."""
    from ..artifacts import read_npz

    if path is None:
        raise InputError("--mode transfer and --mode reuse read the adversarial images of an attack run, but no "
                         "--adversarial was given", "pass --adversarial runs/<attack run>/adversarial.npz")
    return read_npz(path)


def inputs_of(args: argparse.Namespace, *more: str | None) -> list[str]:
    """Files and folders a command reads (never to be written into or over): those its flags
    name, a named dataset's folders, and the paths ``more`` (e.g. a dataset named in a run
    folder it reads)."""
    paths = [getattr(args, k, None) for k in ("dataset", "weights", "against", "adversarial")] + list(more)
    dataset = getattr(args, "dataset", None)
    if isinstance(dataset, str) and dataset:       # a named dataset's folders (or the package's)
        from .. import data

        paths += [str(p) for p in data.data_folders(dataset, getattr(args, "data_root", None))]
    model = getattr(args, "model", None)
    if isinstance(model, str):
        paths.append(model.rsplit(":", 1)[0] if ":" in model and not Path(model).exists() else model)
    return [str(p) for p in paths if p and Path(str(p)).expanduser().exists()]


def check_numbers(args: argparse.Namespace) -> None:
    """Every float option finite, the seed in torch's range: checked before any command runs."""
    import math

    for name, value in sorted(vars(args).items()):
        if isinstance(value, float) and not math.isfinite(value):
            flag = "--" + name.replace("_", "-")
            raise InputError(f"{flag} must be a finite number, got {value}", f"pass a number such as {flag} 0.1")
    seed = getattr(args, "seed", 0)
    if isinstance(seed, int) and not 0 <= seed < 2 ** 63:
        raise InputError(f"--seed must lie in 0 .. 2^63-1, got {seed}", "pass e.g. --seed 0")


ONE_THREAD_COMMANDS = ("attack", "robustness", "demo")
"""Commands that run on one intra-op thread unless --threads or OMP_NUM_THREADS says otherwise:
their attacks make many small model calls (the tail of hard images), which a second thread
does not speed up on a quiet 2-core machine and slows twofold when another program holds the other
core (BENCHMARKS.md, section cli-cpu)."""


def apply_threads(args: argparse.Namespace, environ: dict[str, str] | None = None) -> int | None:
    """Set torch's intra-op thread count from ``--threads`` (or the command's default, see
    :data:`ONE_THREAD_COMMANDS`); returns the count set, or None when torch's own stays."""
    import os

    env = os.environ if environ is None else environ
    n = getattr(args, "threads", None)
    if n is None:
        if getattr(args, "command", None) not in ONE_THREAD_COMMANDS or env.get("OMP_NUM_THREADS"):
            return None
        n = 1
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"--threads must be a positive whole number, got {n}", "pass --threads 1 or more")
    torch.set_num_threads(n)
    return n


def run_lock(args: argparse.Namespace) -> Any:
    """The run-folder lock (:func:`infoswarm.runs.lock`) of commands that write an --out folder."""
    import contextlib
    import os

    from .. import runs

    if args.command == "report" or not getattr(args, "out", None) or os.environ.get("RANK", "0") != "0":
        return contextlib.nullcontext()  # under torchrun only rank 0 holds the lock
    return runs.lock(args.out)


def terminate_cleanly() -> None:
    """SIGTERM (a scheduler's or `kill`'s default) ends the command like Ctrl-C: temporary files
    are removed and checkpoints kept. Only from the main thread (signal handlers live there)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, handler)
    except (ValueError, OSError):
        pass


def print_finished(args: argparse.Namespace, kind: str, fix: str) -> int:
    """A finished run met again: say so on stderr, and with --json print its summary.json on stdout."""
    from ..checks import printable

    print(f"{printable(args.out)} is a finished {kind} run with these settings; nothing to do ({fix})",
          file=sys.stderr)
    if getattr(args, "json", False):
        try:
            print(json.dumps(json.loads((Path(args.out) / "summary.json").read_text()), indent=2, sort_keys=True))
        except (OSError, ValueError):
            pass
    return 0


def resource_error(e: BaseException, args: argparse.Namespace) -> str | None:
    """One line for a failure of the machine, not of the input: memory or disk ran out (None for
    any other exception)."""
    import errno

    from ..checks import _is_oom, printable

    if isinstance(e, MemoryError) or (isinstance(e, RuntimeError) and _is_oom(e)):
        detail = (str(e).splitlines() or [""])[0][:160] or "MemoryError"
        return (f"out of memory ({printable(detail)}); nothing was written: lower --batch-size, --particles, "
                "--chunk or --limit, or use a machine with more memory")
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        where = printable(e.filename or getattr(args, "out", None) or "the output folder")
        free = ""
        try:
            import shutil

            probe = Path(str(getattr(args, "out", None) or ".")).expanduser().resolve()
            while not probe.exists():
                probe = probe.parent
            free = f", {shutil.disk_usage(probe).free / 1e6:.0f} MB free"
        except OSError:
            pass
        return (f"the disk is full writing {where} ({e.strerror}{free}); no half-written output was "
                "left: free some space (or choose another --out) and run the command again")
    return None


def damaged_checkpoint(e: BaseException) -> str | None:
    """One line for an exception raised after a checkpoint of this process was loaded (a
    checkpoint whose content does not fit the run: wrong keys, shapes or types); None otherwise."""
    from .. import runs
    from ..checks import printable

    loaded = runs.loaded_checkpoints()
    if not loaded:
        return None
    detail = (str(e).splitlines() or [""])[0][:100]
    return (f"checkpoint {printable(loaded[-1])} does not fit this run ({type(e).__name__}: {printable(detail)}); "
            "pass --overwrite to start this run over (or delete that file)")


def safe_streams() -> None:
    """stdout and stderr never fail on a character they cannot encode (a path or class name that
    is not UTF-8, a strict ASCII terminal): such characters are written as backslash escapes, so
    a finished run never exits non-zero because of printing."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError, TypeError):
                pass
