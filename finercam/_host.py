"""The one door from the model's device to the host: :func:`to_host`, and a per-call tally.

Every tensor FinerCAM brings to the host (logits, activations, per-class statistics, classifier
rows, Score-CAM scores) goes through :func:`to_host`, so that the bytes a call copies are counted
in one place (``Explanation.host_bytes``) and a test can intercept every copy by wrapping this
one function. On CUDA the statistics are reduced on the device first (Grad-CAM's spatial means,
the two-pass combination), so what crosses is the activations plus a few numbers per class.

>>> import torch
>>> tally = HostTally()
>>> tally.take(torch.ones(2, 3, dtype=torch.float64)).dtype, tally.bytes
(dtype('float32'), 24)
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["HostTally", "to_host"]


def to_host(t: torch.Tensor) -> np.ndarray:
    """``t``'s values as a C-contiguous float32 NumPy array on the host (detached). On the CPU a
    float32 contiguous tensor is shared, not copied; elsewhere this is the device-to-host copy.

    >>> to_host(torch.arange(3)).tolist()
    [0.0, 1.0, 2.0]
    """
    t = t.detach()
    if t.dtype != torch.float32:
        t = t.float()   # on the device: half the bytes cross for a float64 statistic
    return np.ascontiguousarray(t.cpu().numpy())


class HostTally:
    """Counts the bytes of one call's arrays brought to the host by :func:`to_host`."""

    def __init__(self) -> None:
        self.bytes = 0

    def take(self, t: torch.Tensor) -> np.ndarray:
        """:func:`to_host` of ``t``, its size added to :attr:`bytes`."""
        arr = to_host(t)
        self.bytes += arr.nbytes
        return arr
