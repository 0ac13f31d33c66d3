"""Command-line interface: a thin layer over the library.

Every command validates its input before doing work, writes its outputs atomically (see
:mod:`infoswarm.runs`) and reports bad input as one line on stderr with exit status 2.

One module per command (``attack``, ``robustness``, ``influence``, ``train``, ``universality``, ``report``,
``harden``, ``evaluate``, ``demo``, ``analysis`` for outliers and sensitivity), each with an
``add_parser(sub)`` and its ``cmd_*`` function; what they share lives in :mod:`.common`. The
command modules import :mod:`.common` and the library, never each other.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch

from .. import __version__
from ..checks import printable
from ..cpu import tune_cpu
from ..errors import InputError, as_flags
from ..runs import forget_checkpoints
from . import analysis, attack, demo, evaluate, harden, influence, report, robustness, train, universality
from .common import (
    Parser,
    apply_threads,
    check_numbers,
    clear_notes,
    damaged_checkpoint,
    flush_notes,
    resource_error,
    run_lock,
    safe_streams,
    terminate_cleanly,
)

COMMANDS = (influence, attack, robustness, universality, train, report, harden, evaluate, demo, analysis)
"""The command modules, in the order ``infoswarm --help`` lists them."""

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``infoswarm`` argument parser with every command's sub-parser."""
    parser = Parser(prog="infoswarm", description="Find where image classifiers are fragile, "
                    "attack them with a particle swarm, and harden them.")
    parser.add_argument("--version", action="version", version=f"infoswarm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``infoswarm`` command; returns the exit status."""
    tune_cpu()  # keep big freed tensor buffers in the process (glibc; see infoswarm.cpu)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        print("error: no command given; choose one of "
              "influence, attack, robustness, universality, train, harden, evaluate, report, demo", file=sys.stderr)
        return 2
    terminate_cleanly()
    safe_streams()
    forget_checkpoints()
    threads = torch.get_num_threads()   # restored on return: main() also runs in-process (demo, tests)
    try:
        check_numbers(args)
        apply_threads(args)
        torch.manual_seed(args.seed)
        with run_lock(args):
            status = int(args.func(args) or 0)
        flush_notes()
        return status
    except InputError as e:
        clear_notes()
        print(f"error: {printable(as_flags(str(e), vars(args)))}", file=sys.stderr)   # Python names as flags
        return 2
    except (MemoryError, OSError, RuntimeError, KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        line = resource_error(e, args) or damaged_checkpoint(e)
        if line is None:
            raise
        clear_notes()
        print(f"error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; no half-written output was left (attack, train and harden runs keep "
              "their checkpoints: run the same command to continue)", file=sys.stderr)
        return 130
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    sys.exit(main())


demo.run_command = main  # the demo runs the ordinary commands through the entry point
