"""The randomisation test and the ROAD and insertion columns on our models: does Finer pass the
sanity check as its base method does, and does ROAD rank Finer and its base method as deletion
does (docs/benchmark.md, "Sanity checks and ROAD").

Models: the embedded CNN and ViT and the linear probe on bird-world test images (96 px; the
probe's at 224), EfficientNet-Lite0 (ImageNet) on the real photos of /work/shared/images (or
examples/photos). Method: Grad-CAM and Grad-CAM + Finer (gamma 0.6, 3 nearest-logit references,
fixed to the trained model's for the randomisation test), explained for the predicted class.

* randomisation (cascading, every block): mean Spearman |map| and SSIM with every block random,
  with standard errors over the images; "passes" = mean Spearman |map| < 0.5. The edge detector
  is the control that must fail.
* columns: deletion AUC (20 steps, baseline 0), insertion AUC (20 steps, from the blur), ROAD-MoRF,
  ROAD-LeRF and their combination (fractions 0.1..0.9, noise 0.01, seed 0), for both maps; the
  paired difference Finer - base with its standard error, and whether ROAD-MoRF orders the two as
  deletion does (both: lower is better).

Run: ``nice python benchmarks/metrics_on_models.py [--models cnn vit probe imagenet] [--n 16]``.
Prints Markdown.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]

from finercam import FinerCAM, metrics  # noqa: E402


def mean_se(v) -> str:
    v = np.asarray(v, dtype=np.float64)
    v = v[np.isfinite(v)]
    se = v.std(ddof=1) / np.sqrt(v.size) if v.size > 1 else 0.0
    return f"{v.mean():.3f} ± {se:.3f}"


def load(name: str, n: int):
    if name == "imagenet":
        from finercam.images import read_image
        from finercam.world.models.imagenet import load_imagenet

        net = load_imagenet()
        folder = Path("/work/shared/images")
        folder = folder if folder.is_dir() else ROOT / "examples" / "photos"
        files = sorted(f for f in folder.iterdir() if f.suffix.lower() in (".jpg", ".png", ".jfif"))[:n]
        return net.model.eval(), net.target_layers[0], torch.stack([net.preprocess(read_image(f)) for f in files])
    from finercam.world.datasets import generate
    from finercam.world.models import default_target_layer
    from finercam.world.models import load as load_world

    model = load_world(name)
    layer = getattr(model, "default_target_layer", None) or default_target_layer(name)
    size = 224 if name == "probe" else 96
    return model, layer, torch.from_numpy(generate(n, seed=0, split="test", size=size).images)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["cnn", "vit", "probe", "imagenet"])
    ap.add_argument("--n", type=int, default=16)
    args = ap.parse_args()
    torch.manual_seed(0)
    sanity_rows, column_rows, order_rows = [], [], []
    for name in args.models:
        t0 = time.perf_counter()
        model, layer, images = load(name, args.n)
        exp = FinerCAM(model, layer, gamma=0.6)(images)
        t, refs = exp.targets, exp.references
        maps = {"Grad-CAM": exp.baseline().maps, "Grad-CAM + Finer": exp.maps}
        explainers = {"Grad-CAM": metrics.cam_explainer(layer),
                      "Grad-CAM + Finer": metrics.cam_explainer(layer, gamma=0.6, references=refs.tolist()),
                      "Edges (control)": metrics.edge_explainer}
        r = metrics.randomisation_test(model, images, explainers, targets=t, modes=("cascading",))
        verdict = r.passes()
        for m in explainers:
            last = {k: v[-1] for k, v in r.cascading[m].items()}
            sanity_rows.append(f"| {name} | {len(images)} | {len(r.blocks)} | {m} | {mean_se(last['spearman_abs'])} | "
                               f"{mean_se(last['ssim'])} | {'yes' if verdict[m] else 'no'} |")
        scores = {}
        for m, mp in maps.items():
            d = metrics.deletion_auc(model, images, mp, t, steps=20)
            ins = metrics.insertion_auc(model, images, mp, t, steps=20)
            road = metrics.road(model, images, mp, t)
            scores[m] = {"Del. ↓": d.auc, "Ins. ↑": ins.auc, "ROAD-MoRF ↓": road.morf,
                         "ROAD-LeRF ↑": road.lerf, "ROAD ↑": road.combined}
            column_rows.append(f"| {name} | {m} | " + " | ".join(mean_se(v) for v in scores[m].values()) + " |")
        diff = {k: scores["Grad-CAM + Finer"][k] - scores["Grad-CAM"][k] for k in scores["Grad-CAM"]}
        column_rows.append(f"| {name} | Finer - base | " + " | ".join(mean_se(v) for v in diff.values()) + " |")
        same = np.mean(np.sign(diff["Del. ↓"]) == np.sign(diff["ROAD-MoRF ↓"]))
        order_rows.append(f"| {name} | {mean_se(diff['Del. ↓'])} | {mean_se(diff['ROAD-MoRF ↓'])} | "
                          f"{mean_se(diff['ROAD ↑'])} | {100 * same:.0f} % |")
        print(f"{name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    print("| Model | Images | Blocks | Method | Spearman \\|map\\| (all random) | SSIM (all random) | Passes |")
    print("|---|---:|---:|---|---:|---:|---|")
    print("\n".join(sanity_rows))
    print()
    print("| Model | Maps | Del. ↓ | Ins. ↑ | ROAD-MoRF ↓ | ROAD-LeRF ↑ | ROAD ↑ |")
    print("|---|---|---:|---:|---:|---:|---:|")
    print("\n".join(column_rows))
    print()
    print("| Model | Δ Del. (Finer - base) | Δ ROAD-MoRF | Δ ROAD | images where Δ Del. and Δ ROAD-MoRF agree in sign |")
    print("|---|---:|---:|---:|---:|")
    print("\n".join(order_rows))


if __name__ == "__main__":
    main()
