"""infoswarm: Fisher-information influence, sparse attacks (SparseSwarm, the paper's mFI-PSO and
baselines) and targeted hardening for image classifiers (PyTorch).

Every model here takes images in [0, 1], shaped [N, C, H, W], and returns logits [N, K].

The everyday names are importable from here (loaded on first use, so ``import infoswarm`` stays
cheap): the attacks and their contract (:class:`Attack`, :class:`AttackResult`,
:class:`Criterion`), :func:`run_attack` (an attack over a list of images, chunked and
resumable), :func:`robust_accuracy` (robust accuracy at k pixels against an L0 attack
ensemble), :func:`select_images`, :func:`image_fi` / :func:`pixel_fi` / :func:`rank_images`,
and the :mod:`presets` (the paper's settings)::

    from infoswarm import SparseSwarm
    result = SparseSwarm(model, pixels=10)(x, y)
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .cpu import tune_cpu
from .errors import InputError

try:
    __version__ = version("infoswarm")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

_LAZY = {
    **{name: "infoswarm.attacks" for name in ("Attack", "AttackResult", "Criterion", "FGSM", "JSMA", "MFIPSO",
                                              "OnePixel", "PGD", "PGD0", "SPGD", "SparseRS",
                                              "SparseSwarm")},
    "run_attack": "infoswarm.runner", "select_images": "infoswarm.selection",
    "robust_accuracy": "infoswarm.robustness",
    "image_fi": "infoswarm.influence", "pixel_fi": "infoswarm.influence", "rank_images": "infoswarm.influence",
    "presets": "infoswarm.presets",
}

__all__ = ["InputError", "__version__", "tune_cpu", *_LAZY]


def __getattr__(name: str) -> object:
    """Load the public name ``name`` from its module on first use (PEP 562)."""
    import importlib

    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module 'infoswarm' has no attribute {name!r}")
    module = importlib.import_module(where)
    value = module if where.endswith("." + name) else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
