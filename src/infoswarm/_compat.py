"""Old keyword names that still work for a while, through one decorator.

:func:`renamed_kwargs` lets a public function take the keyword it had before a rename (e.g. the
FI regulariser ``eps=`` that is now ``fi_eps=``): the old keyword's value is passed on under the
new name with a :class:`DeprecationWarning` that names the new one; giving both is an
:class:`~infoswarm.errors.InputError`.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar, cast

from .errors import InputError

F = TypeVar("F", bound=Callable[..., Any])


def renamed_kwargs(**renames: str) -> Callable[[F], F]:
    """Decorator: accept each old keyword ``old`` of ``old="new"`` in place of ``new``.

    Example: ``@renamed_kwargs(eps="fi_eps", eps_scale="fi_eps_scale")``. A call with ``eps=``
    warns (DeprecationWarning, pointing at the caller) and runs as if ``fi_eps=`` had been passed;
    a call with both ``eps=`` and ``fi_eps=`` raises InputError."""
    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in renames.items():
                if old not in kwargs:
                    continue
                if new in kwargs:
                    raise InputError(f"{fn.__name__}() got both {old}= and {new}=",
                                     f"pass {new}= only ({old}= is its deprecated old name)")
                warnings.warn(f"{fn.__name__}(): the keyword {old}= is deprecated, use {new}=",
                              DeprecationWarning, stacklevel=2)
                kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return cast(F, wrapper)

    return decorate
