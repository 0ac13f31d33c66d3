"""Query-only models: a plain callable or an ONNX file, seen by the attacks as a model.

:func:`as_model` turns what the user gives into something the attacks can call as
``model(x) -> logits [N, K]`` on [0,1] images [N, C, H, W]:

* an ``nn.Module`` returning logits (``outputs="logits"``) is used as it is (gradients available);
* an ``nn.Module`` returning probabilities (``outputs="probs"``) is wrapped to return log p
  (softmax(log p) = p, so every loss and criterion sees the same probabilities);
* any other callable (numpy or torch in, numpy or torch out) and an ONNX file (path, run with
  onnxruntime — ``pip install infoswarm[onnx]``) become *query-only* models: forward passes
  only, no gradients (:func:`is_query_only`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import nn

from ..errors import InputError

Outputs = Literal["logits", "probs"]
ModelLike = nn.Module | Callable[[torch.Tensor], Any] | str | os.PathLike

_TINY = 1e-300


def _to_logits(out: Any, like: torch.Tensor, outputs: Outputs) -> torch.Tensor:
    t = torch.as_tensor(out).to(device=like.device)
    if not t.is_floating_point():
        t = t.to(like.dtype if like.is_floating_point() else torch.float32)
    if outputs == "probs":
        t = torch.log(t.double().clamp(min=_TINY))        # float64: tiny probabilities keep their order
    return t


class _LogOf(nn.Module):
    """An nn.Module returning probabilities, seen as one returning log p (differentiable)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.train(inner.training)  # the wrapper reports (and switches) the inner model's mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(self.inner(x).clamp(min=1e-30))


class QueryOnly(nn.Module):
    """A black-box classifier: ``fn`` maps [0,1] images to logits or probabilities [N, K].

    Forward passes run without autograd; asking it for gradients is an error of the caller
    (the attacks check :func:`is_query_only` first)."""

    query_only = True

    def __init__(self, fn: Callable[[torch.Tensor], Any], outputs: Outputs = "logits",
                 name: str = "callable") -> None:
        super().__init__()
        self.fn, self.outputs, self.name = fn, outputs, name
        self.eval()  # nothing to train: never reported as a model left in train mode

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _to_logits(self.fn(x.detach()), x, self.outputs)


class OnnxModel:
    """An ONNX classifier run by onnxruntime on CPU: [N, C, H, W] float images in [0,1] ->
    its first output as a torch tensor (float32/float64, on the input's device)."""

    def __init__(self, path: str | os.PathLike) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise InputError("onnxruntime is not installed, needed to run an ONNX model",
                             "pip install infoswarm[onnx]") from None
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise InputError(f"ONNX file {path} does not exist", "pass the path of an exported .onnx model")
        try:
            self.session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            msg = " ".join(str(e).split())[:120]
            raise InputError(f"cannot load ONNX model {path} ({msg})",
                             "export it with torch.onnx.export and pass the .onnx file") from None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.dtype = "float64" if "double" in inp.type else "float32"
        self.path = path

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        arr = x.detach().cpu().numpy().astype(self.dtype)
        try:
            out = self.session.run(None, {self.input_name: arr})[0]
        except Exception as e:
            msg = " ".join(str(e).split())[:120]
            raise InputError(f"the ONNX model {self.path} failed on images of shape {tuple(x.shape)} ({msg})",
                             "export it for [N, C, H, W] float images in [0, 1] with a dynamic batch axis") from None
        return torch.from_numpy(out).to(x.device)


def as_model(model: ModelLike, outputs: Outputs = "logits") -> nn.Module:
    """What the attacks call: see the module docstring. Raises InputError for an unknown
    ``outputs`` or something that is neither a module, a callable nor a path."""
    if outputs not in ("logits", "probs"):
        raise InputError(f"unknown outputs {outputs!r}", 'use "logits" or "probs"')
    if isinstance(model, (str, os.PathLike)):
        return QueryOnly(OnnxModel(model), outputs, name=os.fspath(model))
    if isinstance(model, nn.Module):
        if getattr(model, "query_only", False):
            return model
        return model if outputs == "logits" else _LogOf(model)
    if callable(model):
        return QueryOnly(model, outputs)
    raise InputError(f"model must be an nn.Module, a callable or an ONNX path, got {type(model).__name__}",
                     "pass e.g. infoswarm.zoo.load('mnist-cnn') or 'model.onnx'")


def is_query_only(model: nn.Module) -> bool:
    """Whether ``model`` (as returned by :func:`as_model`) offers forward passes only."""
    return bool(getattr(model, "query_only", False))
