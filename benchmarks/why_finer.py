"""Why does Finer change a model's maps a lot or hardly at all?  A diagnostic for docs/benchmark.md.

Finer-Grad-CAM explains ``y_c - gamma * y_d``. Where the reference's Grad-CAM map ``M_d`` has the
same spatial pattern as the target's ``M_c`` (the features at each location say "this bird" rather
than "this part"), ``M_c - gamma * M_d`` is ``M_c`` rescaled, and after min-max normalisation the
Finer map equals the baseline. This script measures, per model and layer, on the demo's test
images (true labels, nearest-logit reference):

* corr(M_c, M_d): mean Pearson correlation of the target's and the nearest reference's Grad-CAM
  maps at the layer's grid;
* corr(base, Finer): of the baseline and Finer (T = 1, gamma 0.6) maps;
* the share of each map's energy inside the ground-truth discriminative region;
* |Md|/|Mc|: median ratio of the reference's and the target's (ReLU'd) map mass, and the median
  logit gap y_c - y_d: when the target's evidence dwarfs the reference's, subtracting
  ``gamma * M_d`` changes little.

    python benchmarks/why_finer.py [--images 64]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

import finercam
from finercam import metrics
from finercam.diagnose import map_correlation
from finercam.evaluation.tables import mean_of_defined
from finercam.world import datasets, models


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=64)
    args = p.parse_args()
    batch = datasets.generate(args.images, seed=0, split="test")
    x, labels = torch.from_numpy(batch.images), torch.from_numpy(batch.labels)
    print(f"{'model':5} {'layer':16} {'grid':>6} {'corr(Mc,Md)':>11} {'corr(base,Finer)':>16} "
          f"{'energy base':>11} {'energy Finer':>12} {'|Md|/|Mc|':>9} {'logit gap':>9}")
    for name, layers in (("cnn", ("block3", "block2")), ("vit", ("blocks.3.norm1",
                                                                 "blocks.2.norm1"))):
        net = models.load(name)
        for layer in layers:
            if layer not in dict(net.named_modules()):
                continue
            exp = finercam.FinerCAM(net, layer, gamma=0.6, num_references=1)(x, targets=labels)
            ref = exp.references[:, 0]
            other = finercam.FinerCAM(net, layer)(x, targets=torch.from_numpy(ref)).baseline()
            base, finer = exp.baseline(), exp
            region = np.stack([datasets.discriminative_mask(batch.parts[i], int(labels[i]),
                                                            int(ref[i])) for i in range(len(x))])
            e_base = np.nanmean(metrics.energy_in_mask(base.maps, region))
            e_finer = np.nanmean(metrics.energy_in_mask(finer.maps, region))
            mc = base.raw_maps.reshape(len(x), -1).sum(1)
            md = other.raw_maps.reshape(len(x), -1).sum(1)
            ratio = float(np.median(md[mc > 0] / mc[mc > 0]))
            rows = np.arange(len(x))
            gap = float(np.median(exp.logits[rows, labels.numpy()] - exp.logits[rows, ref]))
            grid = "x".join(str(s) for s in base.raw_maps.shape[1:])
            corr_ref = mean_of_defined(map_correlation(base.raw_maps, other.raw_maps))
            corr_finer = mean_of_defined(map_correlation(base.maps, finer.maps))
            print(f"{name:5} {layer:16} {grid:>6} {corr_ref:11.3f} {corr_finer:16.3f} "
                  f"{e_base:11.3f} {e_finer:12.3f} {ratio:9.3f} {gap:9.2f}")


if __name__ == "__main__":
    main()
