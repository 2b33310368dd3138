"""Part scores on real images: where a map puts its energy and its peak relative to annotated parts.

The real-image counterparts of the bird world's discriminative-region scores, from what the data
sets annotate:

* CUB's part locations: each *visible* point ``p`` becomes a disc of radius ``r`` pixels,
  :math:`D_p = \\{x : \\lVert c(x) - p \\rVert \\le r\\}` with :math:`c(x)` the pixel's centre, and
  the part region is their union :math:`R = \\bigcup_p D_p`. The radius is stated, a share of the
  image's shorter side: :data:`PART_RADIUS` = 0.08, about 18 pixels at 224, a little over half
  of the 32-pixel cell of a 7 x 7 feature map;
* FishVista's trait masks: the region is the union of the traits' masks.

On that region, the two scores are those of :mod:`finercam.metrics` (one definition each):

* **part energy** :math:`\\sum_{x \\in R} L(x) / \\sum_x L(x)` (:func:`finercam.metrics.energy_in_mask`,
  NaN for an all-zero map);
* **part pointing game** :math:`[\\arg\\max_x L(x) \\in R]` (:func:`finercam.metrics.pointing_game`).

An image without a visible part (an empty region) has no part score: NaN and not counted.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from .. import metrics

__all__ = ["PART_RADIUS", "disc_mask", "is_parts", "part_region", "part_regions", "part_scores"]

#: Disc radius around a part point, as a share of the image's shorter side.
PART_RADIUS = 0.08


def disc_mask(points: Any, visible: Any, shape: Tuple[int, int], radius: float) -> np.ndarray:
    """``(H, W)`` bool: the pixels whose centre ``(j + 0.5, i + 0.5)`` lies within ``radius`` pixels
    of a visible point ``(x, y)``.

    >>> disc_mask([[1.0, 1.0], [3.5, 0.5]], [True, False], (2, 4), 0.8).astype(int).tolist()
    [[1, 1, 0, 0], [1, 1, 0, 0]]
    """
    pts = np.asarray(points.detach().cpu() if isinstance(points, torch.Tensor) else points, np.float64).reshape(-1, 2)
    vis = np.asarray(visible.detach().cpu() if isinstance(visible, torch.Tensor) else visible, bool).reshape(-1)
    h, w = int(shape[0]), int(shape[1])
    cy, cx = np.arange(h) + 0.5, np.arange(w) + 0.5
    out = np.zeros((h, w), bool)
    for x, y in pts[vis]:
        out |= ((cx[None, :] - x) ** 2 + (cy[:, None] - y) ** 2) <= radius * radius
    return out


def is_parts(parts: Any) -> bool:
    """Whether an item's ``parts`` are annotated parts this module scores: a dict with
    ``"points"`` and ``"visible"``, or with ``"masks"`` (the readers' forms; other data's part
    masks, such as the bird world's, are left to their own scores)."""
    return isinstance(parts, dict) and ({"points", "visible"} <= set(parts) or "masks" in parts)


def part_region(parts: Any, shape: Tuple[int, int], radius: Optional[float] = None) -> np.ndarray:
    """The part region of one image: ``parts`` is ``{"points", "visible"}`` (discs of ``radius``
    pixels, default :data:`PART_RADIUS` x the shorter side) or ``{"masks": (T, H, W)}`` (their union)."""
    if not is_parts(parts):
        raise TypeError(f"parts must be a dict with 'points' and 'visible' or with 'masks', got {type(parts).__name__}")
    if "points" in parts:
        r = PART_RADIUS * min(shape) if radius is None else float(radius)
        return disc_mask(parts["points"], parts["visible"], shape, r)
    masks = parts["masks"]
    m = np.asarray(masks.detach().cpu() if isinstance(masks, torch.Tensor) else masks)
    if m.ndim == 2:
        m = m[None]
    if m.shape[-2:] != tuple(shape):
        raise ValueError(f"part masks must be (T, H, W) with (H, W) = {tuple(shape)}, got {m.shape}")
    return (m != 0).any(axis=0)


def part_regions(parts: Sequence[Any], shape: Tuple[int, int], radius: Optional[float] = None
                 ) -> Tuple[np.ndarray, np.ndarray]:
    """The regions ``(K, H, W)`` of the images whose region is not empty, and which those are
    (``(N,)`` bool); parts that are not :func:`is_parts` count as empty."""
    regions = [part_region(p, shape, radius) if is_parts(p) else None for p in parts]
    has = np.array([r is not None and bool(r.any()) for r in regions], bool)
    kept = [r for r in regions if r is not None and r.any()]
    return (np.stack(kept) if kept else np.zeros((0, *shape), bool)), has


def part_scores(maps: Any, parts: Sequence[Any], radius: Optional[float] = None) -> Dict[str, np.ndarray]:
    """``part_energy`` (N,) float64 and ``part_pointing`` (N,) float64 (1.0 hit, 0.0 miss) of the
    maps ``(N, H, W)`` (made non-negative) on each image's part region; NaN where an image has
    no visible part.

    >>> m = np.zeros((1, 8, 8)); m[0, 2, 2] = 3.0; m[0, 7, 7] = 1.0
    >>> r = part_scores(m, [{"points": [[2.5, 2.5]], "visible": [True]}], radius=1.0)
    >>> float(r["part_energy"][0]), float(r["part_pointing"][0])
    (0.75, 1.0)
    """
    m = np.maximum(np.asarray(maps.detach().cpu() if isinstance(maps, torch.Tensor) else maps, np.float32), 0)
    if m.ndim != 3 or len(parts) != m.shape[0]:
        raise ValueError(f"maps must be (N, H, W) with one parts entry per map, got {m.shape} and {len(parts)}")
    regions, has = part_regions(parts, m.shape[1:], radius)
    energy, pointing = np.full(len(m), np.nan), np.full(len(m), np.nan)
    if has.any():
        energy[has] = metrics.energy_in_mask(m[has], regions)
        pointing[has] = metrics.pointing_game(m[has], regions).astype(np.float64)
    return {"part_energy": energy, "part_pointing": pointing}
