"""The shared count-rate-interval text of :mod:`infoswarm.stats` (used by the demo's summary lines
and the HTML report): the exact strings both wrote before they shared it."""

from __future__ import annotations

import math

from infoswarm.stats import mcnemar, percent, rate_text, wilson


def test_rate_text_keeps_the_report_and_demo_strings():
    lo, hi = wilson(3, 8)  # 0.1368..., 0.6943...
    assert rate_text(3, 8, 3 / 8, (lo, hi)) == "3/8 = 37.5 % [13.7 %, 69.4 %]"                # report page
    assert rate_text(3, 8, 3 / 8, [lo, hi], label="95 % CI") == "3/8 = 37.5 % [95 % CI 13.7, 69.4]"  # demo
    assert rate_text(0, 0, 0.0, wilson(0, 0)) == "0/0 = 0.0 % [0.0 %, 100.0 %]"


def test_percent_and_nan():
    assert percent(0.12345) == "12.3 %" and percent(1.0) == "100.0 %"
    assert percent(math.nan) == "–"
    assert rate_text(1, 2, math.nan, (math.nan, 0.5)) == "1/2 = – [–, 50.0 %]"


def test_mcnemar_against_enumeration():
    import itertools

    for b, c in [(0, 0), (1, 0), (2, 7), (9, 1), (13, 0), (5, 5)]:
        n = b + c
        # brute force: every assignment of the n discordant pairs, each side with probability 1/2
        as_extreme = sum(1 for bits in itertools.product((0, 1), repeat=n)
                         if min(sum(bits), n - sum(bits)) <= min(b, c))
        want = min(1.0, as_extreme / 2 ** n) if n else 1.0
        assert math.isclose(mcnemar(b, c), want, rel_tol=1e-12), (b, c)
    assert mcnemar(7, 2) == mcnemar(2, 7)
