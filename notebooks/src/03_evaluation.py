# %% [markdown]
# # Evaluation: the paper's metrics and the Table-1 runner
#
# `finercam.metrics` implements the paper's evaluation exactly as written on the
# [Metrics](../docs/metrics.md) page: the relative confidence drop RD@p (Eq. 10), the target's
# confidence drop (Fig. 6b), deletion AUC and the energy-based pointing game ("Loc."), plus the
# classic pointing game. `finercam.evaluate` runs them over a data set for several CAM methods,
# with and without Finer, and averages them into the paper's Table 1.
#
# Everything runs on the embedded CNN and a few images of the spot-the-difference benchmark.

# %%
%matplotlib inline
%config InlineBackend.figure_formats = ["jpeg"]  # figures small enough to commit
import matplotlib
import numpy as np
import torch

import finercam
from finercam import metrics
from finercam import viz
from finercam.world.datasets import SpotTheDifference, discriminative_mask
from finercam.world.models import load

matplotlib.rcParams["figure.dpi"] = 72

model = load("cnn")
data = SpotTheDifference(split="test", n=32, seed=0)
images = torch.stack([data[i][0] for i in range(8)])
labels = torch.tensor([data[i][1] for i in range(8)])
boxes = torch.stack([data[i][2]["box"] for i in range(8)])

exp = finercam.FinerCAM(model, model.default_target_layer)(images, targets=labels)
base = exp.baseline()

# %% [markdown]
# ## Relative drop (Eq. 10)
#
# Mask the top fraction p of each map's pixels (ties to the lower row-major index; replaced by 0
# in every channel by default) and compare the confidence lost by the target c with that lost by
# the most similar class d:
#
# RD@p = (p_c - p*_c) - (p_d - p*_d), with p = softmax(logits).
#
# `compare_to` defaults to the class whose logit is nearest the target's.

# %%
for name, e in [("Grad-CAM", base), ("Finer-CAM", exp)]:
    rd5 = metrics.relative_drop(model, images, e.maps, labels, fraction=0.05)
    rd10 = metrics.relative_drop(model, images, e.maps, labels, fraction=0.1)
    drop = metrics.confidence_drop(model, images, e.maps, labels, fraction=0.05)
    print(f"{name:10s} RD@0.05 {rd5.mean():+.3f}  RD@0.1 {rd10.mean():+.3f}  drop@0.05 {drop.mean():+.3f}")

# %% [markdown]
# The masked pixel count is `ceil(p * H * W)` (the product rounded to 6 decimals first, at least
# 1): 5% of 96 x 96 is

# %%
metrics.top_count(0.05, 96 * 96)

# %% [markdown]
# ## Deletion (Fig. 5)
#
# Delete the map's top pixels in `steps` equal steps and record the target's probability; the
# AUC is the trapezoid over the deleted fraction in [0, 1] (smaller is better). The result also
# holds the curve of the compared class, whose gap to the target's is the paper's Fig. 5.

# %%
d_base = metrics.deletion_auc(model, images, base.maps, labels, steps=10)
d_finer = metrics.deletion_auc(model, images, exp.maps, labels, steps=10)
print("deletion AUC  Grad-CAM", d_base.auc.mean().round(3), " Finer-CAM", d_finer.auc.mean().round(3))
viz.deletion_curves(d_finer.fractions, d_finer.curve[0], d_finer.reference_curve[0], upto=0.2,
                    title="Finer-CAM, image 0")

# %% [markdown]
# ## Localisation: the energy-based pointing game
#
# The share of the map's energy inside a box or mask, `sum(M inside) / sum(M)` ("Loc.";
# NaN for an all-zero map). Boxes are `(x0, y0, x1, y1)` in pixels, end exclusive. The bird
# world also knows the *discriminative* region: the parts in which the target differs from its
# references.

# %%
box_masks = metrics.boxes_to_masks(boxes.numpy(), (96, 96))
regions = np.stack([discriminative_mask(data[i][2]["parts"].numpy(), int(labels[i]),
                                        exp.references[i].tolist()) for i in range(8)])
for name, e in [("Grad-CAM", base), ("Finer-CAM", exp)]:
    print(f"{name:10s} energy in box {np.nanmean(metrics.energy_in_mask(e.maps, box_masks)):.3f}"
          f"  in the differing parts {np.nanmean(metrics.energy_in_mask(e.maps, regions)):.3f}"
          f"  pointing game (parts) {metrics.pointing_game(e.maps, regions).mean():.3f}")

# %% [markdown]
# ## All of them at once
#
# `evaluate_maps` shares the forward passes between the metrics (RD@0.05 and RD@0.1 are steps 1
# and 2 of a 20-step deletion: 21 forwards in all, not 24).

# %%
scores = metrics.evaluate_maps(model, images, exp.maps, labels, masks=box_masks)
{k: round(float(np.nanmean(v)), 3) for k, v in scores.items() if k not in ("target", "compare_to")}

# %% [markdown]
# ## The Table-1 runner
#
# `finercam.evaluate` explains every image with each method, with and without Finer, scores the
# maps and averages them; `out_dir=` makes the run resumable (per-image JSON lines, appended batch
# by batch) and writes `table.md`, `table.csv` and `table.json`. It takes any torch `Dataset`
# yielding `(image, label)` or `(image, label, box_or_mask)`; the benchmark yields an `info` dict
# as its third item, so a three-line adapter picks the box.

# %%
class WithBoxes(torch.utils.data.Dataset):
    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        image, label, info = self.ds[i]
        return image, label, info["box"]


import tempfile

import finercam

out = tempfile.mkdtemp()
result = finercam.evaluate(model, None, WithBoxes(data), methods=("gradcam",), gammas=(0.2,),
                  steps=10, limit=8, batch_size=8, out_dir=out, progress=False,
                  verbose=False)
print(result.markdown())

# %% [markdown]
# The same run from the command line (see `finercam evaluate --help`), e.g. on a folder of
# images sorted into one sub-folder per class:
#
# ```
# finercam evaluate --model cnn --data path/to/folder --methods gradcam layercam scorecam --out runs/cnn
# ```
#
# A killed run started again with the same arguments skips every batch already recorded:

# %%
again = finercam.evaluate(model, None, WithBoxes(data), methods=("gradcam",), gammas=(0.2,),
                 steps=10, limit=8, batch_size=8, out_dir=out, progress=False,
                 verbose=False)
assert again.rows == result.rows
sorted(p.name for p in __import__("pathlib").Path(out).iterdir())
