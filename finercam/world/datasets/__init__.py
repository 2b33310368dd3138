"""The spot-the-difference benchmark: a seeded bird world with ground-truth part masks.

Sixteen species in four families, each species described by a colour and a shape per part; sibling
species differ in one or two parts, different sibling pairs in different parts.  Every image comes
with its label, the bird's box and one visible-pixel mask per part, so the region that tells two
classes apart is known exactly (:func:`discriminative_mask`).  See ``docs/dataset.md``.

Example
-------
>>> from finercam.world.datasets import SpotTheDifference, differing_parts, discriminative_mask
>>> ds = SpotTheDifference(split="test", n=64, seed=0)
>>> image, label, info = ds[1]
>>> differing_parts(label, 0)
('wing',)
>>> region = discriminative_mask(info["parts"], label, [0, 2, 3])   # against three references
"""
from .birds import (
                    ATTRIBUTE_NAMES,
                    ATTRIBUTES,
                    CAPTION_ORDER,
                    CLASS_FAMILY,
                    CLASS_NAMES,
                    CLASS_PARTS,
                    COLOUR_NAMES,
                    COLOURS,
                    FAMILIES,
                    NUM_CLASSES,
                    PARTS,
                    SHAPES,
                    caption,
                    describe,
                    differing_parts,
                    siblings,
)
from .spot import CHUNK, SPLITS, Batch, SpotTheDifference, discriminative_mask, generate

__all__ = [
    "ATTRIBUTE_NAMES", "ATTRIBUTES", "Batch", "CAPTION_ORDER", "CHUNK", "CLASS_FAMILY", "CLASS_NAMES",
    "CLASS_PARTS", "COLOUR_NAMES", "COLOURS", "FAMILIES", "NUM_CLASSES", "PARTS", "SHAPES", "SPLITS",
    "SpotTheDifference", "caption", "describe", "differing_parts", "discriminative_mask", "generate",
    "siblings",
]
