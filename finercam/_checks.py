"""Argument checks shared by the public entry points (FinerCAM, the metrics, the runner).

Each raises ``TypeError`` for a value of the wrong kind and ``ValueError`` for one out of range,
with a message that names the argument.
"""
from __future__ import annotations

import numbers

import numpy as np


def check_int(value, name: str, minimum: int = 1) -> int:
    """An int (NumPy ints too, bools refused) that is at least ``minimum``.

    >>> check_int(np.int64(3), "steps")
    3
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)
