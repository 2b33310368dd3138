"""A small CNN for the bird world, built for CAM: a 12 x 12 last feature grid at 96 x 96 input.

::

    input (3, 96, 96) in [0, 1] -> (x - 0.5) / 0.25
    stem    conv3x3/2   3 -> 24   48 x 48
    block1  conv3x3/2  24 -> 32   24 x 24
    block2  conv3x3    32 -> 48,  conv3x3 48 -> 48   24 x 24
    block3  conv3x3/2  48 -> 96,  conv3x3 96 -> 96   12 x 12   <- DEFAULT_TARGET_LAYER
    global average pool -> linear 96 -> 16

Every conv is followed by batch norm and ReLU; ``block3``'s output is non-negative, the
activation ``A`` that Grad-CAM-style methods weight.  Because the head is a global average pool and
one linear layer, CAM with the classifier weights is exact at ``block3``.

>>> import torch
>>> from finercam.world.models.cnn import SmallCNN
>>> SmallCNN()(torch.zeros(2, 3, 96, 96)).shape
torch.Size([2, 16])
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ['SmallCNN', 'DEFAULT_TARGET_LAYER']

#: Dotted name of the layer to explain: the last conv block, a 12 x 12 grid for 96 x 96 input.
DEFAULT_TARGET_LAYER = "block3"


def _conv(cin: int, cout: int, stride: int = 1) -> list:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=False)]


class SmallCNN(nn.Module):
    """Four conv stages, global average pooling, one linear classifier (see the module doc)."""

    default_target_layer = DEFAULT_TARGET_LAYER

    def __init__(self, num_classes: int = 16, width: int = 24) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(*_conv(3, w, 2))
        self.block1 = nn.Sequential(*_conv(w, 4 * w // 3, 2))
        self.block2 = nn.Sequential(*_conv(4 * w // 3, 2 * w), *_conv(2 * w, 2 * w))
        self.block3 = nn.Sequential(*_conv(2 * w, 4 * w, 2), *_conv(4 * w, 4 * w))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * w, num_classes)
        self.config = {"num_classes": num_classes, "width": width}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - 0.5) / 0.25
        x = self.block3(self.block2(self.block1(self.stem(x))))
        return self.fc(self.pool(x).flatten(1))
