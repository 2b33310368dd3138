"""What every command shares: the one exception for an expected user error, and how it is shown.

A command raises :class:`UsageError` for what the person running it can fix (a bad option, a
missing file, a class name that matches nothing); :func:`finercam.apps.cli.main` prints it as one
line, ``finercam <command>: error: <message>``, and returns its :attr:`UsageError.status` (2,
argparse's own status for usage errors). Every other exception is a bug or an environment failure
and keeps its traceback.

Library functions check their arguments with ``TypeError``/``ValueError``; a command that hands a
user's option to one (``check_gamma``, the ``FinerCAM`` constructor) converts those at that call
with :func:`usage_errors`, not around the whole run, so that a bug deeper down still shows where
it happened.
"""
from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, NoReturn, TextIO

__all__ = ["UsageError", "check_output_folder", "one_line_errors", "print_usage_error", "usage_errors"]


class UsageError(ValueError):
    """A bad argument or input the user can fix: reported as one line, exit status ``status``.

    >>> err = UsageError("--gamma must be a number in [0, 10], got -1.0")
    >>> isinstance(err, ValueError), err.status
    (True, 2)
    """

    def __init__(self, message: str, status: int = 2):
        super().__init__(message)
        self.status = status


@contextmanager
def usage_errors(*types: type[Exception]) -> Iterator[None]:
    """Inside the block, a library's ``TypeError``/``ValueError`` (or ``types``) about the user's
    arguments becomes a :class:`UsageError` with the same message.

    Wrap only the calls that validate the user's options, so that a bug elsewhere keeps its
    traceback.

    >>> from finercam.explanation import check_gamma
    >>> with usage_errors():
    ...     check_gamma(-1.0)
    Traceback (most recent call last):
    ...
    finercam.apps.common.UsageError: gamma must be finite and >= 0, got -1.0
    """
    caught = types or (TypeError, ValueError)
    try:
        yield
    except UsageError:
        raise
    except caught as exc:
        raise UsageError(str(exc)) from exc


def check_output_folder(path, option: str = "--out") -> None:
    """An output folder may exist (its files are replaced) but not as a file.

    >>> check_output_folder(__file__)
    Traceback (most recent call last):
    ...
    finercam.apps.common.UsageError: --out exists and is not a folder: ...
    """
    if Path(path).exists() and not Path(path).is_dir():
        raise UsageError(f"{option} exists and is not a folder: {path}")


def print_usage_error(prog: str, exc: UsageError, stream: TextIO | None = None) -> int:
    """Print ``prog: error: message`` on one line (stderr by default); returns the exit status.

    >>> print_usage_error("finercam explain", UsageError("--alpha must be in [0, 1]"), sys.stdout)
    finercam explain: error: --alpha must be in [0, 1]
    2
    """
    message = " ".join(str(exc).split())  # one line, whatever the message holds
    print(f"{prog}: error: {message}", file=sys.stderr if stream is None else stream)
    return exc.status


def one_line_errors(p: argparse.ArgumentParser) -> None:
    """argparse prints its usage before an error; a bad argument here gets one line, exit 2.

    >>> p = argparse.ArgumentParser(prog="finercam explain")
    >>> one_line_errors(p)
    >>> p.error("--gamma: bad value")
    Traceback (most recent call last):
    ...
    SystemExit: 2
    """

    def error(message: str) -> NoReturn:
        print(f"{p.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)

    p.error = error  # type: ignore[method-assign]
