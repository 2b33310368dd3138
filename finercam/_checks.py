"""Argument checks shared by the public entry points (FinerCAM, the kernels, the metrics, the runner).

Each raises ``TypeError`` for a value of the wrong kind and ``ValueError`` for one out of range,
with a message that names the argument.
"""
from __future__ import annotations

import numbers

import numpy as np
import torch


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


def check_fraction(fraction, name: str = "fraction") -> float:
    """A real number in (0, 1] (bools refused), as a float.

    >>> check_fraction(0.05)
    0.05
    """
    if isinstance(fraction, (bool, np.bool_)) or not isinstance(fraction, numbers.Real):
        raise TypeError(f"{name} must be a real number in (0, 1], got {type(fraction).__name__}")
    f = float(fraction)
    if not (0.0 < f <= 1.0):
        raise ValueError(f"{name} must lie in (0, 1], got {fraction!r}")
    return f


def check_size(size, name: str = "size") -> tuple[int, int]:
    """An int H (meaning (H, H)) or a pair of ints (H, W), as a tuple of ints; the C core checks
    that they are positive.

    >>> check_size(4), check_size((2, np.int64(3)))
    ((4, 4), (2, 3))
    """
    if isinstance(size, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int or a pair of ints, got {type(size).__name__}")
    if isinstance(size, (int, np.integer)):
        size = (int(size), int(size))
    try:
        h, w = size
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an int or a pair of ints (H, W), got {size!r}") from None
    for v in (h, w):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{name} must hold ints, got {size!r}")
    return int(h), int(w)


def check_images(images) -> torch.Tensor:
    """A floating-point (N, C, H, W) tensor with N, H, W >= 1: the model's input.

    >>> check_images(torch.zeros(1, 3, 2, 2)).shape
    torch.Size([1, 3, 2, 2])
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor (the model's input), got {type(images).__name__}")
    if not images.is_floating_point():
        raise TypeError(f"images must be a floating-point tensor, got {images.dtype}")
    if images.ndim != 4 or images.shape[0] < 1 or images.shape[2] < 1 or images.shape[3] < 1:
        raise ValueError(f"images must be (N, C, H, W) with N, H, W >= 1, got shape {tuple(images.shape)}")
    return images
