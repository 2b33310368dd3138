"""``finercam train``: train one of the bird world's classifiers (:mod:`finercam.world.models.train`).

The options are the training module's own; a bad count is reported as one line (exit status 2)
before any training, like every command's bad arguments.
"""
from __future__ import annotations

import argparse

from ..world.models import train
from .common import one_line_errors, usage_errors

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of :func:`finercam.world.models.train.add_arguments`.

    >>> p = argparse.ArgumentParser(prog="finercam train")
    >>> add_arguments(p)
    >>> p.parse_args(["--model", "vit", "--epochs", "3"]).epochs
    3
    """
    one_line_errors(p)
    train.add_arguments(p)


def run(args: argparse.Namespace) -> int:
    """Check the counts (a :class:`~finercam.apps.common.UsageError`), then train; returns 0.

    >>> p = argparse.ArgumentParser(prog="finercam train")
    >>> add_arguments(p)
    >>> run(p.parse_args(["--model", "cnn", "--batch", "0"]))
    Traceback (most recent call last):
    ...
    finercam.apps.common.UsageError: --batch must be positive, got 0
    """
    with usage_errors(ValueError):
        train.check_arguments(args)
    return train.run(args)
