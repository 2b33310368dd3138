"""Tiny seeded models and the plain-torch oracles the engine tests hold FinerCAM to.

The oracles recompute the paper's equations the slow, obvious way: a full forward with autograd
on, a full ``backward()`` of the objective itself (not of per-class logits), the method's formula
in torch, ``F.interpolate(bilinear, align_corners=False)`` and a min-max with eps 1e-8. They run
on a deep copy of the model so that the model under test keeps its ``.grad``.
"""
from __future__ import annotations

import copy
import types

import torch
import torch.nn.functional as F
from torch import nn

NUM_CLASSES = 10


class Block(nn.Module):
    """A ResNet basic block with batch norm and an in-place residual sum."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.down is None else self.down(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class TinyResNet(nn.Module):
    """32x32 -> stem 16x16 -> layer1 16x16 (8 ch) -> layer2 8x8 (16 ch) -> GAP -> fc."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(inplace=True))
        self.layer1 = Block(8, 8)
        self.layer2 = Block(8, 16, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


class ViTBlock(nn.Module):
    def __init__(self, d: int, heads: int = 2):
        super().__init__()
        self.norm1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, x):
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    """Patch size 4, a class token and ``registers`` register tokens in front, a position embedding
    interpolated to the grid (any input size, as DINOv2), classifier on the class token."""

    def __init__(self, num_classes: int = NUM_CLASSES, d: int = 16, registers: int = 0, depth: int = 2):
        super().__init__()
        self.patch = nn.Conv2d(3, d, 4, 4)
        self.cls = nn.Parameter(torch.randn(1, 1, d) * 0.5)
        self.reg = nn.Parameter(torch.randn(1, registers, d) * 0.5)
        self.pos = nn.Parameter(torch.randn(1, d, 8, 8) * 0.5)
        self.blocks = nn.Sequential(*[ViTBlock(d) for _ in range(depth)])
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, num_classes)

    def forward(self, x):
        p = self.patch(x)
        p = p + F.interpolate(self.pos, size=p.shape[-2:], mode="bilinear", align_corners=False)
        tok = p.flatten(2).transpose(1, 2)
        n = x.shape[0]
        tok = torch.cat([self.cls.expand(n, -1, -1), self.reg.expand(n, -1, -1), tok], dim=1)
        tok = self.norm(self.blocks(tok))
        return self.head(tok[:, 0])


class MiniNet(nn.Module):
    """The smallest CNN with a target layer, for the loops (200 calls) of the memory tests."""

    def __init__(self, num_classes: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x):
        return self.fc(self.act(self.conv(x)).mean((2, 3)))


class DictOut(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return {"features": x.mean(), "logits": self.net(x)}


class ObjOut(DictOut):
    def forward(self, x):
        return types.SimpleNamespace(logits=self.net(x), hidden=None)


class TupleOut(DictOut):
    def forward(self, x):
        return (self.net(x), x.mean())


def seeded(cls, seed: int = 0, **kw) -> nn.Module:
    """A model with random weights and non-trivial batch-norm statistics, in eval mode."""
    torch.manual_seed(seed)
    m = cls(**kw)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 1.5)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)
    return m.eval()


def images(n: int = 3, size=(32, 32), seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, *size, generator=g)


# ---------------------------------------------------------------------------------------------
# Oracles
# ---------------------------------------------------------------------------------------------

def to_grid(t: torch.Tensor, prefix: int, size) -> torch.Tensor:
    """Tokens (N, L, D) -> (N, D, h, w) for patch size 4; 4-D tensors pass."""
    if t.ndim == 4:
        return t
    h, w = size[0] // 4, size[1] // 4
    return t[:, prefix:].reshape(t.shape[0], h, w, t.shape[2]).permute(0, 3, 1, 2)


def activation_and_grad(model, x, layer_name, objective, prefix=0):
    """(A, dO/dA) at the layer's grid, by a full forward and a full ``backward()`` of
    ``objective(logits).sum()`` on a deep copy of the model."""
    m = copy.deepcopy(model).eval()
    layer = dict(m.named_modules())[layer_name]
    box = {}

    def keep(mod, inp, out):
        out.retain_grad()
        box["a"] = out

    h = layer.register_forward_hook(keep)
    with torch.enable_grad():
        logits = m(x)
        logits = logits if isinstance(logits, torch.Tensor) else logits["logits"]
        objective(logits).sum().backward()
    h.remove()
    size = x.shape[-2:]
    return to_grid(box["a"].detach(), prefix, size), to_grid(box["a"].grad, prefix, size), logits.detach()


def method_map(method: str, A: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """The signed map sum_k alpha_k A_k (before the final ReLU) of one objective gradient g."""
    if method == "gradcam":
        return (g.mean((2, 3), keepdim=True) * A).sum(1)
    if method == "layercam":
        return (g.clamp(min=0) * A).sum(1)
    if method == "hirescam":
        return (g * A).sum(1)
    if method == "xgradcam":
        w = (g * A).sum((2, 3), keepdim=True) / (A.sum((2, 3), keepdim=True) + 1e-7)
        return (w * A).sum(1)
    if method == "gradcam++":
        g64, A64 = g.double(), A.double()
        g2 = g64 ** 2
        den = 2 * g2 + A64.sum((2, 3), keepdim=True) * g2 * g64 + 1e-6
        a = torch.where(g64 > 0, g2 / den, torch.zeros_like(g64))
        w = (g64.clamp(min=0) * a).sum((2, 3), keepdim=True)
        return (w * A64).sum(1).float()
    raise ValueError(method)


def finer_objectives(targets, refs, gamma, aggregate, reverse=False):
    """The objective(s) as functions of the logits: one for "mean", one per reference otherwise."""
    t = torch.as_tensor(targets)
    r = torch.as_tensor(refs)
    rows = torch.arange(len(t))

    def mean_obj(y):
        yc, yr = y[rows, t], y[rows[:, None], r].mean(1)
        return yr - gamma * yc if reverse else yc - gamma * yr

    if aggregate == "mean":
        return [mean_obj]
    out = []
    for j in range(r.shape[1]):
        def one(y, j=j):
            yc, yr = y[rows, t], y[rows, r[:, j]]
            return yr - gamma * yc if reverse else yc - gamma * yr
        out.append(one)
    return out


def aggregate_maps(signed: list[torch.Tensor], aggregate: str) -> torch.Tensor:
    if aggregate == "mean":
        return signed[0].clamp(min=0)
    s = torch.stack(signed, 1)
    if aggregate == "max":
        return s.max(1).values.clamp(min=0)
    return s.clamp(min=0).mean(1)


def normalise(raw: torch.Tensor, size) -> torch.Tensor:
    u = F.interpolate(raw[:, None].double(), size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
    lo = u.amin((1, 2), keepdim=True)
    hi = u.amax((1, 2), keepdim=True)
    return ((u - lo) / (hi - lo + 1e-8)).float()


def oracle_gradient_method(model, x, layer, method, targets, refs, gamma, aggregate, reverse=False, prefix=0):
    """(raw_maps, maps) of a gradient method by the paper's equations."""
    signed = []
    for obj in finer_objectives(targets, refs, gamma, aggregate, reverse):
        A, g, _ = activation_and_grad(model, x, layer, obj, prefix)
        signed.append(method_map(method, A, g))
    raw = aggregate_maps(signed, aggregate)
    return raw, normalise(raw, x.shape[-2:])


@torch.no_grad()
def oracle_scorecam(model, x, layer, targets, refs, gamma, aggregate, reverse=False, prefix=0):
    """Eq. 9 channel by channel: H_k = minmax(interpolate(A_k)), alpha_k = f(x o H_k)_c -
    gamma mean_t f(x o H_k)_t - f(0)_c."""
    m = copy.deepcopy(model).eval()
    box = {}
    h = dict(m.named_modules())[layer].register_forward_hook(lambda mod, i, o: box.__setitem__("a", o))
    m(x)
    h.remove()
    A = to_grid(box["a"], prefix, x.shape[-2:])
    N, K = A.shape[:2]
    H = F.interpolate(A, size=x.shape[-2:], mode="bilinear", align_corners=False)
    lo = H.amin((2, 3), keepdim=True)
    hi = H.amax((2, 3), keepdim=True)
    H = torch.where(hi > lo, (H - lo) / (hi - lo + 1e-8), torch.zeros_like(H))
    base = m(torch.zeros_like(x[:1]))[0]
    scores = torch.stack([m(x * H[:, k:k + 1]) for k in range(K)], 1)   # (N, K, C)
    t = torch.as_tensor(targets)
    r = torch.as_tensor(refs)
    rows = torch.arange(N)
    sc = scores[rows, :, t]                            # (N, K)
    sr = scores[rows[:, None], :, r]                   # (N, T, K)
    if aggregate == "mean":
        if reverse:
            alphas = [sr.mean(1) - gamma * sc - base[r].mean(1)[:, None]]
        else:
            alphas = [sc - gamma * sr.mean(1) - base[t][:, None]]
    else:
        alphas = []
        for j in range(r.shape[1]):
            if reverse:
                alphas.append(sr[:, j] - gamma * sc - base[r[:, j]][:, None])
            else:
                alphas.append(sc - gamma * sr[:, j] - base[t][:, None])
    signed = [(a[:, :, None, None] * A).sum(1) for a in alphas]
    raw = aggregate_maps(signed, aggregate)
    return raw, normalise(raw, x.shape[-2:])
