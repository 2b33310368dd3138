# %% [markdown]
# # Finer-CAM on your own model
#
# `finercam.FinerCAM` works on any `torch.nn.Module` classifier. This notebook defines a small CNN
# and a small ViT right here and shows the three choices you make for your own model:
#
# 1. **the target layer**: a module or its dotted name; several layers are fused;
# 2. **how its output becomes a grid**: CNN layers already give (N, K, h, w); ViT layers give
#    tokens (N, L, D), laid on the patch grid automatically (class and register tokens dropped),
#    or by your own `reshape=`;
# 3. **the targets**: one class per image (or the prediction), and the references it is compared
#    with.
#
# The models are untrained (seeded), so the maps show the mechanics, not meaning; the last cells
# check the numbers against plain autograd. Everything runs on the CPU in a few seconds.

# %%
%matplotlib inline
%config InlineBackend.figure_formats = ["jpeg"]  # figures small enough to commit
import matplotlib
import numpy as np
import torch
from torch import nn

import finercam

matplotlib.rcParams["figure.dpi"] = 72

_ = torch.manual_seed(0)

# %% [markdown]
# ## A CNN
#
# The usual target layer is the last convolutional block, before the global pooling: its grid is
# the coarsest that still has a spatial layout, and (for Grad-CAM) its channel weights are then
# exactly the classifier's rows up to 1/Z (Eq. 4 of the paper).

# %%
class SmallCNN(nn.Module):
    def __init__(self, num_classes: int = 6):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 64 -> 32
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 32 -> 16
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),                   # 16 x 16 grid
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


cnn = SmallCNN().eval()
images = torch.rand(4, 3, 64, 64)
[name for name, _ in cnn.named_modules()][:8]

# %% [markdown]
# A target layer is given by its dotted name (as `named_modules()` lists it) or as the module
# itself. A misspelt name is a `ValueError` that suggests the closest names.

# %%
cam = finercam.FinerCAM(cnn, "features.7")          # same as FinerCAM(cnn, cnn.features[7])
exp = cam(images)                                   # targets=None: each image's prediction
print(cam)
print("maps", exp.maps.shape, "raw maps at the grid", exp.raw_maps.shape)
print("targets", exp.targets, "\nreferences (T = 3 nearest logits)\n", exp.references)

# %% [markdown]
# The baseline (gamma = 0, the target logit alone) comes from the same call, without running the
# model again; `finercam.viz` draws both (matplotlib figures, no global pyplot state):

# %%
from finercam import viz

viz.compare(images[0], {"Grad-CAM": exp.baseline().maps[0], "Finer-CAM": exp.maps[0]})

# %%
try:
    finercam.FinerCAM(cnn, "feature.7")
except ValueError as err:
    print(err)

# %% [markdown]
# ### Targets per image
#
# `targets` is `None` (the prediction of each image), one int for the whole batch, or one class per
# image. The references are chosen per image too (`reference_rule="nearest_logit"`: the classes
# whose logits are nearest the target's), or given explicitly, one list per image.

# %%
exp = cam(images, targets=[0, 1, 2, 3])
print(exp.targets, exp.references.tolist())
exp_ref = cam(images, targets=[0, 1, 2, 3], references=[[5], [5], [5], [5]])
print(exp_ref.references.tolist())

# %% [markdown]
# ### Check it against plain autograd
#
# With the defaults (`method="gradcam"`, `gamma=0.6`, `aggregate="mean"`), the raw map of image n
# is `ReLU(sum_k alpha_k A_k)` with `alpha_k` the spatial mean of the gradient of
# `y_c - 0.6 * mean_t y_t` with respect to the target layer's output (Eq. 5-8). Recomputed here
# with nothing but torch:

# %%
acts = {}
handle = cnn.features[7].register_forward_hook(lambda m, i, o: acts.__setitem__("A", o))
logits = cnn(images)
handle.remove()
n = 2
c, refs = int(exp.targets[n]), exp.references[n].tolist()
objective = logits[n, c] - 0.6 * logits[n, refs].mean()
(grad,) = torch.autograd.grad(objective, acts["A"])
alpha = grad[n].mean(dim=(1, 2))
by_hand = torch.relu((alpha[:, None, None] * acts["A"][n]).sum(0)).detach().numpy()
print("max |difference|:", float(np.abs(by_hand - exp.raw_maps[n]).max()))
assert np.allclose(by_hand, exp.raw_maps[n], atol=1e-5)

# %% [markdown]
# ### Several layers
#
# A list of layers gives one map per layer, each post-processed to the input size; they are
# averaged and min-max normalised again (`finercam.kernels.fuse_layers`).

# %%
multi = finercam.FinerCAM(cnn, ["features.4", "features.7"])(images, targets=[0, 1, 2, 3])
print(multi.layer_names, [m.shape for m in multi.layer_raw_maps], multi.maps.shape)

# %% [markdown]
# ## A ViT
#
# Transformer blocks output tokens (N, L, D). finercam lays them on the patch grid: it drops the
# first r tokens (class and register tokens, the smallest r in 0..8 that fits) and arranges the
# remaining L - r tokens row-major on an h x w grid with h = H // p, w = W // p for a common patch
# size p. `finercam.layers.infer_token_grid` shows the rule:

# %%
from finercam.layers import infer_token_grid

print(infer_token_grid(197, (224, 224)))   # ViT-B/16: 1 class token + 14 x 14
print(infer_token_grid(261, (224, 224)))   # DINOv2 with 4 registers: 1 + 4 + 16 x 16
print(infer_token_grid(1 + 8 * 12, (64, 96)))  # a non-square input, patch 8


# %%
class SmallViT(nn.Module):
    def __init__(self, num_classes: int = 6, dim: int = 32, patch: int = 8, registers: int = 0):
        super().__init__()
        self.embed = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1 + registers, dim))
        self.blocks = nn.Sequential(*[
            nn.TransformerEncoderLayer(dim, 4, 2 * dim, dropout=0.0, batch_first=True)
            for _ in range(2)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        t = self.embed(x).flatten(2).transpose(1, 2)                # (N, h*w, D), row-major
        t = torch.cat([self.cls.expand(len(t), -1, -1), t], dim=1)  # class (+ register) tokens first
        return self.head(self.norm(self.blocks(t))[:, 0])


vit = SmallViT().eval()
vit_cam = finercam.FinerCAM(vit, "blocks.1.norm1")   # the input norm of the last block, a common choice
for size in [(64, 64), (64, 96)]:
    e = vit_cam(torch.rand(2, 3, *size), targets=[1, 4])
    print(size, "-> grid", e.raw_maps.shape[1:], "maps", e.maps.shape[1:])

# %% [markdown]
# Register tokens are found the same way (1 class + 4 registers here):

# %%
vit_reg = SmallViT(registers=4).eval()
e = finercam.FinerCAM(vit_reg, "blocks.1")(torch.rand(2, 3, 64, 64))
e.raw_maps.shape

# %% [markdown]
# ### Your own layout: `reshape=`
#
# When the layer's output is neither (N, K, h, w) nor tokens on a patch grid (say a channels-last
# (N, h, w, D) tensor), pass `reshape=`, a callable that returns (N, K, h, w). It must only
# re-index (select, reshape, permute): it is applied to the gradient as well.


# %%
class ChannelsLast(nn.Module):
    def forward(self, x):
        return x.permute(0, 2, 3, 1)


class ChannelsLastNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.to_last = ChannelsLast()
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        return self.head(self.to_last(torch.relu(self.conv(x))).mean(dim=(1, 2)))


net = ChannelsLastNet().eval()
e = finercam.FinerCAM(net, "to_last", reshape=lambda t: t.permute(0, 3, 1, 2))(torch.rand(2, 3, 16, 16))
e.raw_maps.shape

# %% [markdown]
# ## Your model leaves as it came
#
# finercam puts the model in `eval()` mode for the call and restores every submodule's `training`
# flag, the grad mode and its hooks afterwards, exceptions included; gradients go to the target
# layer's output only, so parameter `.grad` is never touched (you can explain inside a training
# loop).

# %%
cnn.train()
_ = finercam.FinerCAM(cnn, "features.7")(images)
print("training:", cnn.training, "| parameter grads untouched:", all(p.grad is None for p in cnn.parameters()),
      "| hooks left:", sum(len(m._forward_hooks) for m in cnn.modules()))
