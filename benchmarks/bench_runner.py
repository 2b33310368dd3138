"""Runner benchmark: what ``finercam evaluate`` costs over the bare forwards its table needs.

``evaluate()`` with its defaults (Grad-CAM and Layer-CAM, plus Score-CAM where the target layer
has few channels; RD@5 %, RD@10 % and a 20-step deletion curve; chunk size from its own
calibration) is timed against the bare forwards of the same table, each kind at its best chunk
size here:

* per image, one forward for the logits;
* per method, one map: a forward and the gradient of the target logit to the target layer
  (Score-CAM: a forward and one masked forward per channel of the layer);
* per row (method with and without Finer), one forward per distinct number of deleted pixels
  (RD's fractions share the deletion curve's steps where they coincide).

Two cases: (a) the embedded CNN on 64 bird-world test images (true labels, boxes), (b)
EfficientNet-Lite0 with its ImageNet weights (``finercam.world.models.imagenet``) on random
224 x 224 images (predicted classes). Prints, per case, the wall-time and CPU-time ratios
``evaluate / bare`` (target <= 1.15) and the runner's system time, which stays small when no
thread spins and no memory is churned: like ``finercam evaluate``, the benchmark first calls
``keep_freed_memory()`` (``--plain-allocator`` leaves glibc as it is, for comparison).

Run: ``PYTHONPATH=. python benchmarks/bench_runner.py`` (``--threads N``, default 1;
``--cnn-images``, ``--imagenet-images``; ``--quick`` for a smoke run).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import resource
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from finercam import metrics  # noqa: E402
from finercam.evaluation import evaluate  # noqa: E402
from finercam.evaluation.plan import keep_freed_memory  # noqa: E402
from finercam.layers import resolve_layers  # noqa: E402

CHUNKS = (4, 8, 16, 32, 64, 128, 256)


class Clock:
    """Wall, process CPU and system seconds of a block."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        self.sys = resource.getrusage(resource.RUSAGE_SELF).ru_stime
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu
        self.sys = resource.getrusage(resource.RUSAGE_SELF).ru_stime - self.sys


def per_image(fn, n: int, reps: int = 3) -> tuple[float, float]:
    """Median (wall, CPU) seconds per image of ``fn()`` over ``n`` images."""
    fn()  # warm-up
    walls, cpus = [], []
    for _ in range(reps):
        with Clock() as c:
            fn()
        walls.append(c.wall / n)
        cpus.append(c.cpu / n)
    return statistics.median(walls), statistics.median(cpus)


def best_forward(net, shape) -> tuple[int, float, float]:
    """(chunk, wall, CPU seconds per image) of the fastest no-grad forward chunk size."""
    best = None
    for chunk in CHUNKS:
        x = torch.rand(chunk, *shape)
        with torch.no_grad():
            wall, cpu = per_image(lambda x=x: net(x), chunk)
        if best is None or wall < best[1]:
            best = (chunk, wall, cpu)
    return best


def best_map(net, layer, shape, batch) -> tuple[float, float]:
    """Wall and CPU seconds per image of a forward plus the target logits' gradient to the
    layer's activation (the least a gradient map needs), on ``batch`` images."""
    module = resolve_layers(net, layer)[0][1]
    x = torch.rand(batch, *shape)
    kept = {}

    def tap(m, i, o):  # autograd starts at the activation, as the runner's hook does
        kept["a"] = o.detach().requires_grad_(True)
        return kept["a"]

    handle = module.register_forward_hook(tap)
    flags = [p.requires_grad for p in net.parameters()]
    for p in net.parameters():  # the gradient goes to the activation only, as the runner's does
        p.requires_grad_(False)

    def one():
        with torch.enable_grad():
            out = net(x)
            torch.autograd.grad(out.gather(1, out.argmax(1)[:, None]).sum(), kept["a"])

    try:
        return per_image(one, batch)
    finally:
        handle.remove()
        for p, flag in zip(net.parameters(), flags, strict=True):
            p.requires_grad_(flag)


def masked_counts(fractions, steps, pixels) -> int:
    counts = {metrics.top_count(f, pixels) for f in fractions}
    counts |= {int(c) for c in metrics.deletion_counts(steps, pixels)}
    return len(counts - {0})


def layer_channels(net, layer, shape) -> int:
    module = resolve_layers(net, layer)[0][1]
    kept = {}
    handle = module.register_forward_hook(lambda m, i, o: kept.__setitem__("a", o))
    try:
        with torch.no_grad():
            net(torch.rand(1, *shape))
    finally:
        handle.remove()
    a = kept["a"]
    return int(a.shape[1] if a.ndim == 4 else a.shape[-1])


def case(name, net, layer, data, n, target, batch):
    shape = tuple(data[0][0].shape)
    fractions, steps = (0.05, 0.1), 20
    said = io.StringIO()
    with Clock() as run, contextlib.redirect_stderr(said), contextlib.redirect_stdout(io.StringIO()):
        res = evaluate(net, layer, data, target=target, batch_size=batch, progress=False,
                       verbose=True, limit=n)
    run_chunk = re.search(r"(\d+) images per forward", said.getvalue()).group(1)
    methods = res.config["methods"]
    chunk, f_wall, f_cpu = best_forward(net, shape)
    m_wall, m_cpu = best_map(net, layer, shape, batch)
    k = layer_channels(net, layer, shape)
    rows = len(res.rows)
    forwards = 1 + rows * masked_counts(fractions, steps, shape[-1] * shape[-2])
    forwards += (1 + k) * methods.count("scorecam")
    maps = len([m for m in methods if m != "scorecam"])
    bare_wall = n * (forwards * f_wall + maps * m_wall)
    bare_cpu = n * (forwards * f_cpu + maps * m_cpu)
    print(f"\n({name}) {n} images {shape}, layer {layer} ({k} channels), methods {methods}, "
          f"{rows} rows; per image {forwards} forwards + {maps} gradient maps; "
          f"chunk: evaluate's {run_chunk}, the best bare {chunk}")
    print(f"  evaluate: wall {run.wall:7.2f} s  CPU {run.cpu:7.2f} s  system {run.sys:5.2f} s "
          f"({100 * run.sys / max(run.wall, 1e-9):.1f} % of wall)")
    print(f"  bare:     wall {bare_wall:7.2f} s  CPU {bare_cpu:7.2f} s  "
          f"(forward {1e3 * f_wall:.2f} ms/img, map {1e3 * m_wall:.2f} ms/img)")
    print(f"  ratio evaluate / bare: wall {run.wall / bare_wall:.3f}  CPU {run.cpu / bare_cpu:.3f}"
          "  (target <= 1.15)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cnn-images", type=int, default=64)
    p.add_argument("--imagenet-images", type=int, default=8)
    p.add_argument("--quick", action="store_true", help="8 and 2 images: a smoke run")
    p.add_argument("--plain-allocator", action="store_true",
                   help="leave glibc's allocator as it is (finercam evaluate calls "
                        "keep_freed_memory(); so does this benchmark by default)")
    args = p.parse_args()
    kept = False if args.plain_allocator else keep_freed_memory()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.cnn_images, args.imagenet_images = 8, 2
    print(f"torch {torch.__version__}, {args.threads} thread(s), load average "
          f"{os.getloadavg()[0]:.1f}, freed memory kept for reuse: {kept}")
    from finercam.world import models
    from finercam.world.datasets import SpotTheDifference

    cnn = models.load("cnn")
    case("a: embedded CNN", cnn, cnn.default_target_layer,
         SpotTheDifference(split="test", n=args.cnn_images), args.cnn_images, "label", 16)

    from finercam.world.models.imagenet import load_imagenet

    net = load_imagenet()
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(args.imagenet_images, 3, net.size, net.size, generator=g) - 0.5) / 0.5
    data = [(x, 0) for x in images]
    case("b: EfficientNet-Lite0", net.model, net.target_layers[0], data, len(data),
         "predicted", 8)


if __name__ == "__main__":
    main()
