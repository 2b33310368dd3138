"""Shared test set-up: the hypothesis profiles.

``ci`` (the default) is derandomised, so every run of ``make test`` tries the same examples and a
failure reproduces; ``thorough`` is for a local hunt: ``HYPOTHESIS_PROFILE=thorough pytest ...``.
"""
import os

from hypothesis import HealthCheck, settings

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
