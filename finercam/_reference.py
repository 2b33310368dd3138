"""Pure-NumPy twins of the C kernels: the oracles the tests hold ``finercam._core`` to.

Each twin computes in float64 with the plainest NumPy it can, then returns float32, so that it
shares no code and no shortcut with the C core. The conventions (half-pixel bilinear sampling,
the min-max epsilon, the non-finite policy) are defined here first and documented in
``finercam.kernels``.
"""
from __future__ import annotations

import numpy as np


def combine(activations: np.ndarray, weights: np.ndarray, relu: bool = False) -> np.ndarray:
    """``out[n, g] = sum_k weights[n, g, k] * activations[n, k]``; A (N, K, h, w), W (N, G, K)."""
    a = np.asarray(activations, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    out = np.einsum("ngk,nkhw->nghw", w, a)
    if relu:
        out = np.maximum(out, 0.0)
    return out.astype(np.float32)


def combine_pixelwise(activations: np.ndarray, weights: np.ndarray, relu: bool = False) -> np.ndarray:
    """Layer-CAM: ``out[n, g] = sum_k relu(P[n, g, k]) * A[n, k]``; P (N, G, K, h, w)."""
    a = np.asarray(activations, dtype=np.float64)
    p = np.maximum(np.asarray(weights, dtype=np.float64), 0.0)
    out = (p * a[:, None]).sum(axis=2)
    if relu:
        out = np.maximum(out, 0.0)
    return out.astype(np.float32)


def _axis_coefficients(n_in: int, n_out: int, align_corners: bool):
    """Source indices i0, i1 and the weight of i1 for each output index (torch's convention)."""
    dst = np.arange(n_out, dtype=np.float64)
    if align_corners:
        scale = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        src = dst * scale
    else:
        src = (dst + 0.5) * (n_in / n_out) - 0.5
        src = np.maximum(src, 0.0)
    i0 = np.floor(src).astype(np.int64)
    i0 = np.minimum(i0, n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam = src - i0
    return i0, i1, lam


def resize(maps: np.ndarray, size, align_corners: bool = False) -> np.ndarray:
    """Bilinear resize of (N, h, w) maps to (N, H, W), as ``F.interpolate(mode="bilinear")``."""
    return _resize64(maps, size, align_corners).astype(np.float32)


def _resize64(maps, size, align_corners):
    m = np.asarray(maps, dtype=np.float64)
    out_h, out_w = size
    r0, r1, ry = _axis_coefficients(m.shape[1], out_h, align_corners)
    c0, c1, cx = _axis_coefficients(m.shape[2], out_w, align_corners)
    # a + lam * (b - a) rather than (1 - lam) * a + lam * b: a constant map stays exactly
    # constant, so the min-max "all equal -> zeros" rule still holds after resizing.
    top = m[:, r0, :] + ry[None, :, None] * (m[:, r1, :] - m[:, r0, :])
    return top[:, :, c0] + cx[None, None, :] * (top[:, :, c1] - top[:, :, c0])


def minmax(maps: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Per map ``(x - min) / (max - min + eps)``.

    An all-equal map becomes zeros (whatever eps); a map holding NaN or +-inf becomes all NaN.
    """
    return _minmax64(maps, eps).astype(np.float32)


def _minmax64(maps, eps):
    m = np.asarray(maps, dtype=np.float64)
    out = np.empty(m.shape, dtype=np.float64)
    for i in range(m.shape[0]):
        x = m[i]
        if not np.all(np.isfinite(x)):
            out[i] = np.nan
            continue
        lo, hi = x.min(), x.max()
        out[i] = 0.0 if hi == lo else (x - lo) / (hi - lo + eps)
    return out


def postprocess(maps: np.ndarray, size, relu: bool = True, eps: float = 1e-8,
                align_corners: bool = False) -> np.ndarray:
    """ReLU, then bilinear resize to ``size``, then per-map min-max."""
    return _postprocess64(maps, size, relu, eps, align_corners).astype(np.float32)


def _postprocess64(maps, size, relu, eps, align_corners):
    m = np.asarray(maps, dtype=np.float64)
    if relu:
        m = np.maximum(m, 0.0)
    return _minmax64(_resize64(m, size, align_corners), eps)


def fuse_layers(maps_list, size, relu: bool = True, eps: float = 1e-8,
                align_corners: bool = False) -> np.ndarray:
    """Mean over layers of each layer's :func:`postprocess` at ``size``, min-maxed again."""
    parts = [_postprocess64(m, size, relu, eps, align_corners) for m in maps_list]
    return _minmax64(np.mean(parts, axis=0), eps).astype(np.float32)
