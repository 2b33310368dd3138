"""``python -m finercam``: the command line (see :mod:`finercam.cli`)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
