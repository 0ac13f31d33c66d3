"""Attacks. Every attack is called as ``attack(x, y)`` on a batch of [0,1] images [N,C,H,W]
with labels [N] and returns an :class:`AttackResult`.

* :class:`MFIPSO` — the FI-guided particle-swarm sparse attack (this project's method);
* baselines: :class:`FGSM`, :class:`PGD` (L∞), :class:`JSMA` (L0, gradient), 
  :class:`OnePixel` (differential evolution) and :class:`SparseRS` (random search).
"""

from .fgsm import FGSM
from .jsma import JSMA
from .mfipso import MFIPSO, confusion_counts
from .onepixel import OnePixel
from .pgd import PGD
from .result import AttackResult, finalize
from .sparse_rs import SparseRS

__all__ = ["AttackResult", "FGSM", "JSMA", "MFIPSO", "OnePixel", "PGD", "SparseRS", "confusion_counts", "finalize"]
