"""``python -m finercam``: the command line (see :mod:`finercam.cli`)."""
import sys

from .cli import main

sys.exit(main())
