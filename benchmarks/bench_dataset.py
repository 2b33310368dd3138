"""Generation speed of the bird world: milliseconds per 96 x 96 image, by stage.

    python benchmarks/bench_dataset.py [--n 1024]

Prints the time per image of the whole generator and of its stages (parameter sampling,
background, bird silhouettes), each the best of ``--repeat`` runs, single-threaded NumPy.  Both
wall-clock and process CPU time are shown: on a shared machine the CPU time is the better guide
to what an idle core would take.
"""
import argparse
import time

import numpy as np

from finercam.world import datasets
from finercam.world.datasets import render


def best(fn, repeat, clock=time.perf_counter):
    times = []
    for _ in range(repeat):
        t = clock()
        fn()
        times.append(clock() - t)
    return min(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n = args.n
    total = best(lambda: datasets.generate(n, seed=0, split="train"), args.repeat)
    total_cpu = best(lambda: datasets.generate(n, seed=0, split="train"), args.repeat, time.process_time)
    total_u8 = best(lambda: datasets.generate(n, seed=0, split="train", dtype=np.uint8), args.repeat)
    labels = np.arange(datasets.CHUNK) % datasets.NUM_CLASSES
    rng = np.random.default_rng(0)
    params = render.sample_params(labels, rng)
    size = 96
    coords = np.arange(size, dtype=np.float32) + 0.5 - size / 2
    gx = np.broadcast_to(coords[None, None, :], (len(labels), size, size))
    gy = np.broadcast_to(coords[None, :, None], (len(labels), size, size))
    per = 1000 / len(labels)
    t_sample = best(lambda: render.sample_params(labels, rng), 5 * args.repeat) * per
    t_bg = best(lambda: render._background(params, gx, gy), 5 * args.repeat) * per
    t_leaves = best(lambda: render._leaf_ids(params, size), 5 * args.repeat) * per
    t_bird = best(lambda: render._bird_shapes(params, gx, gy), 5 * args.repeat) * per
    t_render = best(lambda: render.render(params), 5 * args.repeat) * per
    print(f"generate float32: {1000 * total / n:.2f} ms/image wall ({n / total:.0f} images/s), "
          f"{1000 * total_cpu / n:.2f} ms/image CPU; "
          f"uint8: {1000 * total_u8 / n:.2f} ms/image")
    print(f"  sample_params {t_sample:.2f} | render {t_render:.2f} ms/image, of which background "
          f"{t_bg:.2f}, leaves {t_leaves:.2f}, bird silhouettes {t_bird:.2f}")


if __name__ == "__main__":
    main()
