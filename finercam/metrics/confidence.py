"""The confidence metrics of the paper: relative drop (Eq. 10), confidence drop, deletion, and
insertion beside it, all through the C core's masking path (:func:`finercam.kernels.mask_top`)."""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from .. import kernels
from .._checks import check_fraction, check_int
from ._masking import _masked_probs, _prepare, deletion_counts, top_count
from .localisation import _check_masks, energy_in_mask

__all__ = ["Deletion", "Insertion", "relative_drop", "confidence_drop", "deletion_auc", "insertion_auc",
           "evaluate_maps"]


class Deletion(NamedTuple):
    """Result of :func:`deletion_auc`; curves are (N, steps + 1) probabilities.

    The area is the trapezoid rule over the deleted fraction,
    :math:`\\mathrm{AUC} = \\sum_k (q_k + q_{k+1}) / (2\\,\\mathrm{steps})`.

    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    >>> r = deletion_auc(model, torch.randn(2, 1, 2, 2), torch.rand(2, 2, 2), steps=2)
    >>> r.fractions.tolist(), r.counts.tolist()
    ([0.0, 0.5, 1.0], [0, 2, 4])
    >>> bool(np.allclose(r.auc, (r.curve[:, :-1] + r.curve[:, 1:]).sum(1) / 4))
    True
    """

    auc: np.ndarray              #: (N,) area under the target's curve
    curve: np.ndarray            #: (N, steps + 1) target probability after step k
    reference_auc: np.ndarray    #: (N,) area under the compared class's curve
    reference_curve: np.ndarray  #: (N, steps + 1) probability of ``compare_to`` (Fig. 5)
    fractions: np.ndarray        #: (steps + 1,) the deleted fraction k / steps
    counts: np.ndarray           #: (steps + 1,) pixels masked at step k


class Insertion(NamedTuple):
    """Result of :func:`insertion_auc`: the target's probability as the top-ranked pixels are put
    back into the blurred image, and its area (trapezoid over the inserted fraction).

    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    >>> r = insertion_auc(model, torch.randn(2, 1, 2, 2), torch.rand(2, 2, 2), steps=2)
    >>> r.fractions.tolist(), r.counts.tolist(), r.curve.shape
    ([0.0, 0.5, 1.0], [0, 2, 4], (2, 3))
    """

    auc: np.ndarray        #: (N,) area under the target's curve (higher is better)
    curve: np.ndarray      #: (N, steps + 1) target probability with k / steps of the pixels inserted
    fractions: np.ndarray  #: (steps + 1,) the inserted fraction k / steps
    counts: np.ndarray     #: (steps + 1,) pixels inserted at step k


# --- public metrics --------------------------------------------------------------------------


def relative_drop(model, images, maps, targets=None, compare_to=None, fraction: float = 0.05,
                  baseline=0.0, *, batch_size: int = 64) -> np.ndarray:
    """Relative confidence drop (Eq. 10), per image: ``(p_c - p*_c) - (p_d - p*_d)``, i.e.
    :math:`\\mathrm{RD} = (p^c - p^c_\\star) - (p^d - p^d_\\star)`.

    ``p`` are softmax probabilities before and (``*``) after masking the top
    ``ceil(fraction * H * W)`` pixels of each map to ``baseline``; ``c`` is the target (default:
    the predicted class), ``d`` is ``compare_to`` (default: the class whose logit is nearest the
    target's, see :func:`nearest_logit_class`). Costs two batched forwards. Returns (N,) float64.

    >>> import torch; from finercam.metrics import relative_drop
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    >>> x = torch.randn(2, 1, 2, 2); maps = torch.rand(2, 2, 2)
    >>> relative_drop(model, x, maps, targets=[0, 1], compare_to=[1, 2], fraction=0.5).shape
    (2,)
    """
    f = check_fraction(fraction)
    images, m, t, d, bs, p0 = _prepare(model, images, maps, targets, compare_to, batch_size)
    n, _, h, w = images.shape
    p = _masked_probs(model, images, m, np.array([0, top_count(f, h * w)]), baseline, bs, p0)
    rows = np.arange(n)
    return (p[rows, 0, t] - p[rows, 1, t]) - (p[rows, 0, d] - p[rows, 1, d])


def confidence_drop(model, images, maps, targets=None, fraction: float = 0.05, baseline=0.0, *,
                    batch_size: int = 64) -> np.ndarray:
    """The target's own confidence drop ``p_c - p*_c`` at ``fraction`` (the bars of Fig. 6b),
    :math:`p^c - p^c_\\star`, with the masking of :func:`relative_drop`. Returns (N,) float64.

    A model whose logits are ``(sum of the pixels, 0)``: on an all-ones 2 x 2 image the target's
    logit is 4; masking the top 25% (one pixel, set to 0) makes it 3, so the drop is
    ``sigmoid(4) - sigmoid(3)`` = 0.02944:

    >>> import numpy as np, torch
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    >>> with torch.no_grad():
    ...     _ = net[1].weight.copy_(torch.tensor([[1.0, 1, 1, 1], [0, 0, 0, 0]])); _ = net[1].bias.zero_()
    >>> m = np.array([[[0.1, 0.9], [0.2, 0.0]]], np.float32)
    >>> confidence_drop(net, torch.ones(1, 1, 2, 2), m, [0], fraction=0.25).round(5)
    array([0.02944])
    >>> relative_drop(net, torch.ones(1, 1, 2, 2), m, [0], fraction=0.25).round(5)   # class 1 gains it
    array([0.05888])
    """
    f = check_fraction(fraction)
    images, m, t, _, bs, p0 = _prepare(model, images, maps, targets, None, batch_size,
                                   need_compare=False)
    n, _, h, w = images.shape
    p = _masked_probs(model, images, m, np.array([0, top_count(f, h * w)]), baseline, bs, p0)
    rows = np.arange(n)
    return p[rows, 0, t] - p[rows, 1, t]


def deletion_auc(model, images, maps, targets=None, steps: int = 20, baseline=0.0, *,
                 compare_to=None, batch_size: int = 64) -> Deletion:
    """Deletion curve and its area, per image.

    Step ``k = 0..steps`` masks the top ``ceil(k * H * W / steps)`` pixels;
    ``AUC = sum_k (q_k + q_{k+1}) / (2 steps)``, the trapezoid of the target's probability q over
    the deleted fraction k / steps:
    :math:`\\mathrm{AUC} = \\sum_{k=0}^{S-1} (q_k + q_{k+1}) / (2S)`, :math:`S` = ``steps``,
    :math:`q_k = p^c` with :math:`\\lceil k HW / S \\rceil` pixels masked. Also returns the curve of ``compare_to`` (default: the most
    similar class by logit, as in Fig. 5). Costs ``steps + 1`` forwards of the batch, chunked.

    >>> import torch; from finercam.metrics import deletion_auc
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    >>> r = deletion_auc(model, torch.randn(2, 1, 2, 2), torch.rand(2, 2, 2), steps=4)
    >>> r.auc.shape, r.curve.shape, r.fractions.tolist()
    ((2,), (2, 5), [0.0, 0.25, 0.5, 0.75, 1.0])
    """
    steps = check_int(steps, "steps")
    images, m, t, d, bs, p0 = _prepare(model, images, maps, targets, compare_to, batch_size)
    n, _, h, w = images.shape
    counts = deletion_counts(steps, h * w)
    p = _masked_probs(model, images, m, counts, baseline, bs, p0)
    rows = np.arange(n)
    x = np.arange(steps + 1, dtype=np.float64) / steps
    curve, ref = p[rows, :, t], p[rows, :, d]
    return Deletion(kernels.trapezoid(curve, x), curve, kernels.trapezoid(ref, x), ref, x, counts)


def insertion_auc(model, images, maps, targets=None, steps: int = 20, baseline="blur", *,
                  batch_size: int = 64) -> Insertion:
    """Insertion curve and its area, per image: the complement of :func:`deletion_auc`.

    The start image is the baseline (default ``"blur"``: the image blurred by a Gaussian of
    ``BLUR_SIGMA`` = 5 pixels, radius 15, edges replicated). Step ``k = 0..steps`` puts the top
    ``ceil(k * H * W / steps)`` pixels of the map back to their original values (the deletion
    counts); step 0 is the fully blurred image, step ``steps`` the image itself (through float32).
    ``AUC = sum_k (q_k + q_{k+1}) / (2 steps)`` of the target's probability :math:`q_k`; higher is
    better. Built by the C core's masking kernel with the image and the baseline swapped.
    Costs ``steps + 1`` forwards of the batch, chunked.

    >>> import torch; from finercam.metrics import insertion_auc
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    >>> r = insertion_auc(model, torch.randn(2, 1, 2, 2), torch.rand(2, 2, 2), steps=4, baseline=0.0)
    >>> r.auc.shape, r.curve.shape
    ((2,), (2, 5))
    """
    steps = check_int(steps, "steps")
    images, m, t, _, bs, _ = _prepare(model, images, maps, targets, None, batch_size, need_compare=False)
    n, _, h, w = images.shape
    counts = deletion_counts(steps, h * w)
    p = _masked_probs(model, images, m, counts, baseline, bs, None, insert=True)
    x = np.arange(steps + 1, dtype=np.float64) / steps
    curve = p[np.arange(n), :, t]
    return Insertion(kernels.trapezoid(curve, x), curve, x, counts)


def evaluate_maps(model, images, maps, targets, compare_to=None, *,
                  fractions: Sequence[float] = (0.05, 0.1), steps: int | None = 20,
                  baseline=0.0, masks=None, batch_size: int = 64) -> dict[str, np.ndarray]:
    """Every per-image metric of Table 1 from one set of masked forwards.

    Counts shared by the fractions and the deletion steps are forwarded once (with 20 steps,
    RD@0.05 and RD@0.1 reuse steps 1 and 2). Keys: ``rd@f`` and ``drop@f`` per fraction,
    ``deletion`` and ``deletion_ref`` (when ``steps``), ``energy`` and ``pointing`` (when
    ``masks``), plus ``target`` and ``compare_to``. Values are (N,) arrays.

    With the model and map of :func:`confidence_drop`'s example, one call gives both drops and
    the deletion AUCs of the target and of the compared class (here they sum to 1: two classes):

    >>> import numpy as np, torch
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    >>> with torch.no_grad():
    ...     _ = net[1].weight.copy_(torch.tensor([[1.0, 1, 1, 1], [0, 0, 0, 0]])); _ = net[1].bias.zero_()
    >>> m = np.array([[[0.1, 0.9], [0.2, 0.0]]], np.float32)
    >>> r = evaluate_maps(net, torch.ones(1, 1, 2, 2), m, [0], fractions=(0.25,), steps=4)
    >>> {k: round(float(v[0]), 4) for k, v in r.items()}
    {'target': 0.0, 'compare_to': 1.0, 'rd@0.25': 0.0589, 'drop@0.25': 0.0294, 'deletion': 0.8264, 'deletion_ref': 0.1736}
    """
    fracs = [check_fraction(f, "fractions") for f in fractions]
    steps = None if steps is None else check_int(steps, "steps")
    images, m, t, d, bs, p0 = _prepare(model, images, maps, targets, compare_to, batch_size)
    n, _, h, w = images.shape
    frac_counts = [top_count(f, h * w) for f in fracs]
    del_counts = deletion_counts(steps, h * w) if steps else np.zeros(0, np.int64)
    counts = np.concatenate([[0], frac_counts, del_counts]).astype(np.int64)
    p = _masked_probs(model, images, m, counts, baseline, bs, p0)
    rows = np.arange(n)
    out: dict[str, np.ndarray] = {"target": t, "compare_to": d}
    for j, f in enumerate(fracs, start=1):
        drop_c = p[rows, 0, t] - p[rows, j, t]
        out[f"rd@{f:g}"] = drop_c - (p[rows, 0, d] - p[rows, j, d])
        out[f"drop@{f:g}"] = drop_c
    if steps:
        x = np.arange(steps + 1, dtype=np.float64) / steps
        first = 1 + len(fracs)
        out["deletion"] = kernels.trapezoid(p[rows, first:, t], x)
        out["deletion_ref"] = kernels.trapezoid(p[rows, first:, d], x)
    if masks is not None:
        k = _check_masks(masks, m.shape)
        out["energy"] = energy_in_mask(m, k)
        out["pointing"] = kernels.pointing_hit(m, k)
    return out
