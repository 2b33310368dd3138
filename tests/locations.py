"""Where things are, for tests in any folder of ``tests/``: the repository root, this folder, and the
shared test images (``tests/data``). Test modules import it by name (pytest puts ``tests/`` on
``sys.path`` for its ``conftest.py``)."""
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
DATA = TESTS / "data"
