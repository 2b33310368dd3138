"""``finercam layers --model NAME|PKG.MOD:FACTORY|hf:DIR [--size PIXELS|H,W]``: the target layers
:func:`finercam.suggest_layers` proposes for a model, best first, with their grid, channels and
why. The first is what ``target_layer="auto"`` and ``--layer auto`` use, as does every command
given a model without a layer of its own (``PKG.MOD:FACTORY``, ``hf:DIR``) and no ``--layer``.

>>> import argparse
>>> p = argparse.ArgumentParser(); add_arguments(p)
>>> run(p.parse_args(["--model", "cnn"]))           # doctest: +NORMALIZE_WHITESPACE, +ELLIPSIS
layers of cnn at 96 x 96 (best first; the first is target_layer="auto"):
  1. block3  grid 12 x 12  96 channels  the last spatial feature map: ...
  2. block2  grid 24 x 24  48 channels  the last feature map of the previous, finer grid: ...
0
"""
from __future__ import annotations

import argparse

from ..suggest import suggest_layers
from .common import usage_errors
from .inputs import UsageError, input_shape, load_model

__all__ = ["add_arguments", "run", "parse_size"]


def parse_size(text: str) -> tuple[int, int]:
    """``"224"`` -> (224, 224); ``"84,56"`` -> (84, 56) (height, width).

    >>> parse_size("84,56")
    (84, 56)
    """
    try:
        vals = [int(v) for v in text.split(",")]
    except ValueError:
        raise UsageError(f"--size must be PIXELS or H,W (integers), got {text!r}") from None
    if len(vals) not in (1, 2) or not all(8 <= v <= 4096 for v in vals):
        raise UsageError(f"--size must be PIXELS or H,W with each in [8, 4096], got {text!r}")
    return (vals[0], vals[-1])


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="cnn", metavar="NAME|PKG.MOD:FACTORY|hf:DIR",
                   help="a built-in model (cnn, vit, imagenet), a factory returning a classifier, "
                        "or hf:DIR, a Hugging Face save_pretrained folder (default: cnn)")
    p.add_argument("--size", default=None, metavar="PIXELS|H,W",
                   help="the input size to lay the layers out at (default: the model's)")


def run(args: argparse.Namespace) -> int:
    size = parse_size(args.size) if args.size else None
    found = load_model(args.model)
    shape = size or input_shape(found)     # default: what the model's preprocessing gives
    h, w = shape[-2:]
    with usage_errors():   # no layer with a layout, or a size the model does not run at
        rows = suggest_layers(found.model, shape)
    print(f'layers of {found.source} at {h} x {w} (best first; the first is target_layer="auto"):')
    name_w = max(len(r.name) for r in rows)
    grid_w = max(len(f"{r.grid[0]} x {r.grid[1]}") for r in rows)
    for i, r in enumerate(rows, 1):
        grid = f"{r.grid[0]} x {r.grid[1]}"
        print(f"  {i}. {r.name:<{name_w}}  grid {grid:<{grid_w}}  {r.channels} channels  {r.why}")
    return 0
