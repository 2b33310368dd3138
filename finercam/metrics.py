"""The paper's evaluation metrics: relative confidence drop, deletion, energy pointing game.

All masking follows one rule. The pixels of a map are ranked by decreasing value, ties to the
lower flat index (row-major); "masking the top k pixels" replaces those k pixels, in every channel
of the model's input as given (normalised or not), by the baseline:

* a number (default ``0.0``): that constant;
* ``"mean"``: the image's own mean of each channel;
* ``"blur"``: the image blurred by a Gaussian of ``BLUR_SIGMA`` pixels (edges replicated);
* an array or tensor broadcastable to the images.

Probabilities are ``softmax`` of the model's logits, computed in float64; the logits are read from
the model's output as FinerCAM reads them (:func:`finercam.capture.extract_logits`). The ranking and the
construction of every masked copy happen in the C core (:func:`finercam.kernels.mask_top`): all
fractions or steps of a group of images are written in one call into one preallocated buffer,
which is then forwarded in chunks of ``batch_size`` rows. Masked inputs go through float32.

Definitions (exact; see ``docs/metrics.md``):

* ``count(f) = ceil(f * H * W)``, the product first rounded to 6 decimals so that ``0.1 * 100`` is
  10 and not 11, and at least 1;
* relative drop (Eq. 10): ``RD = (p_c - p*_c) - (p_d - p*_d)``;
* confidence drop (Fig. 6b bars): ``p_c - p*_c``;
* deletion: step ``k = 0..steps`` masks ``ceil(k * H * W / steps)`` pixels (integer arithmetic);
  AUC = trapezoid of ``p_c`` over the deleted fraction ``k / steps`` in [0, 1];
* energy in mask ("Loc."): ``sum(map inside) / sum(map)``, NaN for an all-zero map;
* pointing game: the map's top-ranked pixel lies in the mask.

The model is used as given: no mode change, no hooks, forwards under ``torch.no_grad()``. Put it
in ``eval()`` mode first if it has dropout or batch norm.
"""
from __future__ import annotations

import math
import numbers
from typing import NamedTuple, Sequence

import numpy as np
import torch

from . import kernels
from ._checks import check_fraction, check_images, check_int, check_size
from .capture import extract_logits
from .references import rank_classes

__all__ = [
    "relative_drop", "confidence_drop", "deletion_auc", "energy_in_mask", "pointing_game",
    "boxes_to_masks", "nearest_logit_class", "evaluate_maps", "Deletion", "top_count",
    "baseline_values", "BLUR_SIGMA",
]

BLUR_SIGMA = 5.0
#: Masked copies are built in groups of images whose buffer stays under this many bytes.
BUFFER_BYTES = 256 * 2**20


class Deletion(NamedTuple):
    """Result of :func:`deletion_auc`; curves are (N, steps + 1) probabilities.

    The area is the trapezoid rule over the deleted fraction,
    :math:`\\mathrm{AUC} = \\sum_k (q_k + q_{k+1}) / (2\\,\\mathrm{steps})`.

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


# --- validation at the door ------------------------------------------------------------------


def _array(x, name: str) -> np.ndarray:
    """A NumPy array, from an array, a tensor (:func:`finercam.kernels.as_numpy`), a list or a tuple."""
    x = kernels.as_numpy(x)
    if isinstance(x, (np.ndarray, list, tuple)):
        return np.asarray(x)
    raise TypeError(f"{name} must be a NumPy array or a torch.Tensor, got {type(x).__name__}")


def _check_maps(maps, shape: tuple[int, int, int] | None = None) -> np.ndarray:
    """(N, H, W) float32, also from (N, 1, H, W); finite; matching ``shape`` when given."""
    m = _array(maps, "maps")
    if m.dtype == np.bool_ or not np.issubdtype(m.dtype, np.number):
        raise TypeError(f"maps must hold numbers, got dtype {m.dtype}")
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.ndim != 3:
        raise ValueError(f"maps must be (N, H, W), got shape {m.shape}")
    if shape is not None and m.shape != shape:
        raise ValueError(f"maps must have shape {shape} to match images, got {m.shape}")
    m = np.ascontiguousarray(m, dtype=np.float32)
    if not np.isfinite(m).all():
        raise ValueError("maps hold NaN or inf: a broken map has no ranking")
    return m


def _check_classes(x, n: int, num_classes: int, name: str) -> np.ndarray:
    if isinstance(x, (numbers.Integral, np.integer)) and not isinstance(x, (bool, np.bool_)):
        x = [int(x)] * n
    a = _array(x, name)
    if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class indices, got dtype {a.dtype}")
    a = a.reshape(-1).astype(np.int64)
    if a.shape[0] != n:
        raise ValueError(f"{name} must have one class per image ({n}), got {a.shape[0]}")
    if a.size and (a.min() < 0 or a.max() >= num_classes):
        raise ValueError(f"{name} must lie in [0, {num_classes}), got {a.min()}..{a.max()}")
    return a


def top_count(fraction: float, n_pix: int) -> int:
    """``ceil(fraction * n_pix)``, the product rounded to 6 decimals first, at least 1:
    :math:`\\max(1, \\lceil \\mathrm{round}_6(f \\cdot HW) \\rceil)`.

    >>> top_count(0.1, 100), top_count(0.05, 224 * 224)
    (10, 2509)
    """
    return max(1, math.ceil(round(check_fraction(fraction) * n_pix, 6)))


def deletion_counts(steps: int, n_pix: int) -> np.ndarray:
    r"""How many pixels the deletion curve has removed at each of its ``steps + 1`` points:
    :math:`\lceil k \, P / s \rceil` for :math:`k = 0 \ldots s` (``P = n_pix``, ``s = steps``),
    exact in integers. The runner reads it to count the distinct masked images a map costs.

    >>> deletion_counts(4, 10).tolist()
    [0, 3, 5, 8, 10]
    """
    k = np.arange(steps + 1, dtype=np.int64)
    return -((-k * n_pix) // steps)  # exact ceil(k * n_pix / steps)


# --- baselines ---------------------------------------------------------------------------------


def _gaussian_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur over the last two axes, edges replicated, radius ceil(3 sigma)."""
    radius = max(1, int(math.ceil(3.0 * sigma)))
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    k /= k.sum()
    out = x.astype(np.float64)
    for axis in (-2, -1):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (radius, radius)
        p = np.pad(out, pad, mode="edge")
        n = out.shape[axis]
        acc = np.zeros_like(out)
        for j, kj in enumerate(k):
            acc += kj * np.take(p, np.arange(j, j + n), axis=axis)
        out = acc
    return out.astype(np.float32)


def baseline_values(baseline, host: np.ndarray) -> np.ndarray:
    """The (N, C, H, W) float32 replacement values of ``baseline`` (a number, ``"mean"``,
    ``"blur"`` or an array, see the module doc) for the (N, C, H, W) ``host`` images.

    >>> host = np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2)
    >>> baseline_values("mean", host)[0, 0].tolist(), baseline_values(0.5, host).shape
    ([[1.5, 1.5], [1.5, 1.5]], (1, 1, 2, 2))
    """
    if isinstance(baseline, str):
        if baseline == "mean":
            return np.ascontiguousarray(
                np.broadcast_to(host.mean(axis=(2, 3), keepdims=True, dtype=np.float64)
                                .astype(np.float32), host.shape))
        if baseline == "blur":
            return _gaussian_blur(host, BLUR_SIGMA)
        raise ValueError(f'baseline must be a number, "mean", "blur" or an array, got {baseline!r}')
    if isinstance(baseline, (bool, np.bool_)):
        raise TypeError("baseline must be a number, a string or an array, got bool")
    if isinstance(baseline, numbers.Real):
        if not math.isfinite(float(baseline)):
            raise ValueError(f"baseline must be finite, got {baseline!r}")
        return np.full(host.shape, float(baseline), dtype=np.float32)
    b = _array(baseline, "baseline").astype(np.float32)
    try:
        return np.ascontiguousarray(np.broadcast_to(b, host.shape))
    except ValueError:
        raise ValueError(f"baseline of shape {b.shape} does not broadcast to the images "
                         f"{host.shape}") from None


# --- the model ---------------------------------------------------------------------------------


def _probs(model, x: torch.Tensor) -> np.ndarray:
    logits = extract_logits(model(x), x.shape[0])
    return torch.softmax(logits.detach().double(), dim=1).cpu().numpy()


def nearest_logit_class(logits, targets) -> np.ndarray:
    """Per row, the class whose logit is nearest the target's, the target excluded, ties to the
    lower class index: the "most similar class" (the first nearest-logit reference),
    :math:`d = \\arg\\min_{j \\ne c} |y^j - y^c|`.

    >>> nearest_logit_class(np.array([[3.0, 1.0, 2.5, 2.5]]), [0]).tolist()
    [2]
    """
    y = _array(logits, "logits").astype(np.float64)
    if y.ndim != 2 or y.shape[1] < 2:
        raise ValueError(f"logits must be (N, classes) with at least 2 classes, got {y.shape}")
    t = _check_classes(targets, y.shape[0], y.shape[1], "targets")
    return rank_classes(y, t, "nearest_logit")[:, 0].astype(np.int64)


def _masked_probs(model, images: torch.Tensor, maps: np.ndarray, counts: np.ndarray,
                  baseline, batch_size: int, probs0: np.ndarray) -> np.ndarray:
    """(N, S, classes) softmax probabilities after masking the top ``counts[s]`` pixels.

    Count 0 is the unmasked image itself, ``probs0`` (forwarded as given, not through float32).
    Equal counts are forwarded once.
    """
    n, c, h, w = images.shape
    unique, inverse = np.unique(counts, return_inverse=True)
    masked_counts = unique[unique > 0]
    parts: dict[int, np.ndarray] = {}
    with torch.no_grad():
        parts[0] = probs0
        if masked_counts.size:
            host = np.ascontiguousarray(images.detach().cpu().float().numpy())
            base = baseline_values(baseline, host)
            s = masked_counts.size
            per_image = s * c * h * w * 4
            group = int(max(1, min(n, BUFFER_BYTES // max(per_image, 1))))
            buffer = np.empty((group * s, c, h, w), dtype=np.float32)
            rows = []
            for i0 in range(0, n, group):
                i1 = min(n, i0 + group)
                out = buffer[: (i1 - i0) * s]
                kernels.mask_top(host[i0:i1], maps[i0:i1], base[i0:i1], masked_counts, out=out)
                for j in range(0, out.shape[0], batch_size):
                    x = torch.from_numpy(out[j:j + batch_size]).to(images.device, images.dtype)
                    rows.append(_probs(model, x))
            p = np.concatenate(rows).reshape(n, s, -1)
            for j, k in enumerate(masked_counts):
                parts[int(k)] = p[:, j]
    return np.stack([parts[int(k)] for k in unique], axis=1)[:, inverse]


def _prepare(model, images, maps, targets, compare_to, batch_size, need_compare=True):
    """Validated (images, maps, targets, compare_to, batch_size, unmasked probabilities)."""
    if not callable(model):
        raise TypeError(f"model must be callable, got {type(model).__name__}")
    images = check_images(images)
    n, _, h, w = images.shape
    m = _check_maps(maps, (n, h, w))
    batch_size = check_int(batch_size, "batch_size")
    with torch.no_grad():
        logits = torch.cat([extract_logits(model(x), x.shape[0]).detach().double().cpu()
                            for x in images.split(batch_size)])
    k = logits.shape[1]
    t = logits.argmax(1).numpy() if targets is None else _check_classes(targets, n, k, "targets")
    d = None
    if need_compare:
        if compare_to is None:
            d = nearest_logit_class(logits.numpy(), t)
        else:
            d = _check_classes(compare_to, n, k, "compare_to")
            if (d == t).any():
                raise ValueError("compare_to must differ from the target class in every row, "
                                 f"equal at rows {np.nonzero(d == t)[0].tolist()}")
    return images, m, t, d, batch_size, torch.softmax(logits, dim=1).numpy()


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


def pointing_game(maps, masks) -> np.ndarray:
    """Pointing game: whether each map's top-ranked pixel (its first maximum in row-major order,
    the ranking of the masking) lies in the mask or box, :math:`[\\arg\\max_x L(x) \\in B]`.
    Returns (N,) bool.

    >>> import numpy as np
    >>> m = np.array([[[0.1, 0.9], [0.2, 0.0]]], np.float32)        # the peak is pixel (0, 1)
    >>> pointing_game(m, [[1, 0, 2, 1]]).tolist(), pointing_game(m, [[0, 1, 2, 2]]).tolist()
    ([True], [False])
    """
    m = _check_maps(maps)
    return kernels.pointing_hit(m, _check_masks(masks, m.shape))


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
