"""Progress and cost: what a run will do, how long it will take, and a bar while it runs.

:class:`RunCost` says what a run does per image (maps, forwards by purpose) and estimates its
time from :func:`timed_forward`; :func:`best_chunk_size` (a short calibration) or
:func:`rule_chunk_size` (no forwards) picks how many images go into one forward on this machine. Both runners (``finercam evaluate``, ``finercam explain``) print a
``RunCost`` before they start.

Progress bars: tqdm's notebook widget where it can work, its text bar everywhere else.

``tqdm.auto`` picks the widget bar inside a Jupyter kernel, and there, without ipywidgets, it
emits a ``TqdmWarning`` ("IProgress not found") as soon as it is imported. So tqdm is imported
only when a bar is actually shown, and ``tqdm.auto`` only when ipywidgets can be imported.
"""
from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass
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
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm
    return tqdm(**kwargs)


# --- what a run costs ----------------------------------------------------------------------------


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


@dataclass(frozen=True)
class RunCost:
    """What a run does per image and, from a timed forward, about how long it will take.

    ``maps``: CAM maps per image, each one forward and one backward (a backward costs about
    ``backward_factor`` forwards); ``forwards``: what else is forwarded per image, by purpose
    (e.g. ``{"RD and deletion": 126, "Score-CAM": 96}``); ``seconds_per_forward``: one image's
    forward, timed on this machine. The estimate is

    .. math:: t \\approx n_\\text{images}\\, t_\\text{forward}
              \\Big(n_\\text{maps} (1 + b) + \\sum_p n_p\\Big).

    >>> cost = RunCost(images=200, maps=4, forwards={"RD and deletion": 84},
    ...                seconds_per_forward=0.002)
    >>> cost.forwards_per_image, format_seconds(cost.seconds)
    (96.0, '38 s')
    >>> print(cost.describe())
    per image: 4 maps (a forward and a backward each), 84 forwards for RD and deletion
    one forward: 2.00 ms per image -> about 0.19 s per image, 38 s for 200 images
    """

    images: int
    maps: int
    forwards: dict
    seconds_per_forward: float
    backward_factor: float = 2.0

    @property
    def forwards_per_image(self) -> float:
        """Forward-equivalents per image: maps count ``1 + backward_factor`` each."""
        return self.maps * (1.0 + self.backward_factor) + float(sum(self.forwards.values()))

    @property
    def seconds(self) -> float:
        return self.images * self.forwards_per_image * self.seconds_per_forward

    def describe(self) -> str:
        """Two lines: the work per image, then the timing and the estimate."""
        work = [f"{self.maps} maps (a forward and a backward each)"]
        work += [f"{n} forward{'' if n == 1 else 's'} for {what}" for what, n in self.forwards.items()]
        per_image = self.forwards_per_image * self.seconds_per_forward
        return ("per image: " + ", ".join(work) + "\n"
                f"one forward: {1e3 * self.seconds_per_forward:.2f} ms per image -> about "
                f"{per_image:.2g} s per image, {format_seconds(self.seconds)} for "
                f"{self.images} images")


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


def rule_chunk_size(example, *, max_bytes: int = 8 * 2**20, max_chunk: int = 64) -> int:
    """The chunk size without a calibration: the largest power of two up to ``max_chunk`` whose
    inputs take at most ``max_bytes`` (on CPU 8 MiB keeps most networks' activations of a chunk
    under glibc's 32 MiB limit for reusing freed memory, above which every forward maps fresh
    pages and the time goes into page faults; on CUDA use a larger budget).

    >>> import torch
    >>> rule_chunk_size(torch.zeros(3, 224, 224)), rule_chunk_size(torch.zeros(3, 96, 96))
    (8, 64)
    """
    per_input = example.numel() * max(example.element_size(), 4)
    chunk = 1
    while chunk * 2 <= max_chunk and chunk * 2 * per_input <= max_bytes:
        chunk *= 2
    return chunk


def best_chunk_size(model, example, *, max_bytes: int = 256 * 2**20, max_chunk: int = 256,
                    max_seconds: float = 3.0, max_images: int | None = None) -> tuple[int, float]:
    """A short calibration: the number of images per forward that gives ``model`` the most
    images per second here, and that rate as seconds per image.

    Forwards copies of ``example`` (one input, ``(C, H, W)``) in chunks of 4, 8, 16, ... up to
    ``max_chunk`` and to ``max_bytes`` of input, once each after a warm-up at the first size;
    stops when two sizes in a row are not 10 % faster per image than the best so far, after
    ``max_seconds``, or before the images forwarded would exceed ``max_images``. Wall time
    decides, so page faults and thread waits count against a size as they do in the run.

    >>> import torch
    >>> chunk, seconds = best_chunk_size(torch.nn.Conv2d(3, 4, 3), torch.ones(3, 8, 8),
    ...                                  max_chunk=16)
    >>> chunk in (4, 8, 16), seconds > 0
    (True, True)
    """
    per_input = example.numel() * max(example.element_size(), 4)
    sizes = [c for c in (4, 8, 16, 32, 64, 128, 256, 512, 1024)
             if c <= max_chunk and c * per_input <= max_bytes] or [1]
    timed_forward(model, example.expand(sizes[0], *example.shape).contiguous())  # warm-up
    best, best_rate, misses, spent = sizes[0], float("inf"), 0, sizes[0]
    start = time.perf_counter()
    for c in sizes:
        if max_images is not None and spent + c > max_images and best_rate < float("inf"):
            break
        _, rate = timed_forward(model, example.expand(c, *example.shape).contiguous())
        spent += c
        misses = 0 if rate < 0.9 * best_rate else misses + 1
        if rate < best_rate:
            best, best_rate = c, rate
        if misses >= 2 or time.perf_counter() - start > max_seconds:
            break
    return best, best_rate


def keep_freed_memory(limit_bytes: int = 2**30) -> bool:
    """Let glibc keep freed blocks up to ``limit_bytes`` for reuse: returns whether it could.

    By default glibc serves every allocation above 32 MiB (a chunk's activations, a batch of
    masked images) with fresh pages from the kernel and unmaps them when freed, so each forward
    pays one page fault per 4 KiB it touches: on CPU that system time can exceed the forward
    itself (EfficientNet-Lite0, 64 images at 224 x 224: 27.6 s of wall time instead of 5.8 s,
    see docs/performance.md). This sets ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` with
    ``mallopt``: memory freed after a forward is reused by the next. It changes the allocator of
    the whole process for its lifetime (the resident size stays near its peak), so the
    ``finercam evaluate`` command calls it and a library call does not; elsewhere than glibc
    it does nothing and returns False.

    >>> isinstance(keep_freed_memory(), bool)
    True
    """
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, int(limit_bytes))) and \
        bool(mallopt(m_trim_threshold, int(limit_bytes)))
