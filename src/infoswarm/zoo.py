"""Model zoo: named models with shipped weights, and a user's own models.

``load(name)`` returns an ``nn.Module`` in eval mode that takes [0, 1] images [N, C, H, W] and
returns logits [N, K]. Names:

* ``mnist-cnn``, ``fashion-cnn``: :class:`~infoswarm.models.SmallCNN` on 1x28x28;
* ``cifar10-cnn``: :class:`~infoswarm.models.CifarCNN` on 3x32x32 (shipped weights, trained on
  2 CPU cores);
* ``mnist-cnn-l0``, ``cifar10-cnn-l0``: the same architectures hardened against k-pixel attacks
  by online sparse adversarial training (``infoswarm harden --method sparse``; their cards give
  the command, its time and the robust accuracy measured by ``infoswarm robustness``);
* ``mnist-cnn-wide``: :class:`~infoswarm.models.SmallCNN` with twice the filters and hidden
  units (64, 128; 256), for sparse adversarial training (no shipped weights yet);
* ``mnist-cnn-median``: ``mnist-cnn``'s network behind a 3×3 median filter
  (:func:`~infoswarm.models.median_filter`, no weights of its own, so any ``mnist-cnn`` weights
  load into it); no shipped weights: ``mnist-cnn-l0``'s weights behind the filter, fine-tuned
  through it, were no more robust under the ``standard`` ensemble (RESULTS.md, "A median filter
  in front");
* ``cifar10-resnet32``: the paper's pre-activation ResNet-32 on 3x32x32 (no shipped weights:
  its 180-epoch recipe wants a GPU);
* ``path/to/file.py:ClassName`` with ``weights=`` a ``.safetensors`` file or a ``.pt``/``.pth``
  state dict (``torch.save(model.state_dict())``, read with ``torch.load(weights_only=True)``):
  a user's architecture (constructed without arguments) and its weights; the file's folder is
  importable while it loads (a model file may import a sibling module);
* ``path/to/model.pt``: a TorchScript file (``torch.jit.save``).

``normalization=(mean, std)`` wraps any of them for a network that expects standardised inputs
(:class:`~infoswarm.models.Normalized`), so it still takes [0, 1] images.

Shipped weights live in ``infoswarm/weights/<name>.safetensors`` with a JSON card beside them
(dataset, recipe, seed, test accuracy); ``infoswarm train`` makes both.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import InputError
from .models import CifarCNN, Normalized, PreActResNet, SmallCNN

WEIGHTS_DIR = Path(__file__).with_name("weights")


@dataclass(frozen=True)
class Recipe:
    """How a zoo model is trained: SGD (Nesterov momentum), a learning-rate schedule and
    augmentation. ``milestones`` empty means a cosine schedule from ``lr`` to 0."""

    epochs: int
    lr: float
    batch_size: int = 128
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    augment: str = "none"  # "none" | "crop" | "flip-crop"
    crop_pad: int = 2
    schedule: str = "auto"  # "auto" (step at milestones, else cosine) | "onecycle"
    warmup: float = 0.0  # onecycle: epochs of linear warm-up from lr/10 to lr, then linear to 0
    label_smoothing: float = 0.0
    channels_last: bool = False  # train in channels-last memory layout (faster convs on CPU)


@dataclass(frozen=True)
class ZooEntry:
    """A named architecture, the dataset it is made for, and its training recipe."""

    build: Callable[[], nn.Module]
    dataset: str
    recipe: Recipe
    notes: str = ""


# Shared by the MNIST entries (the plain, hardened, wide and median-front networks) and by the
# two CIFAR-10 entries: the normalisation (mean, std) and the clean-training recipes.
_MNIST_STATS = ((0.1307,), (0.3081,))
_MNIST_RECIPE = Recipe(epochs=6, lr=0.05, weight_decay=5e-4, augment="none")
_CIFAR10_RECIPE = Recipe(epochs=16, lr=0.2, batch_size=256, weight_decay=5e-4, augment="flip-crop",
                         crop_pad=4, schedule="onecycle", warmup=3.0, label_smoothing=0.1,
                         channels_last=True)


ZOO: dict[str, ZooEntry] = {
    "mnist-cnn": ZooEntry(
        build=lambda: SmallCNN(1, 10, 28, *_MNIST_STATS),
        dataset="mnist",
        recipe=_MNIST_RECIPE,
    ),
    "fashion-cnn": ZooEntry(
        build=lambda: SmallCNN(1, 10, 28, (0.2860,), (0.3530,)),
        dataset="fashion-mnist",
        recipe=Recipe(epochs=15, lr=0.05, weight_decay=5e-4, augment="flip-crop", crop_pad=2),
    ),
    "cifar10-cnn": ZooEntry(
        build=lambda: CifarCNN(10),
        dataset="cifar10",
        recipe=_CIFAR10_RECIPE,
        notes="A small VGG-style network (64/128/256 filters) trained on the CPU in about an hour.",
    ),
    "mnist-cnn-l0": ZooEntry(
        build=lambda: SmallCNN(1, 10, 28, *_MNIST_STATS),
        dataset="mnist",
        recipe=_MNIST_RECIPE,
        notes="mnist-cnn fine-tuned with online sparse adversarial training (harden --method sparse); "
              "the card holds the exact command and settings.",
    ),
    "mnist-cnn-wide": ZooEntry(
        build=lambda: SmallCNN(1, 10, 28, *_MNIST_STATS, widths=(64, 128), hidden=256),
        dataset="mnist",
        recipe=_MNIST_RECIPE,
        notes="mnist-cnn with twice the filters and hidden units (64, 128; 256): the 'slightly wider' "
              "network for sparse adversarial training; no shipped weights yet.",
    ),
    "mnist-cnn-median": ZooEntry(
        build=lambda: SmallCNN(1, 10, 28, *_MNIST_STATS, median=3),
        dataset="mnist",
        recipe=_MNIST_RECIPE,
        notes="mnist-cnn's network behind a 3x3 median filter; no shipped weights (measured no more robust "
              "than mnist-cnn-l0 under the standard ensemble: RESULTS.md).",
    ),
    "cifar10-cnn-l0": ZooEntry(
        build=lambda: CifarCNN(10),
        dataset="cifar10",
        recipe=_CIFAR10_RECIPE,
        notes="cifar10-cnn fine-tuned with online sparse adversarial training (harden --method sparse, "
              "reduced schedule on 2 CPU cores); the card holds the exact command and settings.",
    ),
    "cifar10-resnet32": ZooEntry(
        build=lambda: PreActResNet(32, 10),
        dataset="cifar10",
        recipe=Recipe(epochs=180, lr=0.1, weight_decay=1e-4, milestones=(90, 135),
                      augment="flip-crop", crop_pad=4),
        notes="The paper's pre-activation ResNet-32 (16/32/64 filters, weight decay 1e-4).",
    ),
}


def _check_device(device: str | torch.device) -> torch.device:
    """A torch device that can run a model here (one-line :class:`InputError` otherwise)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"unknown device {device!r}", 'use "cpu", "cuda" or "cuda:N"') from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {str(device)!r} but no CUDA device is available here", 'use device="cpu"')
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(f"device {str(device)!r} but only {torch.cuda.device_count()} CUDA device(s) are visible",
                         "use a visible CUDA device")
    if dev.type == "meta":
        raise InputError("device 'meta' cannot run a model", 'use "cpu" or "cuda"')
    return dev


def weights_path(name: str) -> Path:
    """Where the shipped weights of a zoo model live (they may be absent)."""
    return WEIGHTS_DIR / f"{name}.safetensors"


def card(name: str) -> dict[str, Any] | None:
    """The JSON card shipped beside a zoo model's weights, or None."""
    p = WEIGHTS_DIR / f"{name}.json"
    return json.loads(p.read_text()) if p.is_file() else None


def build(name: str) -> nn.Module:
    """A freshly initialised zoo architecture (train mode, random weights)."""
    if name not in ZOO:
        raise InputError(f"unknown model {name!r}",
                         f"use one of {', '.join(ZOO)}, path/to/file.py:ClassName with --weights, "
                         "or a TorchScript file")
    return ZOO[name].build()


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a .safetensors file, or from a torch.save'd ``.pt``/``.pth`` file read
    with ``weights_only=True`` (no code runs): a dict of tensors, or a checkpoint holding one
    under ``state_dict`` or ``model``."""
    if path.suffix in (".pt", ".pth", ".bin"):
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - torch.load raises many kinds for bad or unsafe files
            msg = (str(e).splitlines() or [type(e).__name__])[0][:120]
            raise InputError(f"cannot read weights {path} as a weights-only torch file ({msg})",
                             "save them with torch.save(model.state_dict(), path), or as .safetensors") from None
        for key in ("state_dict", "model"):
            if isinstance(obj, dict) and isinstance(obj.get(key), dict):
                obj = obj[key]
        if not (isinstance(obj, dict) and obj and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                    for k, v in obj.items())):
            raise InputError(f"weights {path} hold no state dict (a dict of tensors)",
                             "save them with torch.save(model.state_dict(), path)")
        return dict(obj)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise InputError(f"cannot read weights {path} ({str(e).splitlines()[0] if str(e) else type(e).__name__})",
                         "pass a .safetensors file (infoswarm train, safetensors.torch.save_file) or a .pt "
                         "state dict") from None


def _keys(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" (+{len(names) - 3} more)" if len(names) > 3 else "")


def load_state(model: nn.Module, path: str | Path) -> nn.Module:
    """Load weights (.safetensors, or a .pt/.pth state dict) into ``model``, strictly: a
    missing, unexpected or misshapen tensor is an :class:`InputError` naming the first keys.
    Entries for the model's non-persistent buffers (:class:`~infoswarm.models.Normalize` of
    files written before they were) are copied into those buffers."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"weights file {path} not found", "check the --weights path")
    state = _read_state(path)
    buffers = dict(model.named_buffers())
    persistent = set(model.state_dict())
    with torch.no_grad():
        for key in [k for k in state if k in buffers and k not in persistent]:
            value = state.pop(key)
            if value.shape == buffers[key].shape:
                buffers[key].copy_(value)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    fix = "use the weights trained for this architecture"
    if missing or unexpected:
        parts = ([f"missing {_keys(missing)}"] if missing else []) + ([f"unexpected {_keys(unexpected)}"]
                                                                      if unexpected else [])
        raise InputError(f"weights {path} do not fit the model: {'; '.join(parts)}", fix)
    if shapes:
        k = shapes[0]
        raise InputError(f"weights {path} do not fit the model: {k} has shape {tuple(state[k].shape)}, the model's "
                         f"{tuple(own[k].shape)}" + (f" (+{len(shapes) - 1} more)" if len(shapes) > 1 else ""), fix)
    model.load_state_dict(state, strict=True)
    return model


def user_attribute(spec: str) -> Any:
    """The object ``Name`` of ``path/to/file.py:Name``, the file imported with its own folder
    on ``sys.path`` (so it may import its sibling modules), or None when it has no ``Name``;
    one-line :class:`InputError` for a missing file or a failing import."""
    file, _, name = spec.rpartition(":")
    path = Path(file).expanduser()
    if not path.is_file():
        raise InputError(f"model file {path} not found", "pass --model path/to/file.py:ClassName")
    mod_name = f"infoswarm_user_{abs(hash(str(path.resolve())))}"
    spec_obj = importlib.util.spec_from_file_location(mod_name, path)
    if spec_obj is None or spec_obj.loader is None:
        raise InputError(f"cannot import {path}", "pass a Python source file")
    module = importlib.util.module_from_spec(spec_obj)
    sys.modules[mod_name] = module
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    try:
        spec_obj.loader.exec_module(module)
    except Exception as e:  # a user's file can fail in any way; report it in one line
        raise InputError(f"importing {path} failed ({type(e).__name__}: {e})", "fix the model file") from None
    finally:
        if folder in sys.path:
            sys.path.remove(folder)
    return getattr(module, name, None)


def _user_class(spec: str) -> type[nn.Module]:
    file, _, cls_name = spec.rpartition(":")
    cls = user_attribute(spec)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise InputError(f"{Path(file).expanduser()} has no nn.Module class {cls_name!r}",
                         "pass --model path/to/file.py:ClassName naming an nn.Module subclass")
    return cls


def load(name: str, weights: str | Path | None = None, device: str | torch.device = "cpu",
         normalization: tuple[Any, Any] | None = None) -> nn.Module:
    """A ready model in eval mode: a zoo name, ``file.py:Class`` (+ ``weights``: .safetensors
    or a .pt state dict) or a TorchScript file. Inputs [0, 1] [N, C, H, W]; output logits
    [N, K]. ``normalization=(mean, std)`` (one value per channel each) wraps a model that
    expects standardised images (:class:`~infoswarm.models.Normalized`)."""
    if not isinstance(name, (str, os.PathLike)) or not str(name):
        raise InputError(f"model name must be a non-empty string, got {name!r}",
                         f"use one of {', '.join(ZOO)}, path/to/file.py:ClassName, or a TorchScript file")
    if weights is not None and not isinstance(weights, (str, os.PathLike)):
        raise InputError(f"weights must be a path, got {type(weights).__name__}", "pass a .safetensors file path")
    device = _check_device(device)
    name = str(name)
    if name in ZOO:
        model = ZOO[name].build()
        path = Path(weights) if weights is not None else weights_path(name)
        if not path.is_file():
            if weights is None:
                raise InputError(f"no shipped weights for {name!r}",
                                 f"train them with `infoswarm train --model {name} --out DIR` "
                                 "and pass --weights DIR/model.safetensors")
        load_state(model, path)
    elif ":" in name and name.rpartition(":")[0].endswith(".py"):
        cls = _user_class(name)
        try:
            model = cls()
        except Exception as e:  # a user's constructor can fail in any way; report it in one line
            raise InputError(f"cannot build {cls.__name__}() from {name} ({type(e).__name__}: "
                             f"{(str(e).splitlines() or [''])[0][:120]})",
                             "give the class defaults for every constructor argument") from None
        if weights is None:
            raise InputError(f"no weights given for {name}", "pass --weights file.safetensors (or a .pt state dict)")
        load_state(model, weights)
    elif Path(name).expanduser().is_file():
        try:
            model = torch.jit.load(str(Path(name).expanduser()), map_location="cpu")
        except Exception as e:  # TorchScript raises many kinds of errors for a bad file
            detail = (str(e).strip().splitlines() or [""])[0][:100]
            raise InputError(f"cannot load {name} as TorchScript ({type(e).__name__}: {detail or 'no detail'})",
                             "pass a file saved with torch.jit.save; for a state dict or a pickled model pass "
                             "--model file.py:Class with --weights file.pt") from None
        if weights is not None:
            raise InputError("--weights is not used with a TorchScript model",
                             "drop --weights; a TorchScript file carries its weights")
    else:
        build(name)  # raises the unknown-name error
        raise AssertionError("unreachable")
    if normalization is not None:
        model = Normalized(model, *normalization)
    return model.to(device).eval()
