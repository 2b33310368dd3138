"""Channel weights per base method, from per-class statistics kept at the layer's grid.

A Finer objective is a linear combination of class logits, ``o = sum_s c_s y_s`` (for the paper,
``y_c - gamma * mean_t y_t``); its gradient is the same combination of the per-class gradients
``G_s = dy_s / dA``. So we keep one statistic per stored class and combine the statistics with
the coefficient matrix ``coef`` (N, G, S), G being the number of maps (one for ``mean``, one per
reference for the other aggregations). What is kept per class s:

| method | kept per class (host) | weights of the objective |
|---|---|---|
| gradcam | ``mean_hw G_s`` (N, S, K) | ``alpha = sum_s c_s mean_hw G_s`` (Eq. 2, 7) |
| xgradcam | ``sum_hw(G_s A) / (sum_hw A + 1e-7)`` (N, S, K) | linear in G as well |
| cam | classifier rows ``w_s`` (N, S, K) | ``alpha = sum_s c_s w_s`` (no backward) |
| scorecam | ``f(x o H_k)_s`` (N, S, K) | ``sum_s c_s f(x o H_k)_s - sum_s p_s f(x_b)_s`` (Eq. 9) |
| hirescam | ``sum_k G_s,k A_k`` (N, S, h, w) | the map itself is linear in G |
| layercam | ``G_s`` (N, S, K, h, w) | per-pixel ``relu(g)``, ``g = sum_s c_s G_s`` |
| gradcam++ | ``G_s`` (N, S, K, h, w) | ``w_k = sum_hw relu(g) a``, ``a = g^2 / (2 g^2 + sum_hw(A_k) g^3 + 1e-6)`` |

``p`` is the coefficient of the explained class without gamma (the baseline ``f(x_b)`` of Eq. 9
belongs to the explained class only). Every combination goes through the C core's ``combine``.

Score-CAM's mask ``H_k`` is ``A_k`` resized (half-pixel bilinear) to the input and min-maxed,
``(u - min u) / (max u - min u + 1e-8)``; ``x_b`` is the all-zero input; ``f`` gives logits, used
as Eq. 3 and 9 write them: no softmax (the original Score-CAM scores class probabilities,
pytorch-grad-cam takes a softmax of the K scores over the channels).
"""
from __future__ import annotations

import numpy as np

from . import kernels

__all__ = ["GRADIENT_METHODS", "METHODS", "METHOD_LABELS", "class_statistic", "combine_stats",
           "gradcampp_weights", "signed_maps"]

#: The methods that need the per-class gradients (one backward pass per stored class).
GRADIENT_METHODS = ("gradcam", "layercam", "gradcam++", "xgradcam", "hirescam")
#: Every base method, the one list (FinerCAM, the CLI, the runner and the demo read it).
METHODS = GRADIENT_METHODS + ("scorecam", "cam")
#: Each method's name as the papers write it, for tables and figure titles.
METHOD_LABELS = {"gradcam": "Grad-CAM", "layercam": "Layer-CAM", "gradcam++": "Grad-CAM++",
                 "xgradcam": "XGrad-CAM", "hirescam": "HiResCAM", "scorecam": "Score-CAM", "cam": "CAM"}


def class_statistic(method: str, A: np.ndarray, G: np.ndarray) -> np.ndarray:
    """Per-class statistic of one class gradient ``G`` (N, K, h, w) given activations ``A``.

    With :math:`G_k^{ij} = \\partial y^s / \\partial A_k^{ij}` on the :math:`h \\times w` grid
    (:math:`Z = hw` cells):

    * ``"gradcam"``: :math:`\\alpha_k^s = \\frac{1}{Z} \\sum_{i,j} G_k^{ij}` (Eq. 2), (N, K);
    * ``"xgradcam"``: :math:`\\sum_{i,j} G_k^{ij} A_k^{ij} / (\\sum_{i,j} A_k^{ij} + 10^{-7})`, (N, K);
    * ``"hirescam"``: the map itself, :math:`\\sum_k G_k^{ij} A_k^{ij}`, (N, h, w);
    * ``"layercam"``, ``"gradcam++"``: ``G`` unchanged (their weights are not linear in it, so
      the objective's gradient is combined first, see :func:`signed_maps`).

    All are linear in ``G``, so the statistic of :math:`y^c - \\gamma y^d` is the same
    combination of the per-class statistics (Eq. 6-7).

    >>> A = np.ones((1, 2, 2, 2), np.float32); G = np.full((1, 2, 2, 2), 0.5, np.float32)
    >>> class_statistic("gradcam", A, G)
    array([[0.5, 0.5]], dtype=float32)
    """
    if method == "gradcam":
        return G.mean(axis=(2, 3), dtype=np.float64).astype(np.float32)
    if method == "xgradcam":
        num = (G.astype(np.float64) * A).sum(axis=(2, 3))
        return (num / (A.sum(axis=(2, 3), dtype=np.float64) + 1e-7)).astype(np.float32)
    if method == "hirescam":
        # sum_k G_k A_k = sum_k relu(G_k) A_k - sum_k relu(-G_k) A_k: two per-pixel C combinations.
        P = np.stack([G, -G], axis=1)
        both = kernels.combine_pixelwise(A, P)
        return both[:, 0] - both[:, 1]
    if method in ("layercam", "gradcam++"):
        return np.ascontiguousarray(G, dtype=np.float32)
    raise ValueError(f"method {method!r} has no gradient statistic")


def combine_stats(stats: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """``out[n, g] = sum_s coef[n, g, s] * stats[n, s]`` for stats of any trailing shape (the C
    core's ``combine`` on a flattened view).

    >>> stats = np.array([[[1.0, 2.0], [10.0, 20.0]]], np.float32)     # (N=1, S=2, K=2)
    >>> combine_stats(stats, np.array([[[1.0, -0.5]]], np.float32))
    array([[[-4., -8.]]], dtype=float32)
    """
    N, S = stats.shape[:2]
    tail = stats.shape[2:]
    flat = stats.reshape(N, S, -1, 1)
    return kernels.combine(flat, coef).reshape((N, coef.shape[1]) + tail)


def gradcampp_weights(g: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Grad-CAM++ weights of an objective gradient g (N, G, K, h, w): (N, G, K).

    .. math::

        w_k = \\sum_{i,j} \\mathrm{ReLU}(g_k^{ij})\\, a_k^{ij}, \\qquad
        a_k^{ij} = \\frac{(g_k^{ij})^2}{2 (g_k^{ij})^2 + \\sum_{i,j} A_k^{ij}\\, (g_k^{ij})^3 + 10^{-6}},

    the Grad-CAM++ closed form for an exponential score, whose higher derivatives are powers of
    the first (as pytorch-grad-cam computes it).
    ``a`` is only evaluated where ``g > 0``: elsewhere ``relu(g) * a`` is 0 anyway, and this keeps
    a vanishing denominator at a negative g from turning the product into NaN.

    >>> g = np.ones((1, 1, 1, 1, 1), np.float32); A = np.ones((1, 1, 1, 1), np.float32)
    >>> gradcampp_weights(g, A)          # 1 * 1 / (2 + 1 + 1e-6)
    array([[[0.33333322]]], dtype=float32)
    """
    g64 = g.astype(np.float64)
    sumA = A.sum(axis=(2, 3), dtype=np.float64)[:, None, :, None, None]
    pos = g64 > 0
    g2 = g64 * g64
    den = np.where(pos, 2.0 * g2 + sumA * g2 * g64 + 1e-6, 1.0)
    a = np.where(pos, g2 / den, 0.0)
    return (np.maximum(g64, 0.0) * a).sum(axis=(3, 4)).astype(np.float32)


def signed_maps(method: str, A: np.ndarray, stats: np.ndarray, coef: np.ndarray,
                  primary: np.ndarray, baseline: np.ndarray | None) -> np.ndarray:
    """The G signed maps ``sum_k alpha_gk A_k`` (before any ReLU), (N, G, h, w) float32.

    With the objective :math:`o_g = \\sum_s c_{gs} y^s` (``coef``) and
    :math:`g = \\partial o_g / \\partial A` (the same combination of the stored statistics):

    * gradcam, xgradcam, cam: :math:`\\sum_k \\alpha_{gk} A_k` with
      :math:`\\alpha_{g} = \\sum_s c_{gs} \\alpha^s` (for cam, :math:`\\alpha^s = w^s`, the
      classifier row);
    * scorecam (Eq. 9):
      :math:`\\alpha_{gk} = \\sum_s c_{gs} f(x \\circ H_k)^s - \\sum_s p_{gs} f(x_b)^s`,
      with ``stats`` the scores :math:`f(x \\circ H_k)^s`, ``baseline`` the zero-input logits
      :math:`f(x_b)^s` and ``primary`` the gamma-free coefficients :math:`p`;
    * hirescam: :math:`\\sum_s c_{gs} \\sum_k G_k^s A_k` (element-wise);
    * layercam: :math:`\\sum_k \\mathrm{ReLU}(g_k^{ij}) A_k^{ij}` (pixel-wise weights);
    * gradcam++: :math:`\\sum_k w_k A_k`, ``w`` from :func:`gradcampp_weights`.

    >>> A = np.ones((1, 2, 2, 2), np.float32)
    >>> alpha = np.array([[[1.0, 0.0], [0.0, 1.0]]], np.float32)           # (N, S=2, K=2)
    >>> coef = np.array([[[1.0, -0.5]]], np.float32)                       # y_c - 0.5 y_t
    >>> signed_maps("gradcam", A, alpha, coef, coef, None)[0, 0]
    array([[0.5, 0.5],
           [0.5, 0.5]], dtype=float32)
    """
    if method in ("gradcam", "xgradcam", "cam", "scorecam"):
        W = combine_stats(stats, coef)
        if method == "scorecam":
            if baseline is None:
                raise ValueError("method='scorecam' needs baseline, the zero-input logits")
            W = W - combine_stats(baseline[:, :, None], primary)
        return kernels.combine(A, W)
    if method == "hirescam":
        return kernels.combine(stats, coef)
    g = combine_stats(stats, coef)
    if method == "layercam":
        return kernels.combine_pixelwise(A, g)
    if method == "gradcam++":
        return kernels.combine(A, gradcampp_weights(g, A))
    raise ValueError(f"unknown method {method!r}")
