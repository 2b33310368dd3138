"""The masking machinery shared by the perturbation metrics: validation at the door, the pixel
counts, the baselines, and the masked forwards (:func:`masked_probs`) built by the C core.

See the package docstring (:mod:`finercam.metrics`) for the rules.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from .. import kernels
from .._checks import check_fraction, check_images, check_int
from ..capture import extract_logits
from ..references import rank_classes

BLUR_SIGMA = 5.0
#: Masked copies are built in groups of images whose buffer stays under this many bytes
#: (read through the package, ``finercam.metrics.BUFFER_BYTES``, so that it can be lowered).
BUFFER_BYTES = 256 * 2**20


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


def _buffer_bytes() -> int:
    """``finercam.metrics.BUFFER_BYTES``, read through the package so that tests can lower it."""
    from finercam import metrics
    return int(metrics.BUFFER_BYTES)


def forward_built(model, images: torch.Tensor, n_variants: int, build, batch_size: int) -> np.ndarray:
    """(N, S, classes) softmax probabilities of S perturbed copies of every image.

    ``build(i0, i1, out)`` writes the ``(i1 - i0) * S`` copies of images ``i0:i1`` (image-major,
    row ``(i - i0) * S + s``) into the float32 buffer ``out``; images are taken in groups whose
    copies fit ``BUFFER_BYTES`` and forwarded in chunks of ``batch_size`` rows.
    """
    n, c, h, w = images.shape
    per_image = n_variants * c * h * w * 4
    group = int(max(1, min(n, _buffer_bytes() // max(per_image, 1))))
    buffer = np.empty((group * n_variants, c, h, w), dtype=np.float32)
    rows = []
    with torch.no_grad():
        for i0 in range(0, n, group):
            i1 = min(n, i0 + group)
            out = buffer[: (i1 - i0) * n_variants]
            build(i0, i1, out)
            for j in range(0, out.shape[0], batch_size):
                x = torch.from_numpy(out[j:j + batch_size]).to(images.device, images.dtype)
                rows.append(_probs(model, x))
    return np.concatenate(rows).reshape(n, n_variants, -1)


def host_images(images: torch.Tensor) -> np.ndarray:
    """The (N, C, H, W) images as a C-contiguous float32 host array."""
    return np.ascontiguousarray(images.detach().cpu().float().numpy())


def _masked_probs(model, images: torch.Tensor, maps: np.ndarray, counts: np.ndarray,
                  baseline, batch_size: int, probs0: np.ndarray | None, *,
                  insert: bool = False) -> np.ndarray:
    """(N, S, classes) softmax probabilities after masking the top ``counts[s]`` pixels.

    Deletion (``insert=False``): the top pixels of the image are replaced by the baseline; count
    0 is the unmasked image itself, ``probs0`` (forwarded as given, not through float32).
    Insertion (``insert=True``): the start image is the baseline and the top pixels of the image
    are put back into it (the same C kernel with the two swapped); every count is forwarded.
    Equal counts are forwarded once.
    """
    unique, inverse = np.unique(counts, return_inverse=True)
    shortcut = not insert and probs0 is not None
    forwarded = unique[unique > 0] if shortcut else unique
    parts: dict[int, np.ndarray] = {}
    if shortcut:
        parts[0] = probs0  # type: ignore[assignment]
    if forwarded.size:
        host = host_images(images)
        base = baseline_values(baseline, host)
        start, fill = (base, host) if insert else (host, base)

        def build(i0: int, i1: int, out: np.ndarray) -> None:
            kernels.mask_top(start[i0:i1], maps[i0:i1], fill[i0:i1], forwarded, out=out)

        p = forward_built(model, images, forwarded.size, build, batch_size)
        for j, k in enumerate(forwarded):
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
