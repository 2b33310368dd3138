"""Progress and timing: a bar while a long run works, durations for people, a timed forward.

Bars: tqdm's notebook widget where it can work, its text bar everywhere else. ``tqdm.auto`` picks
the widget bar inside a Jupyter kernel, and there, without ipywidgets, it emits a ``TqdmWarning``
("IProgress not found") as soon as it is imported. So tqdm is imported only when a bar is
actually shown, and ``tqdm.auto`` only when ipywidgets can be imported.

What a data-set run will cost is :mod:`finercam.evaluation.plan`'s job.
"""
from __future__ import annotations

import importlib.util
import time
from typing import Any


class _NoBar:
    """The part of tqdm's interface the package uses, doing nothing (a hidden bar)."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> "_NoBar":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def progress_bar(*, show: bool = True, **kwargs: Any):
    """A tqdm bar built with ``kwargs`` when ``show``, else a do-nothing stand-in (tqdm not
    imported at all). The runners count images (``unit="img"``), so the bar's rate and ETA are
    per image.

    >>> with progress_bar(show=False, total=10, unit="img") as bar:
    ...     bar.update(4)
    >>> type(bar).__name__
    '_NoBar'
    """
    if not show:
        return _NoBar()
    if importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.auto import tqdm  # type: ignore[import-untyped]
    else:
        from tqdm import tqdm  # type: ignore[import-untyped]
    return tqdm(**kwargs)


def format_seconds(seconds: float) -> str:
    """A duration for people: ``"42 s"``, ``"3.5 min"``, ``"2.1 h"``.

    >>> format_seconds(42.4), format_seconds(210), format_seconds(7560)
    ('42 s', '3.5 min', '2.1 h')
    """
    if seconds < 100:
        return f"{seconds:.0f} s"
    if seconds < 6000:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def timed_forward(model, images):
    """``(model(images), seconds per image)``, without gradients; on CUDA the clock waits for
    the device.

    >>> import torch
    >>> out, seconds = timed_forward(torch.nn.Linear(3, 2), torch.ones(4, 3))
    >>> tuple(out.shape), seconds > 0
    ((4, 2), True)
    """
    import torch

    def sync():
        if images.is_cuda:
            torch.cuda.synchronize(images.device)

    with torch.no_grad():
        sync()
        t0 = time.perf_counter()
        out = model(images)
        sync()
    return out, max(time.perf_counter() - t0, 1e-9) / max(len(images), 1)
