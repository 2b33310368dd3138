"""``python -m finercam``: the command line (see :mod:`finercam.apps.cli`)."""
import sys

from .apps.cli import main

if __name__ == "__main__":
    sys.exit(main())
