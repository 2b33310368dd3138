"""ROAD: the C core's imputation against pytorch-grad-cam's, and a ROAD column against the bare
forward passes it needs.

Prints times measured in this one run and their ratios (no absolute targets: machines differ).

* imputation: ``kernels.road_impute`` (multigrid-preconditioned conjugate gradients to a relative
  residual of 1e-6, threaded over (image, mask) pairs) against pytorch-grad-cam 1.5.7's
  ``NoisyLinearImputer`` (SciPy's ``spsolve`` per image and mask, one thread), on the same
  224 x 224 photos (``/work/shared/images`` or ``examples/photos``, ImageNet preprocessing) and
  the same removal masks: the MoRF sets of Grad-CAM maps of EfficientNet-Lite0 at 10 %, ..., 90 %.
  Also the largest per-pixel difference (noise 0 on both sides). Goal: >= 20x.
* ROAD column: ``metrics.road`` (MoRF and LeRF at 9 fractions: 18 imputations and 18 masked
  forwards per image, plus one unmasked forward) against those 1 + 18 forwards alone on ready-made
  inputs, with the same chunking. Goal: <= 1.2x.

Run: ``python benchmarks/bench_road.py [--n 6] [--repeat 1]``; pytorch-grad-cam
is imported over a stand-in torchvision as in tests/engine/test_finer_pgc.py.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
# test_finer_pgc (the stand-in torchvision) and what it imports (tests/models_for_tests.py)
sys.path[:0] = [str(ROOT / "tests" / "engine"), str(ROOT / "tests")]

from finercam import FinerCAM, kernels, metrics  # noqa: E402
from finercam.images import read_image  # noqa: E402
from finercam.world.models.imagenet import load_imagenet  # noqa: E402


def photos(transform, n):
    folder = Path("/work/shared/images")
    folder = folder if folder.is_dir() else ROOT / "examples" / "photos"
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in (".jpg", ".png", ".jfif"))
    files = (files * n)[:n]
    return torch.stack([transform(read_image(f)) for f in files]), [f.name for f in files]


def pgc_imputer():
    from test_finer_pgc import _stand_in_torchvision  # type: ignore[import-not-found]  # tests/engine on sys.path

    for name, module in _stand_in_torchvision().items():
        sys.modules[name] = module
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer  # type: ignore[import-untyped]

    return NoisyLinearImputer(noise=0.0)


def timed(fn, repeat):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    torch.manual_seed(0)
    net = load_imagenet()
    model, layer = net.model.eval(), net.target_layers[0]
    images, names = photos(net.preprocess, args.n)
    maps = FinerCAM(model, layer, gamma=0.0)(images).maps
    fractions = metrics.ROAD_FRACTIONS
    removed = metrics.road_masks(maps, fractions, "morf")
    host = images.numpy()
    n, f = len(images), len(fractions)
    print(f"{n} photos ({', '.join(sorted(set(names)))}), {tuple(images.shape[2:])}, "
          f"{f} MoRF masks each; torch threads {torch.get_num_threads()}, C core threads "
          f"{kernels.get_num_threads()}")

    # --- imputation ---
    imputer = pgc_imputer()

    def theirs():
        return np.stack([imputer(images[i], torch.from_numpy(np.float32(~removed[i, s]))).numpy()
                         for i in range(n) for s in range(f)])

    t_pgc, ref = timed(theirs, args.repeat)
    t_ours, ours = timed(lambda: kernels.road_impute(host, removed, noise=0.0), args.repeat)
    old = kernels.get_num_threads()
    kernels.set_num_threads(1)
    t_one, _ = timed(lambda: kernels.road_impute(host, removed, noise=0.0), args.repeat)
    kernels.set_num_threads(old)
    err = float(np.abs(ours - ref).max())
    k = n * f
    print(f"imputation, {k} systems: pytorch-grad-cam {t_pgc:.2f} s ({1000 * t_pgc / k:.0f} ms each); "
          f"C core {t_ours:.3f} s ({1000 * t_ours / k:.1f} ms each) -> {t_pgc / t_ours:.1f}x; "
          f"one thread {t_one:.3f} s -> {t_pgc / t_one:.1f}x; max |difference| {err:.1e}")

    # --- a ROAD column against its forwards ---
    targets = FinerCAM(model, layer, gamma=0.0)(images).targets
    bs = args.batch_size

    def column():
        return metrics.road(model, images, maps, targets, fractions, batch_size=bs)

    masked = torch.from_numpy(kernels.road_impute(
        host, np.concatenate([removed, metrics.road_masks(maps, fractions, "lerf")], axis=1), noise=0.0))

    def forwards():
        with torch.no_grad():
            model(images)
            for j in range(0, masked.shape[0], bs):
                model(masked[j:j + bs])

    t_col, _ = timed(column, args.repeat)
    t_fwd, _ = timed(forwards, args.repeat)
    print(f"ROAD column (MoRF + LeRF at {f} fractions, {n} images, {masked.shape[0] + n} forwards of one image): "
          f"{t_col:.2f} s; the forwards alone {t_fwd:.2f} s -> {t_col / t_fwd:.2f}x")


if __name__ == "__main__":
    main()
