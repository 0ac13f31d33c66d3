"""Attacks. Every attack is called as ``attack(x, y)`` on a batch of [0,1] images and returns
an :class:`AttackResult`."""

from .result import AttackResult, finalize

__all__ = ["AttackResult", "finalize"]
