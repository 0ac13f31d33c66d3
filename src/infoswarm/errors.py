"""The one exception type that carries a user-facing message.

Library code raises :class:`InputError` for anything a user can fix (a missing file, a wrong
shape, an unknown name). The message is one line: what is wrong, then how to fix it. The CLI
prints it as ``error: <message>`` and exits with status 2, without a traceback.

Library messages name Python arguments, as ```name``` or ``name=value``; the CLI shows them as
its flags (``--name``, ``--name value``) with :func:`as_flags`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable


class InputError(ValueError):
    """Bad input that the user can fix; ``str(err)`` is a single line naming problem and fix."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        message = problem.rstrip(".") + (f"; {fix}" if fix else "")
        super().__init__(" ".join(message.split()))


_QUOTED = re.compile(r"`([a-z_][a-z0-9_]*)`")
_ASSIGNED = re.compile(r"(?<![\w.(-])(?<!, )([a-z_][a-z0-9_]*)=(?:(True)\b|(?=\S))")


def as_flags(message: str, names: Iterable[str]) -> str:
    """``message`` with the Python argument names in ``names`` written as command-line flags:
    ```fi_eps``` → ``--fi-eps``, ``fi_eps=0.1`` → ``--fi-eps 0.1``, ``download=True`` →
    ``--download``; other text (and names not in ``names``) unchanged."""
    known = set(names)

    def flag(name: str) -> str:
        return "--" + name.replace("_", "-")

    out = _QUOTED.sub(lambda m: flag(m[1]) if m[1] in known else m[0], message)
    out = _ASSIGNED.sub(lambda m: m[0] if m[1] not in known else flag(m[1]) if m[2] else flag(m[1]) + " ", out)
    return " ".join(out.split())
