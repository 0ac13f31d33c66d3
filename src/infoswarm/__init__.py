"""infoswarm: Fisher-information influence, mFI-PSO attacks and targeted hardening for image
classifiers (PyTorch).

Every model here takes images in [0, 1], shaped [N, C, H, W], and returns logits [N, K].
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .cpu import tune_cpu
from .errors import InputError

try:
    __version__ = version("infoswarm")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["InputError", "__version__", "tune_cpu"]
