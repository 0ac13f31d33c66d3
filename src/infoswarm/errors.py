"""The one exception type that carries a user-facing message.

Library code raises :class:`InputError` for anything a user can fix (a missing file, a wrong
shape, an unknown name). The message is one line: what is wrong, then how to fix it. The CLI
prints it as ``error: <message>`` and exits with status 2, without a traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input that the user can fix; ``str(err)`` is a single line naming problem and fix."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        message = problem.rstrip(".") + (f"; {fix}" if fix else "")
        super().__init__(" ".join(message.split()))
