"""ROAD: RemOve And Debias (Rong et al., "A Consistent and Efficient Evaluation Strategy for
Attribution Methods", ICML 2022).

Instead of setting removed pixels to a constant, which leaves a shape the model can read (the
mask itself carries class information), ROAD fills them by a noisy linear imputation: each
removed pixel becomes the weighted mean of its eight neighbours (1/6 edge, 1/12 diagonal; the
published weights), solved jointly as one sparse linear system per image and mask (in the C
core, :func:`finercam.kernels.road_impute`), plus Gaussian noise of standard deviation ``noise``
(default 0.01, in the model's input units, as the authors' code).

Protocol (``docs/metrics.md``): for each fraction ``f`` of ``fractions`` (default 10 %, 20 %,
..., 90 %), ``count(f) = ceil(f * H * W)`` pixels are removed:

* MoRF (most relevant first): the ``count(f)`` top-ranked pixels of the map (the ranking of every
  metric here: decreasing value, ties to the lower flat index);
* LeRF (least relevant first): the ``count(f)`` lowest-ranked pixels.

The score of one order is the mean over the fractions of the change of the target's softmax
probability, :math:`\\frac{1}{|F|} \\sum_f (p^c_{\\star f} - p^c)`: MoRF lower (more negative) is
better, LeRF higher (nearer 0) is better, and the combination ``(LeRF - MoRF) / 2`` (as
pytorch-grad-cam's ``ROADCombined``) higher is better.

``compat="pgc"`` removes pixels as pytorch-grad-cam 1.5.7 does instead: its
``ROADMostRelevantFirst(percentile=p)`` removes the pixels whose value is at least
``np.percentile(map, p)`` (so ``p = 100 (1 - f)``), and its LeRF the same on ``1 - map``; equal
values at the threshold all go together. The scores then equal pytorch-grad-cam's with
``ClassifierOutputSoftmaxTarget`` and its imputation noise set to 0 (tests/evaluation/test_road.py).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import torch

from .. import kernels
from .._checks import check_fraction
from ._masking import _check_maps, _prepare, forward_built, host_images, top_count

__all__ = ["ROAD", "ROAD_FRACTIONS", "ROAD_NOISE", "road", "road_morf", "road_lerf", "road_combined",
           "road_masks"]

#: The fractions removed by default: pytorch-grad-cam's and the paper's 10 % ... 90 %.
ROAD_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
#: The imputation noise's standard deviation, in the model's input units (the authors' default).
ROAD_NOISE = 0.01
ORDERS = ("morf", "lerf")
COMPAT = (None, "pgc")


class ROAD(NamedTuple):
    """Result of :func:`road`: per image, the scores of both orders and their combination, and
    the probability curves they average.

    ``morf = mean_f(morf_curve[:, f] - p0)``, ``lerf`` likewise, ``combined = (lerf - morf) / 2``.
    """

    morf: np.ndarray        #: (N,) mean change of the target's probability, MoRF (lower is better)
    lerf: np.ndarray        #: (N,) the same, LeRF (higher is better)
    combined: np.ndarray    #: (N,) (lerf - morf) / 2 (higher is better)
    morf_curve: np.ndarray  #: (N, F) target probability with the top fraction f imputed
    lerf_curve: np.ndarray  #: (N, F) target probability with the bottom fraction f imputed
    p0: np.ndarray          #: (N,) target probability of the image itself
    fractions: np.ndarray   #: (F,) the removed fractions
    counts: np.ndarray      #: (F,) pixels removed at each fraction (``compat=None``; -1 for pgc's)


def _check_fractions(fractions) -> np.ndarray:
    if isinstance(fractions, (int, float, np.number)):
        fractions = (fractions,)
    if not isinstance(fractions, (list, tuple, np.ndarray)) or len(fractions) == 0:
        raise TypeError(f"fractions must be a non-empty sequence of fractions in (0, 1], got {fractions!r}")
    return np.array([check_fraction(f, "fractions") for f in fractions], dtype=np.float64)


def _check_order(order: str) -> str:
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    return order


def road_masks(maps, fractions: Sequence[float] = ROAD_FRACTIONS, order: str = "morf", *,
               compat: str | None = None) -> np.ndarray:
    """(N, F, H, W) bool: the pixels ROAD removes from each map at each fraction.

    ``order="morf"``: the ``ceil(f * H * W)`` top-ranked pixels (:func:`finercam.kernels.rank_desc`);
    ``"lerf"``: the as many lowest-ranked. ``compat="pgc"``: pytorch-grad-cam's threshold rule
    (see the module doc).

    >>> import numpy as np
    >>> m = np.array([[[0.1, 0.9], [0.5, 0.3]]], np.float32)
    >>> road_masks(m, [0.25, 0.5])[0].astype(int).tolist()
    [[[0, 1], [0, 0]], [[0, 1], [1, 0]]]
    >>> road_masks(m, [0.25], "lerf")[0, 0].astype(int).tolist()
    [[1, 0], [0, 0]]
    """
    m = _check_maps(maps)
    fr = _check_fractions(fractions)
    _check_order(order)
    if compat not in COMPAT:
        raise ValueError(f"compat must be None or 'pgc', got {compat!r}")
    n, h, w = m.shape
    if compat == "pgc":
        return _pgc_masks(m, fr, order)
    rank = kernels.rank_desc(m).reshape(n, 1, h, w)
    counts = np.array([top_count(f, h * w) for f in fr], dtype=np.int64).reshape(1, -1, 1, 1)
    return rank < counts if order == "morf" else rank >= h * w - counts


def _pgc_masks(m: np.ndarray, fractions: np.ndarray, order: str) -> np.ndarray:
    """pytorch-grad-cam 1.5.7's ``RemoveMostRelevantFirst`` / ``RemoveLeastRelevantFirst``:
    ``keep = cam < np.percentile(cam, p)`` with ``cam`` a torch tensor (``1 - cam`` for LeRF),
    ``p = 100 (1 - f)``; the removed pixels are the others."""
    out = np.empty((m.shape[0], fractions.size) + m.shape[1:], dtype=bool)
    for i in range(m.shape[0]):
        cam = torch.from_numpy(m[i].copy())
        if order == "lerf":
            cam = 1 - cam
        for j, f in enumerate(fractions):
            threshold = np.percentile(cam.numpy(), 100 * (1 - f))
            out[i, j] = ~(cam < threshold).numpy()
    return out


def _road_probs(model, images, m, t, fractions, order, compat, noise, seed, batch_size, tol):
    """(N, F) target probabilities after the imputation of ``order``'s pixels at each fraction."""
    host = host_images(images)
    removed = road_masks(m, fractions, order, compat=compat)
    f = fractions.size
    # the two orders draw different noise: a row offset past every row of the other order
    first = 0 if order == "morf" else images.shape[0] * f

    def build(i0: int, i1: int, out: np.ndarray) -> None:
        out[...] = kernels.road_impute(host[i0:i1], removed[i0:i1], noise=noise, seed=seed,
                                       first=first + i0 * f, tol=tol).reshape(out.shape)

    p = forward_built(model, images, f, build, batch_size)
    return p[np.arange(images.shape[0])[:, None], np.arange(f)[None, :], t[:, None]]


def road(model, images, maps, targets=None, fractions: Sequence[float] = ROAD_FRACTIONS, *,
         orders: Sequence[str] = ORDERS, noise: float = ROAD_NOISE, seed: int = 0,
         compat: str | None = None, tol: float = kernels.ROAD_TOL, batch_size: int = 64) -> ROAD:
    """ROAD scores per image: MoRF, LeRF and their combination (see the module doc).

    ``targets``: the class per image (default: the predicted class). ``orders``: compute only
    ``("morf",)`` or ``("lerf",)`` (the other's fields are NaN). ``noise``/``seed``: the
    imputation's noise (0 for none) and its seed: a seed gives the same numbers on every run and
    thread count. Costs ``len(orders) * len(fractions)`` imputations (C core, threaded) and as
    many forwards of the batch, chunked, plus one unmasked forward.

    With the score :math:`\\Delta_f = p^c_{\\star f} - p^c`,
    :math:`\\mathrm{MoRF} = \\frac{1}{|F|}\\sum_f \\Delta_f^{\\mathrm{MoRF}}`, likewise LeRF, and
    :math:`(\\mathrm{LeRF} - \\mathrm{MoRF}) / 2`.

    >>> import torch; from finercam.metrics import road
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 3))
    >>> r = road(model, torch.randn(2, 3, 4, 4), torch.rand(2, 4, 4), fractions=(0.25, 0.5))
    >>> r.morf.shape, r.morf_curve.shape, r.counts.tolist()
    ((2,), (2, 2), [4, 8])
    >>> bool(np.allclose(r.combined, (r.lerf - r.morf) / 2))
    True
    """
    fr = _check_fractions(fractions)
    if isinstance(orders, str) or not all(o in ORDERS for o in orders) or not orders:
        raise ValueError(f"orders must be a non-empty sequence of {ORDERS}, got {orders!r}")
    if compat not in COMPAT:
        raise ValueError(f"compat must be None or 'pgc', got {compat!r}")
    if isinstance(noise, (bool, np.bool_)) or not isinstance(noise, (int, float, np.integer, np.floating)):
        raise TypeError(f"noise must be a number, got {type(noise).__name__}")
    if not (np.isfinite(float(noise)) and float(noise) >= 0):
        raise ValueError(f"noise must be finite and >= 0, got {noise!r}")
    images, m, t, _, bs, p_all = _prepare(model, images, maps, targets, None, batch_size,
                                          need_compare=False)
    n, _, h, w = images.shape
    p0 = p_all[np.arange(n), t]
    nan = np.full((n, fr.size), np.nan)
    curves = {o: _road_probs(model, images, m, t, fr, o, compat, noise, seed, bs, tol)
              if o in orders else nan for o in ORDERS}
    morf = (curves["morf"] - p0[:, None]).mean(axis=1)
    lerf = (curves["lerf"] - p0[:, None]).mean(axis=1)
    counts = (np.array([top_count(f, h * w) for f in fr], dtype=np.int64) if compat is None
              else np.full(fr.size, -1, dtype=np.int64))
    return ROAD(morf, lerf, (lerf - morf) / 2, curves["morf"], curves["lerf"], p0, fr, counts)


def road_morf(model, images, maps, targets=None, fractions: Sequence[float] = ROAD_FRACTIONS,
              **kwargs) -> np.ndarray:
    """The ROAD-MoRF score per image (lower is better): :func:`road` with ``orders=("morf",)``."""
    return road(model, images, maps, targets, fractions, orders=("morf",), **kwargs).morf


def road_lerf(model, images, maps, targets=None, fractions: Sequence[float] = ROAD_FRACTIONS,
              **kwargs) -> np.ndarray:
    """The ROAD-LeRF score per image (higher is better): :func:`road` with ``orders=("lerf",)``."""
    return road(model, images, maps, targets, fractions, orders=("lerf",), **kwargs).lerf


def road_combined(model, images, maps, targets=None, fractions: Sequence[float] = ROAD_FRACTIONS,
                  **kwargs) -> np.ndarray:
    """``(LeRF - MoRF) / 2`` per image (higher is better), pytorch-grad-cam's ``ROADCombined``."""
    return road(model, images, maps, targets, fractions, **kwargs).combined
