"""The plan of a run: what it computes per image, what that costs, and how many images go into
one forward.

:class:`RunCost` says what a run does per image (maps, forwards by purpose) and estimates its
time from one timed forward (:func:`finercam.progress.timed_forward`). :func:`default_methods`
picks the methods when none are given; :func:`choose_chunk_size` the images per forward of masked
inputs: the fastest size of a short calibration (:func:`best_chunk_size`) when that costs at most
:data:`CALIBRATION_SHARE` of the run's forwards, else a rule (:func:`rule_chunk_size`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from .. import metrics
from ..progress import format_seconds, timed_forward

__all__ = ["CALIBRATION_SHARE", "SCORECAM_COST_FACTOR", "RunCost", "best_chunk_size",
           "choose_chunk_size", "default_methods", "keep_freed_memory", "masked_counts", "run_cost",
           "rule_chunk_size"]

#: Score-CAM joins the default methods when its forwards per image (one per channel of the
#: target layer) are at most this many times the forwards the metrics make for its rows.
SCORECAM_COST_FACTOR = 4
#: The share of a run's forwards a calibration of the chunk size may take.
CALIBRATION_SHARE = 0.02


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


# The allocator setting lives beside the chunk rule because it is the other half of the same
# decision: rule_chunk_size keeps a chunk's activations under glibc's 32 MiB threshold for
# reusing freed memory; keep_freed_memory raises that threshold for a process that owns itself
# (a command, a benchmark). A library call never changes the allocator of its caller's process.
def keep_freed_memory(limit_bytes: int = 2**30) -> bool:
    """Let glibc keep freed blocks up to ``limit_bytes`` for reuse: returns whether it could.

    By default glibc serves every allocation above 32 MiB (a chunk's activations, a batch of
    masked images) with fresh pages from the kernel and unmaps them when freed, so each forward
    pays one page fault per 4 KiB it touches: on CPU that system time can exceed the forward
    itself (EfficientNet-Lite0, 64 images at 224 x 224: 27.6 s of wall time instead of 5.8 s,
    see docs/performance.md). This sets ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` with
    ``mallopt``: memory freed after a forward is reused by the next. It changes the allocator of
    the whole process for its lifetime (the resident size stays near its peak), so the
    ``finercam evaluate`` and ``finercam demo`` commands call it and a library call does not;
    elsewhere than glibc it does nothing and returns False.

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


# --- a run's plan --------------------------------------------------------------------------------


def masked_counts(fractions, steps: int, pixels: int) -> int:
    """Distinct masked-pixel counts a map costs (RD fractions and deletion steps share).

    >>> masked_counts([0.05, 0.1], 4, 16 * 16)   # 13, 26 (RD); 64, 128, 192, 256 (deletion)
    6
    """
    counts = {metrics.top_count(f, pixels) for f in fractions}
    counts |= {int(c) for c in metrics.deletion_counts(steps, pixels)}
    return len(counts - {0})


def default_methods(cfg, channels: int, pixels: int) -> list[str]:
    """Grad-CAM and Layer-CAM, and Score-CAM when its ``channels`` forwards per image are at
    most :data:`SCORECAM_COST_FACTOR` times the metrics' forwards for its rows."""
    metric_forwards = cfg.rows_per_method() * (1 + masked_counts(cfg.fractions, cfg.steps, pixels))
    cheap = channels <= SCORECAM_COST_FACTOR * metric_forwards
    return ["gradcam", "layercam"] + (["scorecam"] if cheap else [])


def run_cost(cfg, channels: int, pixels: int, seconds_per_forward: float) -> RunCost:
    """The :class:`RunCost` of ``cfg`` over all its images (each row: the unmasked image and
    each masked count; Score-CAM: one forward per channel)."""
    rows = len(cfg.settings())
    per_row = 1 + masked_counts(cfg.fractions, cfg.steps, pixels)
    forwards = {f"RD and deletion ({rows} rows x {per_row})": rows * per_row}
    if "scorecam" in cfg.methods:
        forwards[f"Score-CAM ({channels} channels)"] = channels
    return RunCost(cfg.n_images, len(cfg.methods), forwards, seconds_per_forward)


def choose_chunk_size(net, example, given: int | None, cost: RunCost) -> int:
    """Images per forward: ``given`` if not None; else a calibration when the run is long
    enough that it costs at most :data:`CALIBRATION_SHARE` of its forwards; else
    :func:`rule_chunk_size` (8 MiB of input on CPU, 256 MiB on CUDA)."""
    if given is not None:
        return given
    on_gpu = example.is_cuda
    budget = int(CALIBRATION_SHARE * cost.images * cost.forwards_per_image)
    if budget < 4 + 4 + 8 + 16:  # the warm-up and three sizes: too short a run to calibrate
        return rule_chunk_size(example, max_bytes=2**28 if on_gpu else 2**23,
                               max_chunk=256 if on_gpu else 64)
    chunk, _ = best_chunk_size(net, example, max_bytes=2**31 if on_gpu else 2**28,
                               max_chunk=1024 if on_gpu else 256, max_images=budget)
    return chunk
