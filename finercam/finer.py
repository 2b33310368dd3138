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
from typing import Callable

import numpy as np
import torch
from torch import nn

from ._checks import check_int
from .capture import directional_gradients, extract_logits, model_state, tapped_forward
from .compat import pgc_direction, warn_if_flipped
from .explanation import Explanation, _Store, check_aggregate, check_gamma
from .layers import grid_transform, resolve_layers
from .methods import GRADIENT_METHODS, METHODS, class_statistic
from .references import RULES, check_references, pgc_ranks, rank_classes
from . import kernels

__all__ = ["FinerCAM", "OBJECTIVES"]

OBJECTIVES = ("paper", "pgc")
DEFAULT_EXTRA_CANDIDATES = 10


class FinerCAM:
    """Finer-CAM explainer for a classifier and one or more target layers.

    Parameters:

    - `model`: the classifier; its output is (N, C) logits, a tuple (first item), a dict
      (``"logits"``) or an object with ``.logits``. ``nn.DataParallel`` and
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
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        if objective == "pgc" and method not in GRADIENT_METHODS:
            raise ValueError(f"objective='pgc' supports the gradient methods {GRADIENT_METHODS}, not {method!r}")
        if reference_rule not in RULES:
            raise ValueError(f"reference_rule must be one of {RULES}, got {reference_rule!r}")
        if not isinstance(reverse, (bool, np.bool_)):
            raise TypeError(f"reverse must be a bool, got {type(reverse).__name__}")
        if reshape is not None and not callable(reshape):
            raise TypeError(f"reshape must be callable, got {type(reshape).__name__}")
        if isinstance(score_budget_mb, (bool, np.bool_)) or not isinstance(score_budget_mb, (int, float)):
            raise TypeError(f"score_budget_mb must be a number, got {type(score_budget_mb).__name__}")
        if not np.isfinite(score_budget_mb) or score_budget_mb <= 0:
            raise ValueError(f"score_budget_mb must be > 0, got {score_budget_mb}")
        self.model = model
        self._net = model.module if isinstance(
            model, (nn.DataParallel, nn.parallel.DistributedDataParallel)) else model
        if self._net is not model and isinstance(target_layer, str) and target_layer.startswith("module."):
            target_layer = target_layer[len("module."):]
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
        if classifier is not None:
            classifier = resolve_layers(self._net, classifier)[0][1]
            if not isinstance(classifier, nn.Linear):
                raise TypeError(f"classifier must be an nn.Linear, got {type(classifier).__name__}")
        self.classifier = classifier
        self.score_budget_mb = float(score_budget_mb)

    def __repr__(self) -> str:
        return (f"FinerCAM(method={self.method!r}, layers={[n for n, _ in self.layers]}, gamma={self.gamma}, "
                f"num_references={self.num_references}, reference_rule={self.reference_rule!r}, "
                f"aggregate={self.aggregate!r}, objective={self.objective!r}, reverse={self.reverse})")

    # -- validation at the door ---------------------------------------------------------------
    @staticmethod
    def _check_images(images) -> None:
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
        if not images.is_floating_point():
            raise TypeError(f"images must be a floating-point tensor, got {images.dtype}")
        if images.ndim != 4 or images.shape[0] < 1 or images.shape[2] < 1 or images.shape[3] < 1:
            raise ValueError(f"images must be (N, C, H, W) with N >= 1, got shape {tuple(images.shape)}")

    @staticmethod
    def _check_targets(targets, N: int) -> np.ndarray | None:
        if targets is None:
            return None
        if isinstance(targets, (bool, np.bool_)):
            raise TypeError("targets must be None, an int or one int per sample, got bool")
        if isinstance(targets, (int, np.integer)):
            return np.full(N, int(targets), np.int64)
        if isinstance(targets, torch.Tensor):
            targets = targets.detach().cpu().numpy()
        arr = np.asarray(targets)
        if arr.ndim != 1 or arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
            if arr.ndim == 1 and arr.size and arr.dtype == object and all(
                    isinstance(t, (int, np.integer)) and not isinstance(t, (bool, np.bool_)) for t in arr):
                arr = arr.astype(np.int64)
            else:
                raise TypeError(f"targets must be None, an int or a 1-D sequence of ints, got {targets!r}")
        if arr.shape[0] != N:
            raise ValueError(f"targets gives {arr.shape[0]} class ids for a batch of {N}")
        return arr.astype(np.int64)

    def _find_classifier(self, num_classes: int, in_features: int | None = None) -> nn.Linear | None:
        if self.classifier is not None:
            return self.classifier
        found = None
        for m in self._net.modules():
            if isinstance(m, nn.Linear) and m.out_features == num_classes:
                found = m
        return found

    # -- the call -----------------------------------------------------------------------------
    def __call__(self, images: torch.Tensor, targets=None, references=None) -> Explanation:
        """Explain ``images`` (N, C, H, W) for ``targets`` (None: argmax per sample; an int; or one
        class id per sample) against ``references`` (None: by ``reference_rule``; or one list of
        class ids per sample). Returns an :class:`Explanation`."""
        self._check_images(images)
        N = images.shape[0]
        tgt = self._check_targets(targets, N)
        if references is not None and not isinstance(references, (list, tuple, np.ndarray, torch.Tensor)):
            raise TypeError(f"references must be one list of class ids per sample, got {type(references).__name__}")
        if self._net is not self.model:
            p = next(self._net.parameters(), None)
            if p is not None:
                images = images.to(p.device)
        size = (int(images.shape[2]), int(images.shape[3]))
        track = self.method in GRADIENT_METHODS
        with model_state(self.model) as hooks:
            logits = taps = None
            try:
                logits, taps = tapped_forward(self._net, images, self.layers, hooks, track)
                y = logits.detach().float().cpu().numpy()
                if not np.isfinite(y).all():
                    raise ValueError("the model's logits hold NaN or inf")
                C = y.shape[1]
                if C < 2:
                    raise ValueError(f"Finer-CAM compares classes: the model gives {C} logit per sample")
                if tgt is None:
                    tgt = y.argmax(axis=1).astype(np.int64)
                elif (tgt < 0).any() or (tgt >= C).any():
                    raise ValueError(f"targets holds class ids outside [0, {C}): {tgt.tolist()}")
                transforms, acts = [], []
                for (name, _), t in zip(self.layers, taps):
                    tf = grid_transform(t, size, self.reshape, name)
                    A = tf(t.detach()).float().cpu().numpy()
                    A = np.ascontiguousarray(A)
                    if not np.isfinite(A).all():
                        raise ValueError(f"the activations of target_layer {name!r} hold NaN or inf")
                    transforms.append(tf)
                    acts.append(A)
                refs, cand, extra = self._choose_classes(y, tgt, references)
                stats, baselines = self._statistics(images, logits, taps, transforms, acts, cand, extra, hooks, y)
            except BaseException as exc:
                # The traceback keeps the frames of the failed call, and their locals (the logits,
                # with the graph), alive as long as the caller keeps the exception.
                traceback.clear_frames(exc.__traceback__)
                raise
            finally:
                logits = taps = t = None

        store = _Store(self.method, self.objective, size, [n for n, _ in self.layers], acts, stats,
                       baselines, cand, y, extra)
        return Explanation(store, self.gamma, refs, self.aggregate, self.reverse)

    def _choose_classes(self, y: np.ndarray, tgt: np.ndarray, references):
        N, C = y.shape
        if self.objective == "pgc":
            if references is None:
                T = self._reference_count(C)
                main, refs = pgc_ranks(y, tgt, T)
            else:
                main, refs = tgt, check_references(references, tgt, C)
            return refs, main[:, None].copy(), {"main": main, "refs": refs}
        if references is not None:
            refs = check_references(references, tgt, C)
        else:
            refs = None
        weight = None
        if self.reference_rule == "weight_similarity":
            clf = self._find_classifier(C)
            weight = None if clf is None else clf.weight.detach().float().cpu().numpy()
        ranking = rank_classes(y, tgt, self.reference_rule, weight)
        if refs is None:
            refs = ranking[:, : self._reference_count(C)].copy()
        T = refs.shape[1]
        extra = self.candidates if self.candidates is not None else DEFAULT_EXTRA_CANDIDATES
        S = min(C - 1, max(T, extra))
        cand = np.empty((N, 1 + S), np.int64)
        for n in range(N):
            row = list(refs[n])
            seen = set(row)
            for c in ranking[n]:
                if len(row) >= S:
                    break
                if int(c) not in seen:
                    row.append(int(c))
            cand[n, 0] = tgt[n]
            cand[n, 1:] = row
        return refs, cand, {}

    def _reference_count(self, C: int) -> int:
        """T = min(num_references, C - 1): only C - 1 classes are not the target. The cap changes
        what is explained, so it is said (a UserWarning), not done silently."""
        if self.num_references <= C - 1:
            return self.num_references
        warnings.warn(f"num_references={self.num_references}, but a model with {C} classes has only {C - 1} "
                      f"besides the target: using num_references={C - 1}", UserWarning, stacklevel=4)
        return C - 1

    def _statistics(self, images, logits, taps, transforms, acts, cand, extra, hooks, y):
        N = images.shape[0]
        L = len(acts)
        if self.method in GRADIENT_METHODS:
            C = y.shape[1]
            if self.objective == "pgc":
                return self._pgc_statistics(logits, taps, transforms, acts, extra, y), [None] * L
            S = cand.shape[1]
            dirs = torch.zeros((N, S, C), dtype=logits.dtype, device=logits.device)
            dirs.scatter_(2, torch.as_tensor(cand, device=logits.device)[:, :, None], 1.0)
            return self._gradient_stats(logits, taps, transforms, acts, dirs), [None] * L
        if self.method == "cam":
            stats = []
            for (name, _), A in zip(self.layers, acts):
                clf = self._find_classifier(y.shape[1])
                if clf is None or clf.in_features != A.shape[1]:
                    raise ValueError(f"method='cam' needs a final nn.Linear with {y.shape[1]} outputs and "
                                     f"{A.shape[1]} inputs (the channels of {name!r}); pass classifier=")
                W = clf.weight.detach().float().cpu().numpy()
                stats.append(np.ascontiguousarray(W[cand]))
            return stats, [None] * L
        # scorecam: the taps are done; the masked forwards must not hit them again.
        for h in hooks:
            h.remove()
        hooks.clear()
        return self._score_statistics(images, acts, cand)

    def _gradient_stats(self, logits, taps, transforms, acts, dirs):
        names = [n for n, _ in self.layers]
        stats: list = [None] * len(acts)
        S = dirs.shape[1]
        for s, grads in directional_gradients(logits, taps, dirs, names):
            for l, (tf, g, A) in enumerate(zip(transforms, grads, acts)):
                G = np.ascontiguousarray(tf(g).float().cpu().numpy())
                st = class_statistic(self.method, A, G)
                if stats[l] is None:
                    stats[l] = np.empty((st.shape[0], S) + st.shape[1:], np.float32)
                stats[l][:, s] = st
        return stats

    def _pgc_statistics(self, logits, taps, transforms, acts, extra, y):
        main = torch.as_tensor(extra["main"], device=logits.device)
        refs = torch.as_tensor(extra["refs"], device=logits.device)
        v, den = pgc_direction(logits, main, refs, self.gamma)
        warn_if_flipped(den)
        dirs = torch.zeros((logits.shape[0], 2, logits.shape[1]), dtype=torch.float32, device=logits.device)
        dirs[:, 0] = v
        dirs[:, 1].scatter_(1, main[:, None], 1.0)
        return self._gradient_stats(logits, taps, transforms, acts, dirs)

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
