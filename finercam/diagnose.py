"""Why did the comparison change this map so much, or so little? One answer per image.

Finer-CAM subtracts ``gamma`` times the references' map from the target's (Eq. 7-8, for Grad-CAM
exactly: the weights are linear in the logits). How much the final map moves therefore depends on
a few numbers that :func:`diagnose` reports per image:

* ``map_correlation``: the Pearson correlation of the Finer map with the base map (``maps`` of
  the Explanation against ``baseline().maps``); 1 means the comparison changed nothing visible.
* ``reference_mass``: the references' own map relative to the target's,
  :math:`\\sum_{ij} \\mathrm{ReLU}(\\frac1T\\sum_t L^t_{ij}) / \\sum_{ij} \\mathrm{ReLU}(L^c_{ij})` at the
  first target layer's grid (``L^s = sum_k alpha^s_k A_k``, the raw maps with gamma = 0). Finer
  removes about ``gamma * reference_mass`` of the target's mass; when that is small, or the two
  maps have the same shape, the map barely changes.
* ``weight_cosine``: the cosine similarity of the target's and each reference's classifier
  weights, when the linear head is known (the paper's Fig. 1: similar classes, similar weights,
  similar maps to cancel).
* ``logit_gap``: :math:`y_c - y_t` per reference: a reference far below the target is a weak
  competitor, and its gradient map is typically a weak echo of the target's.

>>> import torch, finercam
>>> from torch import nn
>>> g = torch.Generator().manual_seed(0)
>>> conv, head = nn.Conv2d(3, 8, 3, padding=1), nn.Linear(8, 5)
>>> net = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)
>>> exp = finercam.FinerCAM(net, conv)(torch.rand(2, 3, 16, 16, generator=g))
>>> d = diagnose(exp, classifier=head.weight)
>>> isinstance(d, Diagnosis), d.map_correlation.shape, d.weight_cosine.shape, d.logit_gap.shape
(True, (2,), (2, 3), (2, 3))
>>> bool(np.all(d.logit_gap >= 0))     # nearest-logit references sit below the predicted class
True
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Diagnosis", "diagnose", "energy_moved", "map_correlation"]


def _flat_pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    """Two stacks of maps of one shape (N, H, W) as float64 rows (N, H * W)."""
    x = np.asarray(a, np.float64)
    y = np.asarray(b, np.float64)
    if x.shape != y.shape or x.ndim < 2:
        raise ValueError(f"a and b must be stacks of maps of one shape, got {x.shape} and {y.shape}")
    return x.reshape(len(x), -1), y.reshape(len(y), -1)


def map_correlation(a, b) -> np.ndarray:
    """Per-image Pearson correlation (N,) of two stacks of maps (N, H, W); NaN where either map
    is constant (an all-zero map has no shape to compare).

    >>> a = np.arange(8.0).reshape(2, 2, 2)
    >>> map_correlation(a, 2 * a + 1).tolist(), map_correlation(a, -a).tolist()
    ([1.0, 1.0], [-1.0, -1.0])
    """
    x, y = _flat_pair(a, b)
    x = x - x.mean(1, keepdims=True)
    y = y - y.mean(1, keepdims=True)
    den = np.sqrt((x * x).sum(1) * (y * y).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (x * y).sum(1) / np.where(den > 0, den, 1.0), np.nan)


def energy_moved(a, b) -> np.ndarray:
    """Per-image share of a map's energy that sits elsewhere in the other map (N,), in [0, 1].

    :math:`\\frac12 \\sum_{ij} |p_{ij} - q_{ij}|` with :math:`p = a / \\sum a` and
    :math:`q = b / \\sum b` (the total variation distance of the two maps read as distributions):
    0 for the same shape at any scale, 1 for disjoint support. NaN where either map sums to 0 or
    less (a map with no energy has nowhere to move it from). Maps are ReLU'd CAMs, >= 0.

    >>> a = np.array([[[1.0, 0.0], [0.0, 0.0]]]); b = np.array([[[0.5, 0.5], [0.0, 0.0]]])
    >>> energy_moved(a, b).tolist(), energy_moved(a, 3 * a).tolist(), energy_moved(a, 0 * a).tolist()
    ([0.5], [0.0], [nan])
    """
    x, y = _flat_pair(a, b)
    sx, sy = x.sum(1, keepdims=True), y.sum(1, keepdims=True)
    ok = (sx[:, 0] > 0) & (sy[:, 0] > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        moved = 0.5 * np.abs(x / np.where(sx > 0, sx, 1.0) - y / np.where(sy > 0, sy, 1.0)).sum(1)
    return np.where(ok, moved, np.nan)


@dataclass(frozen=True)
class Diagnosis:
    """Per-image reasons for how much Finer-CAM changed each map (see :func:`diagnose`).

    ``map_correlation`` (N,), ``reference_mass`` (N,), ``per_reference_mass`` (N, T) (NaN when
    the Explanation stores the references' mean gradient only, the two-pass default of FinerCAM:
    pass ``candidates=`` for it), ``weight_cosine`` (N, T) (NaN without a classifier), ``logit_gap`` (N, T), ``targets`` (N,),
    ``references`` (N, T), ``gamma``.
    """

    targets: np.ndarray
    references: np.ndarray
    gamma: float
    map_correlation: np.ndarray
    reference_mass: np.ndarray
    per_reference_mass: np.ndarray
    weight_cosine: np.ndarray
    logit_gap: np.ndarray

    def summary(self, i: int, class_names=None) -> str:
        """One line for image ``i``: how much the map changed and the numbers that say why.

        >>> d = Diagnosis(np.array([2]), np.array([[0, 1]]), 0.6, np.array([0.97]), np.array([0.4]),
        ...               np.array([[0.5, 0.3]]), np.array([[0.2, 0.1]]), np.array([[3.0, 5.0]]))
        >>> d.summary(0)
        'class 2 vs class 0, class 1: correlation with the base map 0.97 (little change); gamma 0.6 x reference mass 0.40 = 0.24 of the target map removed; weight cosine 0.20, 0.10; logit gap 3.00, 5.00'
        """
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < len(self.targets):
            raise ValueError(f"i must be an image index in [0, {len(self.targets)}), got {i!r}")

        def name(c):
            return str(class_names[int(c)]) if class_names is not None else f"class {int(c)}"

        r = self.map_correlation[i]
        verdict = ("no visible map" if not np.isfinite(r) else "little change" if r >= 0.95
                   else "moderate change" if r >= 0.8 else "large change")
        cosines = self.weight_cosine[i]
        cos = ("" if not np.isfinite(cosines).any() else "; weight cosine " + ", ".join(
            "n/a" if not np.isfinite(v) else f"{v:.2f}" for v in cosines))
        gap = ", ".join(f"{v:.2f}" for v in self.logit_gap[i])
        return (f"{name(self.targets[i])} vs {', '.join(name(c) for c in self.references[i])}: correlation "
                f"with the base map {r:.2f} ({verdict}); gamma {self.gamma:g} x reference mass "
                f"{self.reference_mass[i]:.2f} = {self.gamma * self.reference_mass[i]:.2f} of the target "
                f"map removed{cos}; logit gap {gap}")


def _mass(raw: np.ndarray) -> np.ndarray:
    return np.maximum(raw, 0.0).reshape(len(raw), -1).sum(1, dtype=np.float64)


def _weight_cosine(classifier, targets: np.ndarray, references: np.ndarray) -> np.ndarray:
    if classifier is None:
        return np.full(references.shape, np.nan)
    w = classifier.weight if hasattr(classifier, "weight") else classifier
    if isinstance(w, (str, bytes)) or not hasattr(w, "__array__") and not hasattr(w, "detach"):
        raise TypeError(f"classifier must be an nn.Linear or a (num_classes, D) weight matrix, "
                        f"got {type(classifier).__name__}")
    w = w.detach().cpu().numpy() if hasattr(w, "detach") else np.asarray(w)
    w = np.asarray(w, np.float64)
    if w.ndim == 2 and not np.isfinite(w).all():
        raise ValueError("classifier weights must be finite (NaN or inf found)")
    if w.ndim != 2 or w.shape[0] <= int(max(targets.max(), references.max())):
        raise ValueError(f"classifier must be an nn.Linear or a (num_classes, D) weight matrix, got shape {w.shape}")
    unit = w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)
    return np.einsum("nd,ntd->nt", unit[targets], unit[references])


def diagnose(explanation, classifier=None) -> Diagnosis:
    """How much the comparison changed each map of ``explanation``, and why (module doc).

    ``classifier``: the model's final ``nn.Linear`` or its weight matrix (num_classes, D), for
    ``weight_cosine``; None leaves it NaN. Masses use the raw maps of the first target layer, each
    with the ``"mean"`` aggregation; no model call (everything is a recombination).
    """
    from .explanation import Explanation

    if not isinstance(explanation, Explanation):
        raise TypeError(f"explanation must be a finercam.Explanation, got {type(explanation).__name__}")
    exp = explanation
    if exp.objective != "paper":
        raise ValueError("diagnose needs objective='paper' (it recombines the stored weights)")
    targets, refs = exp.targets, exp.references
    base = exp.baseline()
    target_mass = _mass(base.raw_maps)
    own = exp.recombine(gamma=0.0, aggregate="mean", reverse=True)   # ReLU(mean_t L^t)
    with np.errstate(invalid="ignore", divide="ignore"):
        ref_mass = _mass(own.raw_maps) / target_mass
        if exp.mean_references is not None:   # the two-pass default: no reference's own gradient
            per_ref = np.full(refs.shape, np.nan)
        else:
            per_ref = np.stack([_mass(exp.recombine(gamma=0.0, references=refs[:, t:t + 1], aggregate="mean",
                                                    reverse=True).raw_maps) / target_mass
                                for t in range(refs.shape[1])], axis=1)
    rows = np.arange(len(targets))[:, None]
    gap = (exp.logits[rows[:, 0], targets][:, None] - exp.logits[rows, refs]).astype(np.float64)
    return Diagnosis(targets=targets, references=refs, gamma=exp.gamma,
                     map_correlation=map_correlation(exp.maps, base.maps), reference_mass=ref_mass,
                     per_reference_mass=per_ref, weight_cosine=_weight_cosine(classifier, targets, refs),
                     logit_gap=gap)
