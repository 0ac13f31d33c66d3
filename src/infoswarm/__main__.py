"""``python -m infoswarm`` (and ``torchrun ... -m infoswarm``): the ``infoswarm`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
