"""Fused post-processing: the C core against the same computation as a torch op sequence and as
NumPy, timed in one run and printed as ratios.

    python benchmarks/bench_kernels.py            # or: make bench

Cases (the issue's):
  A. CAMs of 8 images x 4 weight sets from 8 x 2048 x 7 x 7 activations -> 224 x 224 normalised
     maps: combine (einsum), ReLU, bilinear resize, per-map min-max.
  B. 64 maps of 7 x 7 -> 224 x 224: ReLU, resize, min-max.

The C core runs on one thread. torch is timed at 1 thread and at its default thread count;
NumPy's elementwise ufuncs are single-threaded. Each path is timed `--repeats` times, the paths
interleaved so that machine noise hits them alike; the median (or, with ``--stat min``, the best)
is reported, with the machine's load average.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from finercam import kernels

EPS = 1e-8
SIZE = 224


def torch_postprocess(cams: torch.Tensor) -> torch.Tensor:
    """(M, h, w) -> (M, 224, 224): the op sequence a PyTorch CAM library runs."""
    up = F.interpolate(cams.relu().unsqueeze(1), size=(SIZE, SIZE), mode="bilinear",
                       align_corners=False).squeeze(1)
    lo = up.amin(dim=(1, 2), keepdim=True)
    hi = up.amax(dim=(1, 2), keepdim=True)
    return (up - lo) / (hi - lo + EPS)


def numpy_postprocess(cams: np.ndarray) -> np.ndarray:
    """The same in float32 NumPy: separable half-pixel bilinear by gathers and lerps."""
    def axis(n_in, n_out):
        src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
        i0 = np.minimum(np.floor(src).astype(np.intp), n_in - 1)
        return i0, np.minimum(i0 + 1, n_in - 1), (src - i0).astype(np.float32)

    m = np.maximum(cams, 0)
    r0, r1, ry = axis(m.shape[1], SIZE)
    c0, c1, cx = axis(m.shape[2], SIZE)
    rows = m[:, :, c0] + cx * (m[:, :, c1] - m[:, :, c0])
    up = rows[:, r0] + ry[:, None] * (rows[:, r1] - rows[:, r0])
    lo = up.min(axis=(1, 2), keepdims=True)
    hi = up.max(axis=(1, 2), keepdims=True)
    return (up - lo) / (hi - lo + EPS)


def _time_ms(fns: dict, repeats: int, stat) -> dict:
    times = {name: [] for name in fns}
    for fn in fns.values():
        fn()  # warm-up: first-touch allocations, torch kernels' dispatch caches
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: 1e3 * stat(t) for name, t in times.items()}


def _with_threads(n, fn):
    def run():
        prev = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            return fn()
        finally:
            torch.set_num_threads(prev)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--stat", choices=["median", "min"], default="median",
                        help="per-path statistic; `min` is the steadier one on a busy machine")
    args = parser.parse_args()
    stat = statistics.median if args.stat == "median" else min
    default_threads = torch.get_num_threads()
    rng = np.random.default_rng(0)

    acts = rng.standard_normal((8, 2048, 7, 7), dtype=np.float32)
    weights = (rng.standard_normal((8, 4, 2048), dtype=np.float32) * 0.02)
    acts_t, weights_t = torch.from_numpy(acts), torch.from_numpy(weights)
    maps = rng.standard_normal((64, 7, 7), dtype=np.float32)
    maps_t = torch.from_numpy(maps)

    def c_a():
        return kernels.postprocess(kernels.combine(acts, weights).reshape(32, 7, 7), SIZE)

    def torch_a():
        with torch.no_grad():
            cams = torch.einsum("ngk,nkhw->nghw", weights_t, acts_t).reshape(32, 7, 7)
            return torch_postprocess(cams)

    def numpy_a():
        cams = np.einsum("ngk,nkhw->nghw", weights, acts).reshape(32, 7, 7)
        return numpy_postprocess(cams)

    def c_b():
        return kernels.postprocess(maps, SIZE)

    def torch_b():
        with torch.no_grad():
            return torch_postprocess(maps_t)

    def numpy_b():
        return numpy_postprocess(maps)

    cases = {
        "A  8x2048x7x7, 4 weight sets -> 32 x 224x224": (c_a, torch_a, numpy_a),
        "B  64 maps 7x7 -> 64 x 224x224": (c_b, torch_b, numpy_b),
    }
    print(f"finercam kernel benchmark: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__} (default {default_threads} threads), "
          f"numpy {np.__version__}; {args.stat} of {args.repeats} interleaved runs; "
          f"load average {os.getloadavg()[0]:.1f}")
    print("C core: 1 thread; torch at 1 thread and at its default; NumPy: 1 thread\n")
    header = (f"{'case':<46} {'C ms':>7} {'torch@1':>8} {f'torch@{default_threads}':>8} "
              f"{'numpy':>8} {'torch@1/C':>10} {f'torch@{default_threads}/C':>10} {'numpy/C':>8}")
    print(header)
    print("-" * len(header))
    for name, (c_fn, t_fn, n_fn) in cases.items():
        # the three paths agree before they are timed
        c_out, t_out, n_out = c_fn(), t_fn().numpy(), n_fn()
        assert np.abs(c_out - t_out).max() < 1e-4 and np.abs(c_out - n_out).max() < 1e-4
        ms = _time_ms({"c": c_fn, "t1": _with_threads(1, t_fn),
                       "td": _with_threads(default_threads, t_fn), "np": n_fn}, args.repeats, stat)
        print(f"{name:<46} {ms['c']:7.2f} {ms['t1']:8.2f} {ms['td']:8.2f} {ms['np']:8.2f} "
              f"{ms['t1'] / ms['c']:9.1f}x {ms['td'] / ms['c']:9.1f}x {ms['np'] / ms['c']:7.1f}x")


if __name__ == "__main__":
    main()
