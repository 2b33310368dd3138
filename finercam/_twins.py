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


# ---------------------------------------------------------------------------------------------
# Metrics kernels (csrc/rank.c, csrc/measure.c): ranking, top-fraction masking, measurements.
# ---------------------------------------------------------------------------------------------


def argsort_desc(maps: np.ndarray) -> np.ndarray:
    """Flat pixel indices of each (N, ...) map by decreasing value, ties to the lower index.

    ``-0.0`` equals ``+0.0``; NaN comes after every number. Returns (N, P) int64.
    """
    m = np.asarray(maps, dtype=np.float64).reshape(len(maps), -1)
    # np.sort puts NaN last, and -(-0.0) == -(0.0), so a stable sort of -m is exactly the rule
    return np.argsort(-m, axis=1, kind="stable").astype(np.int64)


def rank_desc(maps: np.ndarray) -> np.ndarray:
    """``rank[n, p]`` = position of pixel p in :func:`argsort_desc` (0 = the largest)."""
    order = argsort_desc(maps)
    rank = np.empty_like(order)
    rows = np.arange(order.shape[0])[:, None]
    rank[rows, order] = np.arange(order.shape[1])[None, :]
    return rank


def mask_top(images: np.ndarray, maps: np.ndarray, baseline: np.ndarray, counts) -> np.ndarray:
    """(N*S, C, H, W): image n with the ``counts[s]`` top-ranked pixels of ``maps[n]`` set to
    ``baseline[n]`` in every channel, at row ``n * S + s``."""
    img = np.asarray(images, dtype=np.float32)
    base = np.asarray(baseline, dtype=np.float32)
    n, c = img.shape[:2]
    rank = rank_desc(maps).reshape(n, 1, 1, *img.shape[2:])
    counts = np.asarray(counts, dtype=np.int64).reshape(1, -1, 1, 1, 1)
    masked = rank < counts                                    # (N, S, 1, H, W)
    out = np.where(masked, base[:, None], img[:, None])       # (N, S, C, H, W)
    return out.reshape(-1, c, *img.shape[2:]).astype(np.float32)


def energy_in_mask(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """``sum(map[mask]) / sum(map)`` per map, float64; NaN for a zero sum or a non-finite map."""
    m = np.asarray(maps, dtype=np.float64).reshape(len(maps), -1)
    k = np.asarray(masks).reshape(len(maps), -1).astype(bool)
    out = np.full(m.shape[0], np.nan)
    for i in range(m.shape[0]):
        total = m[i].sum()
        if total != 0.0 and np.isfinite(total):
            out[i] = m[i][k[i]].sum() / total
    return out


def pointing_hit(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Whether each map's first maximum (NaN ignored) lies in its mask; (N,) bool."""
    m = np.asarray(maps, dtype=np.float64).reshape(len(maps), -1)
    k = np.asarray(masks).reshape(len(maps), -1).astype(bool)
    out = np.zeros(m.shape[0], dtype=bool)
    for i in range(m.shape[0]):
        finite = ~np.isnan(m[i])
        if finite.any():
            top = int(np.nanargmax(m[i]))
            out[i] = bool(k[i][top])
    return out


def trapezoid(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Trapezoid rule of each row of y (N, P) over x (P,); float64; 0 for fewer than two points."""
    y = np.asarray(y, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    if y.shape[-1] < 2:
        return np.zeros(y.shape[0])
    return np.trapezoid(y, x, axis=-1)


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``<a_i, b_j> / (|a_i| |b_j|)``, (M, K) float32; 0 where either row is all zeros."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    dots = a @ b.T
    denom = np.linalg.norm(a, axis=1)[:, None] * np.linalg.norm(b, axis=1)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(denom == 0.0, 0.0, dots / np.where(denom == 0.0, 1.0, denom))
    return out.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# ROAD's imputation and SSIM (csrc/impute.c, csrc/ssim.c).
# ---------------------------------------------------------------------------------------------

#: The eight neighbours of the published imputer and their weights: (row offset, column offset).
ROAD_NEIGHBOURS = (((1, 1), 1 / 12), ((0, 1), 1 / 6), ((-1, 1), 1 / 12), ((1, -1), 1 / 12),
                   ((0, -1), 1 / 6), ((-1, -1), 1 / 12), ((1, 0), 1 / 6), ((-1, 0), 1 / 6))


def road_impute(images: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """The noise-free imputation, solved exactly (SciPy's sparse LU): (N*S, C, H, W) float32.

    Each removed pixel p satisfies ``s_p x_p - sum_{q removed} w_pq x_q = sum_{q kept} w_pq v_q``
    over its in-image neighbours q; removed pixels with no path of removed neighbours to a kept
    pixel are 0. Built with plain index arithmetic, not the C core's padded grid.
    """
    from scipy import ndimage, sparse  # type: ignore[import-untyped]  # the test extra; no stubs
    from scipy.sparse.linalg import spsolve  # type: ignore[import-untyped]

    img = np.asarray(images, dtype=np.float64)
    rm = np.asarray(removed).astype(bool)
    n, c, h, w = img.shape
    out = []
    for i in range(n):
        for s in range(rm.shape[1]):
            unknown = rm[i, s].copy()
            x = img[i].reshape(c, -1).copy()
            labels, count = ndimage.label(unknown, structure=np.ones((3, 3)))
            kept_near = ndimage.binary_dilation(~rm[i, s], structure=np.ones((3, 3)))
            for lab in range(1, count + 1):
                if not (kept_near & (labels == lab)).any():
                    unknown[labels == lab] = False
                    x[:, (labels == lab).reshape(-1)] = 0.0
            flat = np.flatnonzero(unknown)
            var = np.full(h * w, -1)
            var[flat] = np.arange(flat.size)
            rows, cols, vals = [], [], []
            b = np.zeros((flat.size, c))
            diag = np.zeros(flat.size)
            r0, c0 = np.divmod(flat, w)
            for (dr, dc), wt in ROAD_NEIGHBOURS:
                r1, c1 = r0 + dr, c0 + dc
                ok = (r1 >= 0) & (r1 < h) & (c1 >= 0) & (c1 < w)
                diag[ok] += wt
                q = (r1 * w + c1)[ok]
                eq = np.flatnonzero(ok)
                is_var = var[q] >= 0
                rows += list(eq[is_var]); cols += list(var[q[is_var]]); vals += [-wt] * int(is_var.sum())
                b[eq[~is_var]] += wt * x[:, q[~is_var]].T
            if flat.size:
                a = sparse.csc_matrix((np.concatenate([vals, diag]),
                                       (np.concatenate([rows, np.arange(flat.size)]),
                                        np.concatenate([cols, np.arange(flat.size)]))),
                                      shape=(flat.size, flat.size))
                sol = spsolve(a, b)
                x[:, flat] = np.asarray(sol).reshape(flat.size, c).T
            out.append(x.reshape(c, h, w))
    return np.asarray(out, dtype=np.float32)


def ssim(a: np.ndarray, b: np.ndarray, win: int = 7, data_range: float = 1.0) -> np.ndarray:
    """Mean SSIM per pair of (N, H, W) maps: explicit windows, no summed-area tables."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    n = win * win
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    out = np.empty(a.shape[0])
    for m in range(a.shape[0]):
        wx = np.lib.stride_tricks.sliding_window_view(a[m], (win, win)).reshape(-1, n)
        wy = np.lib.stride_tricks.sliding_window_view(b[m], (win, win)).reshape(-1, n)
        mx, my = wx.mean(1), wy.mean(1)
        vx, vy = wx.var(1, ddof=1), wy.var(1, ddof=1)
        vxy = ((wx - mx[:, None]) * (wy - my[:, None])).sum(1) / (n - 1)
        s = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
        out[m] = s.mean()
    return out
