"""Metrics: the C core's ranking and masked-batch construction against NumPy and torch.

Prints times measured in this one run and their ratios (no absolute targets: machines differ).
The C core runs at its thread setting (``kernels.get_num_threads()``, by default the CPUs
available, at most 8) and, on a second line, single-threaded; torch at its own setting
(``OMP_NUM_THREADS``). Ratios are against the C core at its setting.

* ranking: ``kernels.argsort_desc`` (radix sort) vs ``np.argsort(kind="stable")`` and
  ``torch.argsort(stable=True)``, descending;
* masking: ``kernels.mask_top`` (rank + every masked copy in one pass, into a preallocated
  buffer) vs the NumPy and torch equivalents (stable argsort, scatter of the top-k into a
  keep-mask, one ``where`` per count), for RD@{0.05, 0.1} (2 counts) and deletion (21 counts);
* forward passes: how many batched forwards RD@{0.05, 0.1} and a 20-step deletion cost.

Run: ``python benchmarks/bench_metrics.py [--n 16] [--size 224] [--repeat 5]``.
"""
from __future__ import annotations

import argparse
import functools
import os
import time

import numpy as np
import torch

from finercam import kernels, metrics


def best_of(fn, repeat):
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def single_threaded(fn):
    """fn run with the C core on one thread (the setting restored after each call)."""
    def run():
        before = kernels.get_num_threads()
        kernels.set_num_threads(1)
        try:
            return fn()
        finally:
            kernels.set_num_threads(before)
    return run


def numpy_mask(images, maps, base, counts, out):
    n = images.shape[0]
    s = len(counts)
    order = np.argsort(-maps.reshape(n, -1), axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(order.shape[1])[None, :], axis=1)
    rank = rank.reshape(n, 1, *maps.shape[1:])
    view = out.reshape(n, s, *images.shape[1:])
    for j, k in enumerate(counts):
        np.copyto(view[:, j], np.where(rank < k, base, images))
    return out


def torch_mask(images, maps, base, counts, out):
    n = images.shape[0]
    s = len(counts)
    order = torch.argsort(maps.reshape(n, -1), dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1]).expand(n, -1))
    rank = rank.reshape(n, 1, *maps.shape[1:])
    view = out.view(n, s, *images.shape[1:])
    for j, k in enumerate(counts):
        torch.where(rank < int(k), base, images, out=view[:, j])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    n, size = args.n, args.size
    rng = np.random.default_rng(0)
    images = rng.standard_normal((n, 3, size, size)).astype(np.float32)
    # maps as a CAM pipeline gives them: a 7x7 grid upsampled and min-maxed
    maps = kernels.postprocess(rng.random((n, 7, 7)).astype(np.float32), size)
    base = np.zeros_like(images)
    ti, tm, tb = map(torch.from_numpy, (images, maps, base))
    c_threads, t_threads = kernels.get_num_threads(), torch.get_num_threads()
    print(f"C core {c_threads} threads (and 1), torch {torch.__version__} {t_threads} threads; "
          f"{n} images 3x{size}x{size}; load average {os.getloadavg()[0]:.1f}")
    c_name, c1_name, t_name = (f"C ({c_threads} threads)", "C (1 thread)",
                               f"torch ({t_threads} threads)")

    flat = maps.reshape(n, size, size)
    c_sort = lambda: kernels.argsort_desc(flat)  # noqa: E731
    t_c = best_of(c_sort, args.repeat)
    t_c1 = best_of(single_threaded(c_sort), args.repeat)
    t_np = best_of(lambda: np.argsort(-flat.reshape(n, -1), axis=1, kind="stable"), args.repeat)
    t_t = best_of(lambda: torch.argsort(tm.reshape(n, -1), dim=1, descending=True, stable=True),
                  args.repeat)
    want = np.argsort(-flat.reshape(n, -1), axis=1, kind="stable")
    assert np.array_equal(c_sort(), want) and np.array_equal(single_threaded(c_sort)(), want)
    print("\nranking (stable, descending)                  time      vs C")
    print(f"  {c_name + ' radix sort':<38} {t_c * 1e3:9.2f} ms    1.00x")
    print(f"  {c1_name + ' radix sort':<38} {t_c1 * 1e3:9.2f} ms {t_c1 / t_c:7.2f}x")
    print(f"  {'numpy argsort(kind=stable)':<38} {t_np * 1e3:9.2f} ms {t_np / t_c:7.2f}x")
    print(f"  {t_name + ' argsort(stable=True)':<38} {t_t * 1e3:9.2f} ms {t_t / t_c:7.2f}x")

    hw = size * size
    cases = {
        "RD@{0.05,0.1}": np.array([metrics.top_count(0.05, hw), metrics.top_count(0.1, hw)]),
        "deletion 20 steps": -((-np.arange(21) * hw) // 20),
    }
    for name, counts in cases.items():
        s = len(counts)
        out_c = np.empty((n * s, 3, size, size), np.float32)
        out_c1 = np.empty_like(out_c)
        out_n = np.empty_like(out_c)
        out_t = torch.empty(out_c.shape)
        # The timed calls bind this case's counts and outputs now (each is timed within the case).
        c_mask = functools.partial(kernels.mask_top, images, maps, base, counts, out=out_c)
        t_c = best_of(c_mask, args.repeat)
        t_c1 = best_of(single_threaded(
            functools.partial(kernels.mask_top, images, maps, base, counts, out=out_c1)), args.repeat)
        t_np = best_of(functools.partial(numpy_mask, images, maps, base, counts, out_n), args.repeat)
        t_t = best_of(functools.partial(torch_mask, ti, tm, tb, counts, out_t), args.repeat)
        assert np.array_equal(out_c, out_n) and np.array_equal(out_c, out_t.numpy())
        assert np.array_equal(out_c, out_c1)
        mb = out_c.nbytes / 2**20
        print(f"\nmasked batch, {name}: {s} counts, {n * s} images, {mb:.0f} MiB   time      vs C")
        print(f"  {c_name + ' mask_top (rank + fill)':<38} {t_c * 1e3:9.2f} ms    1.00x")
        print(f"  {c1_name + ' mask_top':<38} {t_c1 * 1e3:9.2f} ms {t_c1 / t_c:7.2f}x")
        print(f"  {'numpy argsort + scatter + where':<38} {t_np * 1e3:9.2f} ms {t_np / t_c:7.2f}x")
        print(f"  {t_name + ' argsort+scatter+where':<38} {t_t * 1e3:9.2f} ms {t_t / t_c:7.2f}x")

    calls = []
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 7, stride=4), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(8, 10)).eval()

    def counting(x):
        calls.append(x.shape[0])
        return net(x)

    x = torch.from_numpy(images)
    t0 = time.perf_counter()
    metrics.evaluate_maps(counting, x, maps, targets=0, fractions=(0.05, 0.1), steps=None,
                          batch_size=n)
    t_rd = time.perf_counter() - t0
    rd_calls = len(calls)
    calls.clear()
    t0 = time.perf_counter()
    metrics.deletion_auc(counting, x, maps, targets=0, steps=20, batch_size=n)
    t_del = time.perf_counter() - t0
    print(f"\nforwards of the batch (batch_size={n}): RD@{{0.05,0.1}} {rd_calls} "
          f"({t_rd * 1e3:.0f} ms with a toy model), deletion 20 steps {len(calls)} "
          f"({t_del * 1e3:.0f} ms)")
    print(f"evaluate_maps with fractions (0.05, 0.1) and 20 steps shares counts: "
          f"{1 + 20} forwards of the batch, not {rd_calls + len(calls)} (the two separately)")


if __name__ == "__main__":
    main()
