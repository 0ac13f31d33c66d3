"""Small statistics shared by the attack summaries, the map benchmark and the result tables, and the
one way a count with its rate and interval is written (``n/N = r % [lo, hi]``)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def wilson(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """95 % Wilson score interval (lower, upper), as fractions in [0, 1], for ``successes`` out
    of ``n`` trials ((0, 1) when n = 0)."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def percent(fraction: float) -> str:
    """A fraction as a percentage with one decimal, ``"12.3 %"``; ``"–"`` for NaN."""
    return "–" if math.isnan(fraction) else f"{100 * fraction:.1f} %"


def rate_text(count: int, n: int, rate: float, interval: Sequence[float], label: str | None = None) -> str:
    """``count/n = rate [interval]`` with the rate and the interval (fractions in [0, 1], e.g. from
    :func:`wilson`) as percentages with one decimal (NaN shows as ``"–"``).

    Without ``label``: ``"3/8 = 37.5 % [13.7 %, 69.4 %]"``; with ``label="95 % CI"``:
    ``"3/8 = 37.5 % [95 % CI 13.7, 69.4]"`` (the interval's unit implied by the rate's)."""
    lo, hi = interval
    if label is None:
        return f"{count}/{n} = {percent(rate)} [{percent(lo)}, {percent(hi)}]"
    lo_text, hi_text = ("–" if math.isnan(v) else f"{100 * v:.1f}" for v in (lo, hi))
    return f"{count}/{n} = {percent(rate)} [{label} {lo_text}, {hi_text}]"


def mcnemar(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value for paired outcomes with b pairs (successes of the first
    only) and c pairs (of the second only): 2 · P(X ≤ min(b, c)) for X ~ Binomial(b + c, 1/2),
    capped at 1; 1.0 when there is no discordant pair."""
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got {b} and {c}")
    n = b + c
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(math.comb(n, j) for j in range(min(b, c) + 1)) / 2 ** n)
