"""Shared test set-up: the hypothesis profiles.

``ci`` (the default) is derandomised, so every run of ``make test`` tries the same examples and a
failure reproduces; ``thorough`` is for a local hunt: ``HYPOTHESIS_PROFILE=thorough pytest ...``.
"""
import gc
import os
import sys

from hypothesis import HealthCheck, settings

# One intra-op thread for the whole run and the processes it starts (set before torch is
# imported): the test models are tiny, and on a busy 2-core machine a second OpenMP thread only
# adds barrier waits (a 16 x 3 x 16 x 16 convolution: 40 ms with two threads, 1 ms with one).
os.environ["OMP_NUM_THREADS"] = "1"
if "torch" in sys.modules:
    sys.modules["torch"].set_num_threads(1)

settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("thorough", max_examples=2000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_collection_finish(session):
    """What collection imported (torch, finercam, every test module: some 230,000 objects) lives
    for the whole run: freeze it out of the cyclic collector's sight, so that each ``gc.collect()``
    of the leak and refcount tests, and each automatic full collection, costs microseconds
    instead of 0.6 s. Objects created by the tests are tracked and counted as before."""
    gc.collect()
    gc.freeze()


def pytest_collection_modifyitems(config, items):
    """Every test that takes the headless-chromium fixture (tests/explorer_browser.py) is a browser
    test, whatever its file says: ``make test-fast`` deselects it with ``-m "not browser"``."""
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker("browser")
