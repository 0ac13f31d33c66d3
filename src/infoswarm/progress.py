"""Progress that shows in logs: when stderr is not a terminal (a log file, a batch job), one
line per chunk or epoch with the elapsed time and an estimate of the time left."""

from __future__ import annotations

import sys
import time


class LogProgress:
    """``update(done)`` prints ``<label>: <done>/<total> <unit>, <elapsed> elapsed, ETA <left>``
    to stderr. Enabled by default only when stderr is not a terminal (on a terminal tqdm bars
    are used instead). Units already done when a run resumes are marked with :meth:`skip` and
    left out of the rate behind the ETA."""

    def __init__(self, label: str, total: int, unit: str, enabled: bool | None = None) -> None:
        self.label, self.total, self.unit = label, int(total), unit
        self.enabled = (not sys.stderr.isatty()) if enabled is None else bool(enabled)
        if self.enabled and sys.stderr.isatty():
            self.enabled = False
        self.t0 = time.perf_counter()
        self.skipped = 0

    def skip(self) -> None:
        """One unit loaded from a checkpoint instead of computed."""
        self.skipped += 1

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.t0
        worked = done - self.skipped
        left = (self.total - done) * elapsed / worked if worked > 0 else float("nan")
        eta = "?" if left != left else _fmt(left)
        print(f"{self.label}: {done}/{self.total} {self.unit}, {_fmt(elapsed)} elapsed, ETA {eta}",
              file=sys.stderr, flush=True)


def _fmt(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"
