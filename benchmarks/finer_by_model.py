"""Does Finer focus a model's map? The same measurement on several checkpoints of our models.

docs/benchmark.md found that Finer-Grad-CAM and Finer-Layer-CAM move the shipped (hybrid) ViT's
maps onto the bird, while the earlier ViT trained from scratch was only reshaped. This script
repeats the demo's single-reference measurement (200 test images of seed 0, true labels, the
nearest-logit reference, gamma 0.6, maps at the input size, each model's default layer) for
any checkpoints written by ``finercam train`` (CNN or ViT), so that training runs can be compared:

* box energy (the paper's energy pointing game) of the baseline and the Finer map, and their
  paired difference with its standard error;
* the share of map energy inside the ground-truth discriminative region (target vs reference);
* how often the nearest reference is a sibling, and the model's accuracy on these images.

    python benchmarks/finer_by_model.py vit=finercam/world/models/weights/vit.pt other=path/to/vit.pt

Without arguments: the two shipped models.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

import finercam
from finercam import metrics
from finercam.world import datasets, models


def _paired(a: np.ndarray, b: np.ndarray) -> str:
    ok = np.isfinite(a) & np.isfinite(b)  # an empty map has no energy share
    d = b[ok] - a[ok]
    return f"{d.mean():+.3f} +- {d.std(ddof=1) / np.sqrt(len(d)):.3f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoints", nargs="*", help="NAME=PATH of a checkpoint of our CNN or ViT")
    p.add_argument("--images", type=int, default=200)
    args = p.parse_args()
    pairs = [c.split("=", 1) for c in args.checkpoints] or [[m, str(models.WEIGHTS_DIR / f"{m}.pt")]
                                                              for m in models.MODELS]
    batch = datasets.generate(args.images, seed=0, split="test")
    x, labels = torch.from_numpy(batch.images), torch.from_numpy(batch.labels)
    boxes = metrics.boxes_to_masks(batch.boxes, x.shape[-2:])
    family = np.asarray([datasets.CLASS_FAMILY[c] for c in range(datasets.NUM_CLASSES)])
    print(f"{'model':12} {'acc':>5} {'sibling':>7} {'method':9} {'box base':>8} {'Finer':>6} "
          f"{'box diff':>16} {'disc base':>9} {'Finer':>6} {'disc diff':>16}")
    for name, path in pairs:
        net = models.load(torch.load(path, weights_only=True)["model"], path)
        for method in ("gradcam", "layercam"):
            exp = finercam.FinerCAM(net, net.default_target_layer, method=method, gamma=0.6,
                                    num_references=1)(x, targets=labels)
            ref = exp.references[:, 0]
            base = exp.baseline()
            region = np.stack([datasets.discriminative_mask(batch.parts[i], int(labels[i]), int(ref[i]))
                               for i in range(len(x))])
            box_b, box_f = metrics.energy_in_mask(base.maps, boxes), metrics.energy_in_mask(exp.maps, boxes)
            dis_b, dis_f = metrics.energy_in_mask(base.maps, region), metrics.energy_in_mask(exp.maps, region)
            acc = float((exp.logits.argmax(1) == batch.labels).mean())
            sib = float((family[ref] == family[batch.labels]).mean())
            print(f"{name:12} {acc:5.3f} {sib:7.3f} {method:9} {np.nanmean(box_b):8.3f} "
                  f"{np.nanmean(box_f):6.3f} {_paired(box_b, box_f):>16} {np.nanmean(dis_b):9.3f} "
                  f"{np.nanmean(dis_f):6.3f} {_paired(dis_b, dis_f):>16}")


if __name__ == "__main__":
    main()
