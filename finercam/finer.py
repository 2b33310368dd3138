"""FinerCAM: capture -> per-class weights -> Explanation, on any PyTorch classifier.

Finer-CAM (CVPR 2025, Sec. 3.2) explains ``y_c - gamma * mean_t y_t``: the target logit against
T similar reference classes, so that the features the classes share cancel and the details that
tell them apart remain. Channel weights (Eq. 5-7) are linear in the logits:
``alpha^{c,t}_k = alpha^c_k - gamma alpha^t_k``, so one pass that stores the weights of the target
and of a few candidate references serves every gamma, reference subset and aggregation.

Cost: one forward pass (autograd off before the target layer), then one backward per stored
class over the part of the network after the target layer (for ``layer4`` of a ResNet: pooling
and the classifier). Score-CAM adds K masked forwards per image (Eq. 9), in chunks.

Stored classes (``candidates``): the target, the references, then the next classes of the
reference rule's ranking, ``max(num_references, 10)`` non-target classes in all (all classes when
C <= 11); ``candidates=`` changes that number. Recombining with a class outside that set is a
``ValueError``.
"""
from __future__ import annotations

import traceback
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from . import kernels
from ._checks import check_images, check_int
from .capture import directional_gradients, extract_logits, model_state, tapped_forward
from .compat import pgc_direction, warn_if_flipped
from .explanation import Explanation, _Store, check_aggregate, check_gamma
from .layers import find_classifier, grid_transform, resolve_layers
from .methods import GRADIENT_METHODS, METHODS, class_statistic
from .references import RULES, check_references, pgc_ranks, rank_classes

__all__ = ["FinerCAM", "OBJECTIVES"]

OBJECTIVES = ("paper", "pgc")
DEFAULT_CANDIDATES = 10


def _host_float32(t: torch.Tensor) -> np.ndarray:
    """A tensor's values as a C-contiguous float32 NumPy array on the host (detached)."""
    return np.ascontiguousarray(t.detach().float().cpu().numpy())


def _check_choices(method: str, objective: str, reference_rule: str) -> None:
    """The named choices of FinerCAM, and the one combination they exclude (pgc needs gradients)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if objective == "pgc" and method not in GRADIENT_METHODS:
        raise ValueError(f"objective='pgc' supports the gradient methods {GRADIENT_METHODS}, not {method!r}")
    if reference_rule not in RULES:
        raise ValueError(f"reference_rule must be one of {RULES}, got {reference_rule!r}")


def _check_budget(score_budget_mb) -> float:
    """Score-CAM's chunk budget in MiB: a finite number > 0."""
    if isinstance(score_budget_mb, (bool, np.bool_)) or not isinstance(score_budget_mb, (int, float)):
        raise TypeError(f"score_budget_mb must be a number, got {type(score_budget_mb).__name__}")
    if not np.isfinite(score_budget_mb) or score_budget_mb <= 0:
        raise ValueError(f"score_budget_mb must be > 0, got {score_budget_mb}")
    return float(score_budget_mb)


def _unwrap(model: nn.Module, target_layer):
    """``(network, target_layer)``: the module inside a DataParallel / DistributedDataParallel
    wrapper (the explanation runs on it, on one device), and a dotted name relative to it."""
    if not isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        return model, target_layer
    if isinstance(target_layer, str) and target_layer.startswith("module."):
        target_layer = target_layer[len("module."):]
    return model.module, target_layer


@dataclass
class _Forward:
    """One tapped forward pass. ``logits`` and ``taps`` hold the autograd graph after the target
    layers; :meth:`release_graph` drops them once the statistics are computed."""

    images: torch.Tensor
    size: tuple[int, int]
    logits: torch.Tensor
    taps: list[torch.Tensor]
    logits_host: np.ndarray                                   # (N, C) float32
    transforms: list[Callable] = field(default_factory=list)  # per layer: tap -> (N, K, h, w)
    acts: list[np.ndarray] = field(default_factory=list)      # per layer (N, K, h, w) float32

    def release_graph(self) -> None:
        del self.logits, self.taps


def _stored_classes(targets: np.ndarray, refs: np.ndarray, ranking: np.ndarray, count: int) -> np.ndarray:
    """(N, 1 + count) class ids: the target, its references, then the next classes of ``ranking``
    (N, C - 1) not already there, in the ranking's order.

    >>> _stored_classes(np.array([0]), np.array([[3]]), np.array([[2, 3, 1]]), 2).tolist()
    [[0, 3, 2]]
    """
    out = np.empty((len(targets), 1 + count), np.int64)
    for n in range(len(targets)):
        row = [int(r) for r in refs[n]]
        seen = set(row)
        for c in ranking[n]:
            if len(row) >= count:
                break
            if int(c) not in seen:
                row.append(int(c))
        out[n, 0] = targets[n]
        out[n, 1:] = row
    return out


class FinerCAM:
    """Finer-CAM explainer for a classifier and one or more target layers.

    Parameters:

    - `model`: the classifier; its output is (N, C) logits, a tuple (first item), a dict
      (``"logits"``) or an object with ``.logits`` (:func:`finercam.capture.extract_logits`: an output
      holding no logits tensor is a ``TypeError``). ``nn.DataParallel`` and
      ``DistributedDataParallel`` wrappers are unwrapped: the explanation runs on the wrapped
      module, on one device.
    - `target_layer`: a module, its dotted name (``"layer4"``, ``"blocks.11.norm1"``) or a list.
    - `method`: ``"gradcam"``, ``"layercam"``, ``"gradcam++"``, ``"xgradcam"``, ``"hirescam"``,
      ``"scorecam"`` or ``"cam"`` (see :mod:`finercam.methods`).
    - `gamma`: comparison strength, finite and >= 0 (default 0.6; 1.0 with ``objective="pgc"``,
      where it is pgc's alpha).
    - `num_references`: T, the number of reference classes; more than C - 1 is capped at C - 1
      with a ``UserWarning``.
    - `reference_rule`: ``"nearest_logit"``, ``"top_predicted"`` or ``"weight_similarity"``.
    - `aggregate`: ``"mean"`` (Eq. 8), ``"max"`` or ``"mean_after_relu"`` (Table 3).
    - `objective`: ``"paper"`` or ``"pgc"`` (pytorch-grad-cam's FinerCAM, see :mod:`finercam.compat`).
    - `reverse`: explain ``mean_t y_t - gamma * y_c`` instead (App. C.3).
    - `reshape`: callable mapping the layer's output to (N, K, h, w); default: 4-D as is, 3-D tokens
      laid on the inferred patch grid (see :mod:`finercam.layers`).
    - `candidates`: non-target classes whose weights are stored for ``recombine``.
    - `classifier`: the final nn.Linear (module or name) for ``method="cam"`` and
      ``reference_rule="weight_similarity"``; default: the last nn.Linear with C outputs.
    - `score_budget_mb`: Score-CAM's budget for one chunk of masked inputs, in MiB of input
      (``chunk = budget // (C_in H W 4 bytes)`` masked images per forward; the model's own
      activations for that chunk come on top).

    The map (Grad-CAM, ``objective="paper"``, ``aggregate="mean"``), for target c and references
    t = 1..T, with activations :math:`A_k` on a grid of :math:`Z` cells:

    .. math::

        \\alpha_k^{s} = \\frac{1}{Z} \\sum_{i,j} \\frac{\\partial y^s}{\\partial A_k^{ij}}, \\qquad
        \\alpha_k^{c,t} = \\alpha_k^c - \\gamma\\, \\alpha_k^t, \\qquad
        L^c = \\mathrm{ReLU}\\Big(\\frac{1}{T} \\sum_t \\sum_k \\alpha_k^{c,t} A_k\\Big)

    (Eq. 2, 7, 8: the references are averaged before the ReLU). ``raw_maps`` is :math:`L^c`;
    ``maps`` is :math:`L^c` resized to the input (half-pixel bilinear, ``align_corners=False``)
    and min-maxed, :math:`(u - \\min u) / (\\max u - \\min u + 10^{-8})`. The other methods
    replace :math:`\\alpha` (see :mod:`finercam.methods`); gamma = 0 is the base method.

    >>> import torch, finercam
    >>> from torch import nn
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <...>
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
    ...                     nn.Flatten(), nn.Linear(8, 5))
    >>> cam = finercam.FinerCAM(net, "1", gamma=0.6, num_references=2)
    >>> exp = cam(torch.rand(3, 3, 32, 32), targets=[0, 1, 2])
    >>> exp.maps.shape, exp.raw_maps.shape, exp.targets.tolist(), exp.references.shape
    ((3, 32, 32), (3, 32, 32), [0, 1, 2], (3, 2))
    """

    def __init__(self, model: nn.Module, target_layer, method: str = "gradcam", gamma: float | None = None,
                 num_references: int = 3, reference_rule: str = "nearest_logit", aggregate: str = "mean",
                 objective: str = "paper", *, reverse: bool = False, reshape: Callable | None = None,
                 candidates: int | None = None, classifier=None, score_budget_mb: float = 32.0):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        _check_choices(method, objective, reference_rule)
        if not isinstance(reverse, (bool, np.bool_)):
            raise TypeError(f"reverse must be a bool, got {type(reverse).__name__}")
        if reshape is not None and not callable(reshape):
            raise TypeError(f"reshape must be callable, got {type(reshape).__name__}")
        self.score_budget_mb = _check_budget(score_budget_mb)
        self.model = model
        self._net, target_layer = _unwrap(model, target_layer)
        self.layers = resolve_layers(self._net, target_layer)
        self.method = method
        self.objective = objective
        self.gamma = check_gamma(gamma if gamma is not None else (1.0 if objective == "pgc" else 0.6))
        self.num_references = check_int(num_references, "num_references")
        self.reference_rule = reference_rule
        self.aggregate = check_aggregate(aggregate)
        self.reverse = bool(reverse)
        self.reshape = reshape
        self.candidates = None if candidates is None else check_int(candidates, "candidates")
        self.classifier = None if classifier is None else self._resolve_classifier(classifier)

    def _resolve_classifier(self, classifier) -> nn.Linear:
        module = resolve_layers(self._net, classifier)[0][1]
        if not isinstance(module, nn.Linear):
            raise TypeError(f"classifier must be an nn.Linear, got {type(module).__name__}")
        return module

    def __repr__(self) -> str:
        return (f"FinerCAM(method={self.method!r}, layers={[n for n, _ in self.layers]}, gamma={self.gamma}, "
                f"num_references={self.num_references}, reference_rule={self.reference_rule!r}, "
                f"aggregate={self.aggregate!r}, objective={self.objective!r}, reverse={self.reverse})")

    # -- validation at the door ---------------------------------------------------------------
    @staticmethod
    def _check_targets(targets, N: int) -> np.ndarray | None:
        if targets is None:
            return None
        if isinstance(targets, (bool, np.bool_)):
            raise TypeError("targets must be None, an int or one int per sample, got bool")
        if isinstance(targets, (int, np.integer)):
            return np.full(N, int(targets), np.int64)
        arr = np.asarray(kernels.as_numpy(targets))
        if arr.ndim != 1 or arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
            if arr.ndim == 1 and arr.size and arr.dtype == object and all(
                    isinstance(t, (int, np.integer)) and not isinstance(t, (bool, np.bool_)) for t in arr):
                arr = arr.astype(np.int64)
            else:
                raise TypeError(f"targets must be None, an int or a 1-D sequence of ints, got {targets!r}")
        if arr.shape[0] != N:
            raise ValueError(f"targets gives {arr.shape[0]} class ids for a batch of {N}")
        return arr.astype(np.int64)

    def _find_classifier(self, num_classes: int) -> nn.Linear | None:
        """``classifier=``, else the last nn.Linear with ``num_classes`` outputs (None if none)."""
        if self.classifier is not None:
            return self.classifier
        return find_classifier(self._net, num_classes)

    # -- the call -----------------------------------------------------------------------------
    def __call__(self, images: torch.Tensor, targets=None, references=None) -> Explanation:
        """Explain ``images`` (N, C, H, W) for ``targets`` (None: argmax per sample; an int; or one
        class id per sample) against ``references`` (None: by ``reference_rule``; or one list of
        class ids per sample). Returns an :class:`Explanation`."""
        check_images(images)
        tgt = self._check_targets(targets, images.shape[0])
        if references is not None and not isinstance(references, (list, tuple, np.ndarray, torch.Tensor)):
            raise TypeError(f"references must be one list of class ids per sample, got {type(references).__name__}")
        images = self._on_model_device(images)
        with model_state(self.model) as hooks:
            fwd = None
            try:
                fwd = self._forward(images, hooks)
                tgt = self._targets_in_range(tgt, fwd.logits_host)
                self._grid_activations(fwd)
                refs, cand = self._choose_classes(fwd.logits_host, tgt, references)
                stats, baselines = self._statistics(fwd, cand, refs, hooks)
            except BaseException as exc:
                # The traceback keeps the frames of the failed call, and their locals (the logits,
                # with the graph), alive as long as the caller keeps the exception.
                traceback.clear_frames(exc.__traceback__)
                raise
            finally:
                if fwd is not None:
                    fwd.release_graph()
        store = _Store(self.method, self.objective, fwd.size, [n for n, _ in self.layers], fwd.acts, stats,
                       baselines, cand, fwd.logits_host)
        return Explanation(store, self.gamma, refs, self.aggregate, self.reverse)

    def _on_model_device(self, images: torch.Tensor) -> torch.Tensor:
        """A wrapped model (DataParallel) runs its module on one device: the images go there."""
        if self._net is not self.model:
            p = next(self._net.parameters(), None)
            if p is not None:
                return images.to(p.device)
        return images

    def _forward(self, images: torch.Tensor, hooks: list) -> _Forward:
        """The tapped forward pass, its logits checked (finite, at least two classes)."""
        logits, taps = tapped_forward(self._net, images, self.layers, hooks, self.method in GRADIENT_METHODS)
        y = _host_float32(logits)
        if not np.isfinite(y).all():
            raise ValueError("the model's logits hold NaN or inf")
        if y.shape[1] < 2:
            raise ValueError(f"Finer-CAM compares classes: the model gives {y.shape[1]} logit per sample")
        return _Forward(images, (int(images.shape[2]), int(images.shape[3])), logits, taps, y)

    @staticmethod
    def _targets_in_range(tgt: np.ndarray | None, y: np.ndarray) -> np.ndarray:
        """The checked targets, or the top class of each sample when none were given."""
        C = y.shape[1]
        if tgt is None:
            return y.argmax(axis=1).astype(np.int64)
        if (tgt < 0).any() or (tgt >= C).any():
            raise ValueError(f"targets holds class ids outside [0, {C}): {tgt.tolist()}")
        return tgt

    def _grid_activations(self, fwd: _Forward) -> None:
        """Fill ``fwd.transforms`` (tap -> (N, K, h, w)) and ``fwd.acts`` (the host activations)."""
        for (name, _), t in zip(self.layers, fwd.taps, strict=True):
            tf = grid_transform(t, fwd.size, self.reshape, name)
            A = _host_float32(tf(t.detach()))
            if not np.isfinite(A).all():
                raise ValueError(f"the activations of target_layer {name!r} hold NaN or inf")
            fwd.transforms.append(tf)
            fwd.acts.append(A)

    def _choose_classes(self, y: np.ndarray, tgt: np.ndarray, references) -> tuple[np.ndarray, np.ndarray]:
        """``(references (N, T), stored classes (N, 1 + S))``; column 0 of the stored classes is the
        explained class (pgc: its main class, the only one stored)."""
        C = y.shape[1]
        if self.objective == "pgc":
            if references is None:
                main, refs = pgc_ranks(y, tgt, self._reference_count(C))
            else:
                main, refs = tgt, check_references(references, tgt, C)
            return refs, main[:, None].copy()
        given = None if references is None else check_references(references, tgt, C)
        ranking = rank_classes(y, tgt, self.reference_rule, self._classifier_weight(C))
        refs = ranking[:, : self._reference_count(C)].copy() if given is None else given
        wanted = self.candidates if self.candidates is not None else DEFAULT_CANDIDATES
        return refs, _stored_classes(tgt, refs, ranking, min(C - 1, max(refs.shape[1], wanted)))

    def _classifier_weight(self, num_classes: int) -> np.ndarray | None:
        """The classifier's weight rows, which only ``reference_rule="weight_similarity"`` reads."""
        if self.reference_rule != "weight_similarity":
            return None
        clf = self._find_classifier(num_classes)
        return None if clf is None else _host_float32(clf.weight)

    def _reference_count(self, C: int) -> int:
        """T = min(num_references, C - 1): only C - 1 classes are not the target. The cap changes
        what is explained, so it is said (a UserWarning), not done silently."""
        if self.num_references <= C - 1:
            return self.num_references
        warnings.warn(f"num_references={self.num_references}, but a model with {C} classes has only {C - 1} "
                      f"besides the target: using num_references={C - 1}", UserWarning, stacklevel=4)
        return C - 1

    # -- per-class statistics -----------------------------------------------------------------
    def _statistics(self, fwd: _Forward, cand: np.ndarray, refs: np.ndarray,
                    hooks: list) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        """Per layer, the statistic of every stored class (see :mod:`finercam.methods`), and the
        zero-input logits of the stored classes (Score-CAM; None for the other methods)."""
        no_baselines: list[np.ndarray | None] = [None] * len(fwd.acts)
        if self.method in GRADIENT_METHODS:
            return self._gradient_stats(fwd, self._directions(fwd.logits, cand, refs)), no_baselines
        if self.method == "cam":
            return self._classifier_stats(fwd.acts, cand, fwd.logits_host.shape[1]), no_baselines
        # scorecam: the taps are done; the masked forwards must not hit them again.
        for h in hooks:
            h.remove()
        hooks.clear()
        return self._score_statistics(fwd.images, fwd.acts, cand)

    def _directions(self, logits: torch.Tensor, cand: np.ndarray, refs: np.ndarray) -> torch.Tensor:
        """(N, S, C) logit combinations whose gradients are stored: one-hot rows of the stored
        classes; for pgc, its objective's direction and the main class's one-hot row."""
        if self.objective == "pgc":
            return self._pgc_directions(logits, cand[:, 0], refs)
        N, S = cand.shape
        dirs = torch.zeros((N, S, logits.shape[1]), dtype=logits.dtype, device=logits.device)
        dirs.scatter_(2, torch.as_tensor(cand, device=logits.device)[:, :, None], 1.0)
        return dirs

    def _pgc_directions(self, logits: torch.Tensor, main: np.ndarray, refs: np.ndarray) -> torch.Tensor:
        main_t = torch.as_tensor(main, device=logits.device)
        v, den = pgc_direction(logits, main_t, torch.as_tensor(refs, device=logits.device), self.gamma)
        warn_if_flipped(den)
        dirs = torch.zeros((logits.shape[0], 2, logits.shape[1]), dtype=torch.float32, device=logits.device)
        dirs[:, 0] = v
        dirs[:, 1].scatter_(1, main_t[:, None], 1.0)
        return dirs

    def _gradient_stats(self, fwd: _Forward, dirs: torch.Tensor) -> list[np.ndarray]:
        names = [n for n, _ in self.layers]
        stats: list = [None] * len(fwd.acts)
        S = dirs.shape[1]
        for s, grads in directional_gradients(fwd.logits, fwd.taps, dirs, names):
            for i, (tf, g, A) in enumerate(zip(fwd.transforms, grads, fwd.acts, strict=True)):
                G = _host_float32(tf(g))
                st = class_statistic(self.method, A, G)
                if stats[i] is None:
                    stats[i] = np.empty((st.shape[0], S) + st.shape[1:], np.float32)
                stats[i][:, s] = st
        return stats

    def _classifier_stats(self, acts: list[np.ndarray], cand: np.ndarray, num_classes: int) -> list[np.ndarray]:
        """CAM's per-class weights: the classifier's rows of the stored classes, (N, S, K) per layer."""
        clf = self._find_classifier(num_classes)
        stats = []
        for (name, _), A in zip(self.layers, acts, strict=True):
            if clf is None or clf.in_features != A.shape[1]:
                raise ValueError(f"method='cam' needs a final nn.Linear with {num_classes} outputs and "
                                 f"{A.shape[1]} inputs (the channels of {name!r}); pass classifier=")
            stats.append(np.ascontiguousarray(_host_float32(clf.weight)[cand]))
        return stats

    @torch.no_grad()
    def _score_statistics(self, images, acts, cand):
        """Eq. 9's per-class scores ``f(x o H_k)_s`` for the stored classes, (N, S, K) per layer,
        and ``f(x_b)_s`` with ``x_b = 0``; masks built by the C core per chunk of (sample, channel)
        pairs, never all K masked copies at once."""
        N, Cin, H, W = images.shape
        per_input = Cin * H * W * max(images.element_size(), 4)
        chunk = max(1, int(self.score_budget_mb * 2**20 // per_input))
        cand_t = torch.as_tensor(cand, device=images.device)
        zero_logits = extract_logits(self._net(torch.zeros_like(images[:1])), 1).float()
        base = zero_logits[0][cand_t].cpu().numpy()                  # (N, S)
        stats, baselines = [], []
        for A in acts:
            K, h, w = A.shape[1:]
            flat = A.reshape(N * K, h, w)
            out = torch.empty((N * K, cand.shape[1]), dtype=torch.float32, device=images.device)
            for i0 in range(0, N * K, chunk):
                i1 = min(N * K, i0 + chunk)
                masks = torch.from_numpy(kernels.postprocess(flat[i0:i1], (H, W), relu=False, eps=1e-8))
                masks = masks.to(device=images.device, dtype=images.dtype, non_blocking=True)
                n_idx = torch.arange(i0, i1, device=images.device) // K
                scores = extract_logits(self._net(images[n_idx] * masks[:, None]), i1 - i0)
                out[i0:i1] = scores.float().gather(1, cand_t[n_idx])
            stats.append(out.view(N, K, -1).transpose(1, 2).contiguous().cpu().numpy())
            baselines.append(base)
        return stats, baselines
