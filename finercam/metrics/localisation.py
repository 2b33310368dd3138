"""Localisation metrics: the energy-based pointing game ("Loc." of the paper) and the pointing
game, with an optional tolerance (TorchRay's 15 pixels)."""
from __future__ import annotations

import numpy as np

from .. import kernels
from .._checks import check_size
from ._masking import _array, _check_maps

__all__ = ["boxes_to_masks", "energy_in_mask", "pointing_game", "TORCHRAY_TOLERANCE"]

#: The pointing game's tolerance of TorchRay (Zhang et al., "Top-down neural attention by
#: excitation backprop"): a hit within 15 pixels of the object counts.
TORCHRAY_TOLERANCE = 15.0


def boxes_to_masks(boxes, size) -> np.ndarray:
    """(N, H, W) bool masks from (N, 4) boxes ``(x0, y0, x1, y1)`` in pixels, end exclusive.

    Pixel (i, j) is inside when its centre ``(j + 0.5, i + 0.5)`` lies in ``[x0, x1) x [y0, y1)``
    (for integer boxes: columns x0..x1-1, rows y0..y1-1). A box must satisfy
    ``0 <= x0 < x1 <= W`` and ``0 <= y0 < y1 <= H``.

    >>> boxes_to_masks([[1, 0, 3, 2]], (2, 4)).astype(int).tolist()
    [[[0, 1, 1, 0], [0, 1, 1, 0]]]
    """
    h, w = check_size(size)
    b = _array(boxes, "boxes")
    if b.dtype == np.bool_ or not np.issubdtype(b.dtype, np.number):
        raise TypeError(f"boxes must hold numbers, got dtype {b.dtype}")
    b = b.astype(np.float64)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must be (N, 4) as (x0, y0, x1, y1), got shape {b.shape}")
    x0, y0, x1, y1 = b.T
    bad = ~((0 <= x0) & (x0 < x1) & (x1 <= w) & (0 <= y0) & (y0 < y1) & (y1 <= h))
    if bad.any():
        i = int(np.nonzero(bad)[0][0])
        raise ValueError(f"boxes must lie inside the {h}x{w} image with x0 < x1 and y0 < y1, "
                         f"box {i} is {b[i].tolist()}")
    cx = np.arange(w) + 0.5
    cy = np.arange(h) + 0.5
    inx = (cx[None, :] >= x0[:, None]) & (cx[None, :] < x1[:, None])
    iny = (cy[None, :] >= y0[:, None]) & (cy[None, :] < y1[:, None])
    return iny[:, :, None] & inx[:, None, :]


def _check_masks(masks, shape) -> np.ndarray:
    """Boxes (N, 4) or masks (N, H, W) / (N, 1, H, W) -> (N, H, W) bool matching ``shape``."""
    k = _array(masks, "masks")
    if k.ndim == 2:
        if k.shape[0] != shape[0]:
            raise ValueError(f"masks (boxes) must have one row per map ({shape[0]}), got {k.shape[0]}")
        return boxes_to_masks(k, shape[1:])
    if k.ndim == 4 and k.shape[1] == 1:
        k = k[:, 0]
    if k.shape != shape:
        raise ValueError(f"masks must be boxes (N, 4) or masks of the maps' shape {shape}, "
                         f"got {k.shape}")
    if k.dtype != np.bool_:
        if not np.issubdtype(k.dtype, np.number):
            raise TypeError(f"masks must be boolean or numeric, got dtype {k.dtype}")
        k = k != 0
    return np.ascontiguousarray(k)


def energy_in_mask(maps, masks) -> np.ndarray:
    """Energy-based pointing game ("Loc."): ``sum(map inside) / sum(map)`` per map,
    :math:`\\sum_{x \\in B} L(x) / \\sum_x L(x)` for a map :math:`L \\ge 0` and a box or mask :math:`B`.

    maps (N, H, W) must be non-negative (CAMs after their ReLU); masks are (N, H, W) (nonzero =
    inside) or (N, 4) boxes (see :func:`boxes_to_masks`). An all-zero map gives NaN (it points
    nowhere); averages over a data set skip it and count it. Returns (N,) float64.

    >>> import numpy as np
    >>> energy_in_mask(np.array([[[1.0, 3.0]]]), [[1, 0, 2, 1]]).tolist()  # box over column 1
    [0.75]
    """
    m = _check_maps(maps)
    if (m < 0).any():
        raise ValueError("maps must be non-negative for the energy share (apply the ReLU first)")
    return kernels.energy_in_mask(m, _check_masks(masks, m.shape))


def pointing_game(maps, masks, tolerance: float = 0.0) -> np.ndarray:
    """Pointing game: whether each map's top-ranked pixel (its first maximum in row-major order,
    the ranking of the masking) lies in the mask or box, :math:`[\\arg\\max_x L(x) \\in B]`.
    Returns (N,) bool.

    ``tolerance`` (pixels, default 0: the paper's rule): a hit when the peak lies within this
    Euclidean distance of a pixel of the mask, pixel centres on the integer grid,
    :math:`\\min_{b \\in B} \\|x^\\star - b\\| \\le \\tau`. TorchRay's benchmark uses
    ``TORCHRAY_TOLERANCE`` = 15 pixels.

    >>> import numpy as np
    >>> m = np.array([[[0.1, 0.9], [0.2, 0.0]]], np.float32)        # the peak is pixel (0, 1)
    >>> pointing_game(m, [[1, 0, 2, 1]]).tolist(), pointing_game(m, [[0, 1, 2, 2]]).tolist()
    ([True], [False])
    >>> pointing_game(m, [[0, 1, 1, 2]], tolerance=1.5).tolist()   # pixel (1, 0) is sqrt(2) away
    [True]
    """
    m = _check_maps(maps)
    k = _check_masks(masks, m.shape)
    tol = _check_tolerance(tolerance)
    if tol == 0.0:
        return kernels.pointing_hit(m, k)
    out = np.zeros(m.shape[0], dtype=bool)
    peaks = kernels.argsort_desc(m)[:, 0]
    for i, peak in enumerate(peaks):
        r, c = divmod(int(peak), m.shape[2])
        ys, xs = np.nonzero(k[i])
        out[i] = bool(ys.size) and float(((ys - r) ** 2 + (xs - c) ** 2).min()) <= tol * tol
    return out


def _check_tolerance(tolerance) -> float:
    if isinstance(tolerance, (bool, np.bool_)) or not isinstance(tolerance, (int, float, np.integer,
                                                                             np.floating)):
        raise TypeError(f"tolerance must be a number of pixels, got {type(tolerance).__name__}")
    if not (np.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance must be finite and >= 0, got {tolerance!r}")
    return float(tolerance)
