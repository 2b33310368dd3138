"""Typed entry points to the C core; the only module that imports ``finercam._core``.

Every function takes NumPy arrays (float32; float64 and float16 are converted, any other dtype is a
``TypeError``), never modifies its inputs, returns new C-contiguous float32 arrays, and releases
the GIL while it computes. Torch tensors are accepted and copied to the host first.

Conventions shared by all kernels (their NumPy twins live in ``finercam._twins``):

* Bilinear resizing samples at half-pixel centres, ``src = (dst + 0.5) * in / out - 0.5`` clamped
  at 0 (``align_corners=False``, as ``torch.nn.functional.interpolate`` and ``cv2.resize``), or at
  ``src = dst * (in - 1) / (out - 1)`` with ``align_corners=True``.
* Min-max normalisation maps each map to ``(x - min) / (max - min + eps)``; an all-equal map
  becomes all zeros; a map holding NaN or +-inf becomes all NaN (the non-finite policy), so that a
  broken input is visible rather than silently rescaled.
* Threads: the ranking and masking kernels (:func:`argsort_desc`, :func:`rank_desc`,
  :func:`mask_top`) split their work over up to :func:`get_num_threads` threads of their own
  (see :func:`set_num_threads`); their results do not depend on the count. The other kernels run
  on the calling thread.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from . import _core
from ._checks import check_size

__all__ = ["as_numpy", "combine", "combine_pixelwise", "resize", "minmax", "postprocess", "fuse_layers"]


#: The torch floating dtypes whose tensors NumPy holds as they are; others (bfloat16, float8) go
#: through float32.
_NUMPY_FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16)


def as_numpy(x):
    """A torch tensor as a host NumPy array (detached, on the CPU; floating dtypes NumPy has no
    counterpart for, such as bfloat16, as float32); anything else is returned unchanged, for the
    caller or the C core to check.

    >>> as_numpy(torch.ones(2, dtype=torch.bfloat16)).dtype, as_numpy([1, 2])
    (dtype('float32'), [1, 2])
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype.is_floating_point and x.dtype not in _NUMPY_FLOAT_DTYPES:
            x = x.float()
        return x.numpy()
    return x


def _eps(eps) -> float:
    if isinstance(eps, (bool, np.bool_)) or not isinstance(eps, (int, float, np.integer,
                                                                 np.floating)):
        raise TypeError(f"eps must be a float, got {type(eps).__name__}")
    return float(eps)  # the C core checks that it is finite and >= 0


def combine(activations, weights, *, relu: bool = False) -> np.ndarray:
    """Weighted channel sums, several weight sets per image in one pass.

    ``out[n, g] = sum_k W[n, g, k] * A[n, k]``

    for activations ``A`` (N, K, h, w) and weights ``W`` (N, G, K): G weight sets per image
    (several gammas, several references) cost one pass over the activations. With
    ``relu=True`` the result is ``max(out, 0)``. Sums accumulate in double and are rounded once.

    :param activations: (N, K, h, w) feature-grid activations.
    :param weights: (N, G, K) channel weights.
    :param relu: clamp the sums at 0 (NaN stays NaN).
    :returns: (N, G, h, w) float32.

    >>> import numpy as np
    >>> A = np.ones((1, 2, 2, 2), np.float32); W = np.array([[[1.0, -3.0]]], np.float32)
    >>> combine(A, W)[0, 0, 0, 0], combine(A, W, relu=True)[0, 0, 0, 0]
    (np.float32(-2.0), np.float32(0.0))
    """
    return _core.combine(as_numpy(activations), as_numpy(weights), bool(relu))


def combine_pixelwise(activations, weights, *, relu: bool = False) -> np.ndarray:
    """Layer-CAM combination with per-pixel weights.

    ``out[n, g] = sum_k max(P[n, g, k], 0) * A[n, k]`` (element-wise over the h x w grid)

    for activations ``A`` (N, K, h, w) and per-pixel weights ``P`` (N, G, K, h, w); with
    ``relu=True`` the sum is clamped at 0 too.

    :returns: (N, G, h, w) float32.

    >>> import numpy as np
    >>> A = np.full((1, 2, 1, 2), 2.0, np.float32)
    >>> P = np.array([[[[[1.0, -1.0]], [[0.5, 0.5]]]]], np.float32)  # (1, 1, 2, 1, 2)
    >>> combine_pixelwise(A, P)[0, 0]
    array([[3., 1.]], dtype=float32)
    """
    return _core.combine_pixelwise(as_numpy(activations), as_numpy(weights),
                                   bool(relu))


def resize(maps, size, *, align_corners: bool = False) -> np.ndarray:
    """Bilinear resize of (N, h, w) maps to (N, H, W), up or down.

    Output pixel ``dst`` of an axis of ``n_in -> n_out`` samples the input at
    ``src = max((dst + 0.5) * n_in / n_out - 0.5, 0)`` (half-pixel centres, as
    ``torch.nn.functional.interpolate(mode="bilinear")`` and ``cv2.resize``), or at
    ``src = dst * (n_in - 1) / (n_out - 1)`` with ``align_corners=True``; equal to torch within
    1e-5 of the map's magnitude. A NaN or infinite input makes the outputs it touches non-finite.

    :param size: H, or (H, W); positive.
    :returns: (N, H, W) float32.

    >>> import numpy as np
    >>> resize(np.array([[[0.0, 1.0]]], np.float32), (1, 4))
    array([[[0.  , 0.25, 0.75, 1.  ]]], dtype=float32)
    """
    h, w = check_size(size)
    return _core.resize(as_numpy(maps), h, w, bool(align_corners))


def minmax(maps, *, eps: float = 1e-8) -> np.ndarray:
    """Per-map min-max normalisation of (N, h, w) maps.

    ``x_hat = (x - min x) / (max x - min x + eps)``, computed in double. An all-equal map becomes zeros; a map holding NaN or +-inf becomes all
    NaN (the other maps are unaffected).

    :param eps: finite, >= 0.
    :returns: (N, h, w) float32.

    >>> import numpy as np
    >>> minmax(np.array([[[1.0, 3.0, 5.0]], [[2.0, 2.0, 2.0]]], np.float32), eps=0.0)
    array([[[0. , 0.5, 1. ]],
    <BLANKLINE>
           [[0. , 0. , 0. ]]], dtype=float32)
    """
    return _core.minmax(as_numpy(maps), _eps(eps))


def postprocess(maps, size, *, relu: bool = True, eps: float = 1e-8,
                align_corners: bool = False) -> np.ndarray:
    """Fused ``minmax(resize(relu(maps), size))`` for (N, h, w) maps.

    The CAM post-processing in one call: two passes over each output map (its range, then the
    normalised values), reading the resized map from interpolated source rows that stay in cache,
    instead of the five or six full-resolution passes of an op-by-op pipeline. Same policy as
    :func:`minmax`, applied to the resized map.

    :param size: H, or (H, W).
    :returns: (N, H, W) float32 in [0, 1] (or NaN maps).

    >>> import numpy as np
    >>> postprocess(np.array([[[-1.0, 1.0], [1.0, 3.0]]], np.float32), 4, eps=0.0)[0, :, 0]
    array([0.        , 0.08333334, 0.25      , 0.33333334], dtype=float32)
    """
    h, w = check_size(size)
    return _core.postprocess(as_numpy(maps), h, w, bool(relu), _eps(eps), bool(align_corners))


def fuse_layers(maps_list: Sequence, size, *, relu: bool = True, eps: float = 1e-8,
                align_corners: bool = False) -> np.ndarray:
    """Fuse several layers' maps of different grid sizes into one map per image.

    ``out = minmax(mean_l postprocess(M_l, size))``

    Each ``M_l`` is (N, h_l, w_l) with the same N; every layer is normalised before the mean, so
    a layer with large activations does not drown the others. A NaN map in any layer makes the
    fused map NaN.

    :param maps_list: list or tuple of L >= 1 arrays.
    :returns: (N, H, W) float32.

    >>> import numpy as np
    >>> coarse = np.array([[[0.0, 2.0]]], np.float32); fine = np.array([[[0.0, 0.0, 1.0, 1.0]]], np.float32)
    >>> fuse_layers([coarse, fine], (1, 4), eps=0.0)
    array([[[0.   , 0.125, 0.875, 1.   ]]], dtype=float32)
    """
    h, w = check_size(size)
    if not isinstance(maps_list, (list, tuple)):
        raise TypeError(f"maps_list must be a list or tuple of arrays, got {type(maps_list).__name__}")
    return _core.fuse_layers([as_numpy(m) for m in maps_list], h, w, bool(relu),
                             _eps(eps), bool(align_corners))


# ---------------------------------------------------------------------------------------------
# Metrics kernels: ranking, top-count masking, measurements (csrc/rank.c, csrc/measure.c).
# ---------------------------------------------------------------------------------------------

__all__ += ["argsort_desc", "rank_desc", "mask_top", "energy_in_mask", "pointing_hit",
            "trapezoid", "cosine_matrix", "set_num_threads", "get_num_threads"]


def set_num_threads(n: int) -> None:
    """Let the ranking and masking kernels use up to ``n`` threads (``n = 1``: the calling thread
    only); the setting is process-wide and applies from the next call.

    :func:`argsort_desc` and :func:`rank_desc` give each thread whole maps; :func:`mask_top`
    ranks the images that way, then gives each thread whole output planes (one image, one count,
    one channel), so two threads help even for a single image. A call uses at most as many
    threads as it has items, and one thread below 65,536 pixels of work (a thread's start-up
    costs about as much as that). Each map is sorted by one thread and each plane written by one,
    so the results are bit-identical for every ``n``. The default is the number of CPUs this
    process may run on (its affinity mask), at most 8. Independent of torch's and OpenMP's
    thread settings.

    :param n: an int in [1, 1024]; anything else is a ``TypeError`` (not an int) or a
        ``ValueError`` (out of range), naming ``n``.

    >>> old = get_num_threads()
    >>> set_num_threads(2); get_num_threads()
    2
    >>> set_num_threads(old)
    """
    _core.set_num_threads(n)


def get_num_threads() -> int:
    """The number of threads the ranking and masking kernels may use (see :func:`set_num_threads`).

    >>> 1 <= get_num_threads() <= 1024
    True
    """
    return _core.get_num_threads()


def argsort_desc(maps) -> np.ndarray:
    """Flat pixel indices of each (N, H, W) map by decreasing value; returns (N, H*W) int64.

    Ties go to the lower flat index (a stable order), ``-0.0`` equals ``+0.0`` and NaN comes after
    every number. A radix sort, linear in the pixel count.

    >>> import numpy as np
    >>> argsort_desc(np.array([[[0.5, 1.0], [0.5, 0.0]]], np.float32)).tolist()
    [[1, 0, 2, 3]]
    """
    return _core.argsort_desc(as_numpy(maps))


def rank_desc(maps) -> np.ndarray:
    """``rank[n, i, j]`` = position of pixel (i, j) in :func:`argsort_desc` (0 = the largest).

    >>> import numpy as np
    >>> rank_desc(np.array([[[0.5, 1.0], [0.5, 0.0]]], np.float32)).tolist()
    [[[1, 0], [2, 3]]]
    """
    return _core.rank_desc(as_numpy(maps))


def mask_top(images, maps, baseline, counts, *, out=None) -> np.ndarray:
    """Many masked copies of a batch in one pass: returns (N*S, C, H, W) float32 where row
    ``n * S + s`` is ``images[n]`` with its ``counts[s]`` top-ranked pixels (the order of
    :func:`argsort_desc` on ``maps[n]``) replaced by ``baseline[n]`` in every channel.

    images and baseline are (N, C, H, W), maps (N, H, W), counts (S,) ints in [0, H*W]. ``out``,
    when given, is a preallocated C-contiguous float32 array of the result's shape, filled and
    returned, so one buffer serves every chunk of a large evaluation.

    >>> import numpy as np
    >>> img = np.ones((1, 1, 1, 3), np.float32); m = np.array([[[0.1, 0.9, 0.5]]], np.float32)
    >>> mask_top(img, m, np.zeros_like(img), [0, 2])[:, 0, 0].tolist()
    [[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]
    """
    counts = np.asarray(as_numpy(counts))
    if counts.size == 0:
        counts = counts.astype(np.int64)  # an empty list arrives as float64
    return _core.mask_top(as_numpy(images), as_numpy(maps),
                          as_numpy(baseline), counts, out)


def _bool_masks(masks, name: str = "masks"):
    masks = as_numpy(masks)
    if isinstance(masks, np.ndarray) and masks.dtype != np.bool_:
        if not (np.issubdtype(masks.dtype, np.number)):
            raise TypeError(f"{name} must be a boolean or numeric array, got dtype {masks.dtype}")
        masks = masks != 0
    return masks


def energy_in_mask(maps, masks) -> np.ndarray:
    """``sum(map * mask) / sum(map)`` per (N, H, W) map, float64, summed in double.

    masks are (N, H, W), nonzero = inside. NaN for an all-zero map or a map holding NaN/inf.

    >>> import numpy as np
    >>> m = np.array([[[1.0, 3.0]], [[0.0, 0.0]]], np.float32)
    >>> energy_in_mask(m, np.array([[[0, 1]], [[0, 1]]], bool))   # 3 / (1 + 3); all-zero map
    array([0.75,  nan])
    """
    return _core.energy_in_mask(as_numpy(maps), _bool_masks(masks))


def pointing_hit(maps, masks) -> np.ndarray:
    """Whether each map's top-ranked pixel (its first maximum in flat order, the order of
    :func:`argsort_desc`) lies inside its mask; (N,) bool. A map of NaN only is a miss.

    >>> import numpy as np
    >>> m = np.array([[[0.2, 0.9, 0.9]]], np.float32)               # tie: the first maximum, index 1
    >>> pointing_hit(m, np.array([[[0, 1, 0]]], bool)), pointing_hit(m, np.array([[[0, 0, 1]]], bool))
    (array([ True]), array([False]))
    """
    return _core.pointing_hit(as_numpy(maps), _bool_masks(masks))


def trapezoid(y, x) -> np.ndarray:
    """Trapezoid rule of each row of y (N, P) over the points x (P,); (N,) float64:
    ``sum_p (y[p] + y[p+1]) / 2 * (x[p+1] - x[p])``.

    >>> import numpy as np
    >>> trapezoid(np.array([[1.0, 0.5, 0.0]], np.float32), np.array([0.0, 0.5, 1.0], np.float32))
    array([0.5])
    """
    return _core.trapezoid(as_numpy(y), as_numpy(x))


def cosine_matrix(a, b=None) -> np.ndarray:
    """``<a_i, b_j> / (|a_i| |b_j|)`` for rows a (M, D) and b (K, D) (b defaults to a), (M, K)
    float32 accumulated in double; 0 where either row is all zeros.

    With the rows of a classifier's weight matrix this is the class-similarity matrix of the
    paper's Fig. 1 (Eq. 11).

    >>> import numpy as np
    >>> cosine_matrix(np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]], np.float32)).round(4)
    array([[1.    , 0.7071, 0.    ],
           [0.7071, 1.    , 0.    ],
           [0.    , 0.    , 0.    ]], dtype=float32)
    """
    a = as_numpy(a)
    return _core.cosine_matrix(a, a if b is None else as_numpy(b))


# ---------------------------------------------------------------------------------------------
# ROAD's imputation and SSIM (csrc/impute.c, csrc/ssim.c).
# ---------------------------------------------------------------------------------------------

__all__ += ["road_impute", "ssim"]

#: The imputation's default relative residual: ~3e-6 per pixel from the exact solution on
#: 224 x 224 images (docs/metrics.md), well inside the 1e-4 of the parity with pytorch-grad-cam.
ROAD_TOL = 1e-6


def _seed(seed) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not 0 <= int(seed) < 2**64:
        raise ValueError(f"seed must lie in [0, 2**64), got {seed}")
    return int(seed)


def road_impute(images, removed, *, noise: float = 0.01, seed: int = 0, first: int = 0,
                tol: float = ROAD_TOL, max_iter: int = 200) -> np.ndarray:
    """ROAD's noisy linear imputation (Rong et al. 2022): returns (N*S, C, H, W) float32 where row
    ``n * S + s`` is ``images[n]`` with the pixels of ``removed[n, s]`` imputed.

    Every removed pixel is the weighted mean of its eight neighbours inside the image (weights
    1/6 for the edge neighbours, 1/12 for the diagonal ones, those of the published code), kept
    neighbours given, removed ones unknown: one sparse symmetric positive definite system per
    image, mask and channel,
    :math:`s_p x_p - \\sum_{q \\sim p,\\, q \\in R} w_{pq} x_q = \\sum_{q \\sim p,\\, q \\notin R} w_{pq} v_q`,
    :math:`s_p = \\sum_{q \\sim p} w_{pq}`, solved in the C core by multigrid-preconditioned conjugate
    gradients until :math:`\\|r\\|_2 \\le \\mathrm{tol}\\,\\|b\\|_2` (or ``max_iter`` iterations).
    A removed region that touches no kept pixel is 0. Then ``noise`` times a standard normal
    keyed by ``(seed, first + row, pixel, channel)`` is added to each removed pixel: the same
    draws whatever the threads and the chunking (pass a chunk's first row as ``first``).
    Threads: whole (image, mask) pairs over :func:`get_num_threads`.

    :param images: (N, C, H, W), C <= 64.
    :param removed: (N, S, H, W) bool (numbers: nonzero is removed).

    >>> import numpy as np
    >>> img = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3)
    >>> rm = np.zeros((1, 1, 3, 3), bool); rm[0, 0, 1, 1] = True      # the centre, from its 8 neighbours
    >>> float(road_impute(img, rm, noise=0.0)[0, 0, 1, 1].round(5))
    4.0
    """
    noise = float(noise)
    tol = float(tol)
    if isinstance(max_iter, (bool, np.bool_)) or not isinstance(max_iter, (int, np.integer)):
        raise TypeError(f"max_iter must be an int, got {type(max_iter).__name__}")
    if not 1 <= int(max_iter) < 2**31:
        raise ValueError(f"max_iter must lie in [1, 2**31), got {max_iter}")
    return _core.road_impute(as_numpy(images), _bool_masks(removed, "removed"), noise, _seed(seed), _seed(first),
                             tol, int(max_iter))


def ssim(a, b, *, win: int = 7, data_range: float = 1.0) -> np.ndarray:
    """Mean structural similarity of each pair of (N, H, W) maps, (N,) float64, as scikit-image's
    ``structural_similarity(a, b, data_range=data_range)`` with its defaults: a uniform
    ``win x win`` window, sample (co)variances, :math:`K_1 = 0.01`, :math:`K_2 = 0.03`,

    .. math::

        \\mathrm{SSIM} = \\frac{(2\\mu_a\\mu_b + C_1)(2\\sigma_{ab} + C_2)}
        {(\\mu_a^2 + \\mu_b^2 + C_1)(\\sigma_a^2 + \\sigma_b^2 + C_2)},\\quad C_i = (K_i R)^2,

    averaged over the pixels whose window lies inside the map (R = ``data_range``). A map
    holding NaN or inf gives NaN.

    >>> import numpy as np
    >>> m = np.random.default_rng(0).random((1, 9, 9), dtype=np.float32)
    >>> ssim(m, m).tolist()
    [1.0]
    """
    if isinstance(win, (bool, np.bool_)) or not isinstance(win, (int, np.integer)):
        raise TypeError(f"win must be an int, got {type(win).__name__}")
    if not 3 <= int(win) < 2**31:
        raise ValueError(f"win must be odd, >= 3 and at most the maps' sides, got {win}")
    return _core.ssim(as_numpy(a), as_numpy(b), int(win), float(data_range))
