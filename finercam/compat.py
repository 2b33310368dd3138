"""pytorch-grad-cam's Finer-CAM objective, behind ``objective="pgc"``, for users who need their old numbers.

pytorch-grad-cam (``grad-cam`` 1.5.7, ``FinerWeightedTarget``) explains, per sample,

    L = sum_i p_i (y_m - alpha y_i) / (sum_i p_i + 1e-9),   p = softmax(y) over all C classes,

with the softmax *not* detached, main class ``m = order[0]`` and references ``order[1..T]`` of
``order = argsort(|y - y_target|)``. Its gradient is ``sum_j (dL/dy_j) dy_j/dA``: one
vector-Jacobian product with ``v = dL/dy``, which we compute on the detached logits. When
``sum_i p_i`` falls below about 2e-8 the ``1e-9`` dominates and the map flips sign; we warn below
1e-7.

``FinerCAM(..., objective="pgc")`` reproduces ``pytorch_grad_cam.FinerCAM(model, layers,
base_method=B)(x, alpha=gamma)`` (B: GradCAM, LayerCAM, GradCAMPlusPlus, XGradCAM, HiResCAM), the
maps within 1e-5 (tests/engine/test_finer_pgc.py, against the installed package). The pipeline:

1. the classes above, T = ``num_references`` (pgc: ``comparison_categories=[1..T]``; capped at
   C - 1, with a UserWarning here); the target is the top class or ``targets=`` (pgc:
   ``target_idx``);
2. ``g = dL/dA`` at every target layer, from ``v`` above;
3. per layer: the base method's map of ``(A, g)``, ReLU, min-max at the grid
   ``(u - min u) / (max u - min u + 1e-7)``, bilinear resize to the input (half-pixel, as
   ``cv2.resize``);
4. the mean over the layers, then that min-max (eps 1e-7) again, for one layer too, as pgc's
   ``aggregate_multi_layers`` ends with ``scale_cam_image``: after the resize a peak between grid
   cells no longer reaches 1, so this step changes the map.

>>> import torch
>>> v, s = pgc_direction(torch.tensor([[3.0, 1.0, 0.0]]), torch.tensor([0]), torch.tensor([[1, 2]]), 1.0)
>>> v.shape, bool(s[0] > 0.1)
(torch.Size([1, 3]), True)
"""
from __future__ import annotations

import warnings

import torch

__all__ = ["pgc_direction", "warn_if_flipped"]

FLIP_WARNING_BELOW = 1e-7


def pgc_direction(logits: torch.Tensor, main: torch.Tensor, refs: torch.Tensor,
                  alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(dL/dy (N, C), sum_i p_i (N,))`` for the pgc objective, in float32 as pgc computes it.

    :math:`L = \\sum_{i} p_i (y^m - \\alpha y^i) / (\\sum_{i} p_i + 10^{-9})` over the references
    ``i = refs[n]``, :math:`p = \\operatorname{softmax}(y)` over all classes and differentiated too;
    the returned direction is :math:`v_j = \\partial L / \\partial y^j`, so the map's gradient is
    :math:`\\sum_j v_j\\, \\partial y^j / \\partial A`. With equal weights held fixed, L would be the
    paper's :math:`y^m - \\alpha\\, \\mathrm{mean}_i\\, y^i`; pgc weights the references by their
    probabilities and differentiates through them. The example checks :math:`v` against autograd
    of the formula:

    >>> y = torch.tensor([[2.0, 1.0, 0.5, -1.0]])
    >>> v, s = pgc_direction(y, torch.tensor([0]), torch.tensor([[1, 2]]), 0.6)
    >>> yy = y.clone().requires_grad_()
    >>> p = torch.softmax(yy, -1)[0, [1, 2]]
    >>> L = (p * (yy[0, 0] - 0.6 * yy[0, [1, 2]])).sum() / (p.sum() + 1e-9)
    >>> L.backward()
    >>> bool(torch.allclose(v, yy.grad)), bool(torch.isclose(s[0], p.sum().detach()))
    (True, True)
    """
    with torch.enable_grad():
        y = logits.detach().float().clone().requires_grad_()
        p = torch.softmax(y, dim=-1)
        w = p.gather(1, refs)
        num = (w * (y.gather(1, main[:, None]) - alpha * y.gather(1, refs))).sum(dim=1)
        den = w.sum(dim=1)
        loss = (num / (den + 1e-9)).sum()
        (v,) = torch.autograd.grad(loss, y)
    return v.detach(), den.detach()


def warn_if_flipped(ref_prob_sum: torch.Tensor) -> None:
    """A RuntimeWarning naming the samples whose summed reference probability is below 1e-7,
    :math:`\\sum_i p_i < 10^{-7}` (there the ``1e-9`` of the pgc objective is no longer small).

    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     warn_if_flipped(torch.tensor([0.3, 1e-9]))
    >>> "samples [1]" in str(w[0].message)
    True
    """
    low = (ref_prob_sum < FLIP_WARNING_BELOW).nonzero().flatten().tolist()
    if low:
        warnings.warn(f"objective='pgc': the summed reference probability is below {FLIP_WARNING_BELOW:g} "
                      f"for samples {low}; there pytorch-grad-cam's +1e-9 dominates and its map flips "
                      "sign (use objective='paper' for the paper's map)", RuntimeWarning, stacklevel=3)
