"""A small vision transformer with a class token, for the bird world.

::

    input (3, 96, 96) in [0, 1] -> (x - 0.5) / 0.25
    conv stem: conv3x3/2 3 -> 24, conv3x3/2 24 -> 32,
               conv3x3 32 -> 48 (each BN, ReLU)                      24 x 24
    patch embedding: conv3x3/2 48 -> D (overlapping)                 12 x 12 = 144 patch tokens
    [CLS] + 144 tokens + learned position embedding                  (145, D)
    depth x pre-norm block: x + attn(norm1(x)); x + mlp(norm2(x))
    final norm, linear head on the class token

A convolutional stem in front of the patch embedding (Xiao et al., 2021, "Early convolutions help
transformers see better") lets a ViT this small learn from a few thousand images in minutes; each
token stands for an 8 x 8-pixel cell of a 12 x 12 grid, and the overlapping 3 x 3 embedding lets
it see the edges of its neighbours, which thin shape differences (a tail's length, a beak's hook)
straddle.  ``stem`` (conv widths; the first two halve the size) and ``patch_kernel`` (2: disjoint
patches, 3: overlapping) select the architecture; checkpoints record them in their config.  The
default stem has exactly the shapes of :class:`~finercam.world.models.cnn.SmallCNN`'s first three conv
layers: the shipped ViT takes them from the trained CNN and keeps them fixed
(:func:`finercam.world.models.train.transfer_stem`), a hybrid in the manner of the original ViT's
ResNet-stem variant (Dosovitskiy et al., 2021); only the patch embedding, the tokens and the
transformer are trained as a ViT.

The default target layer is ``blocks.<depth-1>.norm1``: the last block's normalised input, shape
(B, 1 + 144, D), class token first.  Only there do the patch tokens still reach the logit (through
the last attention); after the last block the head reads the class token alone, so gradients to
the patch tokens would vanish.

>>> import torch
>>> from finercam.world.models.vit import SmallViT
>>> SmallViT()(torch.zeros(2, 3, 96, 96)).shape
torch.Size([2, 16])
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ['Attention', 'Block', 'SmallViT', 'DEFAULT_TARGET_LAYER']

class Attention(nn.Module):
    """Multi-head self-attention over tokens (B, N, D):
    :math:`\\mathrm{softmax}(Q K^\\top / \\sqrt{D / h})\\, V` per head, heads joined and projected.

    >>> Attention(dim=8, heads=2)(torch.zeros(1, 5, 8)).shape
    torch.Size([1, 5, 8])
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm transformer block: :math:`x \\leftarrow x + \\mathrm{Attn}(\\mathrm{LN}(x))`, then
    :math:`x \\leftarrow x + \\mathrm{MLP}(\\mathrm{LN}(x))` (GELU, hidden width ``dim * mlp_ratio``).

    >>> Block(dim=8, heads=2, mlp_ratio=2.0)(torch.zeros(1, 5, 8)).shape
    torch.Size([1, 5, 8])
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SmallViT(nn.Module):
    """Conv stem, 12 x 12 patch tokens (8 x 8-pixel cells), class token, ``depth`` transformer blocks.

    >>> SmallViT(stem=(16, 32), patch_kernel=2).patch.kernel_size   # the first shipped architecture
    (2, 2)
    """

    def __init__(self, num_classes: int = 16, dim: int = 64, depth: int = 4, heads: int = 4,
                 mlp_ratio: float = 2.0, image_size: int = 96, stem: Sequence[int] = (24, 32, 48), patch_kernel: int = 3) -> None:
        super().__init__()
        if isinstance(stem, (str, bytes)) or not hasattr(stem, "__len__"):
            raise TypeError(f"stem must be a sequence of conv widths, got {type(stem).__name__}")
        if len(stem) < 2:
            raise ValueError(f"stem must list at least 2 conv widths (two stride-2 convs), got {stem!r}")
        if any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in stem):
            raise ValueError(f"stem widths must be positive ints, got {stem!r}")
        layers, cin = [], 3
        for i, cout in enumerate(stem):  # the first two convs halve the size: 96 -> 48 -> 24
            layers += [nn.Conv2d(cin, int(cout), 3, 2 if i < 2 else 1, 1, bias=False),
                       nn.BatchNorm2d(int(cout)), nn.ReLU()]
            cin = int(cout)
        self.stem = nn.Sequential(*layers)
        if isinstance(patch_kernel, bool) or patch_kernel not in (2, 3):
            raise ValueError(f"patch_kernel must be 2 (disjoint patches) or 3 (overlapping), got {patch_kernel!r}")
        # stride 2 either way (24 x 24 -> 12 x 12 tokens); a 3 x 3 kernel lets each token see its
        # neighbours' edges, which the thin shape differences (tail, beak) straddle
        self.patch = nn.Conv2d(cin, dim, patch_kernel, 2, (patch_kernel - 1) // 2)
        grid = image_size // 8
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + grid * grid, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self.default_target_layer = f"blocks.{depth - 1}.norm1"
        self.config = {"num_classes": num_classes, "dim": dim, "depth": depth, "heads": heads,
                       "mlp_ratio": mlp_ratio, "image_size": image_size, "stem": [int(c) for c in stem], "patch_kernel": int(patch_kernel)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(self.stem((x - 0.5) / 0.25)).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], 1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, 0])


#: Dotted name of the layer to explain for the default depth (4).
DEFAULT_TARGET_LAYER = "blocks.3.norm1"
