"""Attacks. Every attack subclasses :class:`Attack` and is called the same way,
``attack(x, y, target=None, offset=0)``, on a batch of [0,1] images [N,C,H,W] with labels [N];
it returns an :class:`AttackResult` (see :mod:`.base` for the contract).

* :class:`SparseSwarm` — the default sparse attack: a small swarm searching which k pixels to
  set to corners of their box (query-only with the uniform prior: callables and ONNX files too);
* :class:`MFIPSO` — the paper's FI-guided particle-swarm attack (fixed pixels, searched values);
* baselines: :class:`FGSM`, :class:`PGD` (L∞), :class:`JSMA` (L0, gradient),
  :class:`OnePixel` (differential evolution), :class:`SparseRS` (random search),
  :class:`PGD0` (white-box L0 PGD) and :class:`SPGD` (sparse-PGD, white-box L0: a magnitude
  tensor and a continuous mask, projected then unprojected gradients).

:mod:`.registry` builds any of them by name from one set of options.
"""

from ..criteria import Criterion
from .base import Attack
from .fgsm import FGSM
from .jsma import JSMA
from .mfipso import MFIPSO, confusion_counts
from .onepixel import OnePixel
from .pgd import PGD
from .pgd0 import PGD0
from .result import AttackResult, finalize
from .sparse_rs import SparseRS
from .sparse_swarm import SparseSwarm
from .spgd import SPGD

__all__ = ["Attack", "AttackResult", "Criterion", "FGSM", "JSMA", "MFIPSO", "OnePixel", "PGD", "PGD0", "SPGD",
           "SparseRS", "SparseSwarm", "confusion_counts", "finalize"]
