"""Explanation: the maps of one FinerCAM call, and everything needed to recombine them.

An Explanation keeps, per target layer, the activations A (N, K, h, w) and one statistic per
stored gradient (see :mod:`finercam.methods`), at the layer's grid on the host: by default (the
gradient methods with ``aggregate="mean"``) the target's and the references' mean, else one per
stored class (``candidates=``). A new gamma, the reverse comparison and the base map are then
always only a C-core combination, no model call; another subset of the references or another
aggregation needs the per-class gradients (``FinerCAM(..., candidates=K)``):

* objective (paper, Eq. 5-8): ``y_c - gamma * mean_t y_t``; reverse (App. C.3):
  ``mean_t y_t - gamma * y_c``;
* aggregation (Table 3): ``"mean"``: ``ReLU(sum_k mean_t alpha^{c,t}_k A_k)`` (Eq. 8),
  ``"max"``: ``ReLU(max_t sum_k alpha^{c,t}_k A_k)``, ``"mean_after_relu"``:
  ``mean_t ReLU(sum_k alpha^{c,t}_k A_k)``, with ``alpha^{c,t}`` the weights of ``y_c - gamma y_t``;
* ``maps = (u - min u) / (max u - min u + 1e-8)``, u the half-pixel bilinear resize
  (``align_corners=False``) of ``raw_maps`` to the input size; with several layers the per-layer
  maps are averaged and normalised again. With ``objective="pgc"``, as pytorch-grad-cam: each
  layer's raw map is min-maxed at the grid with eps 1e-7 and resized; the mean over the layers
  (for one layer, its map) is min-maxed again with eps 1e-7.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from . import kernels
from .methods import signed_maps

__all__ = ["Explanation", "AGGREGATES", "check_gamma", "check_aggregate"]

AGGREGATES = ("mean", "max", "mean_after_relu")


@dataclass(eq=False)
class _Store:
    """What one model call produced; shared (never copied) by every recombined Explanation."""

    method: str
    objective: str
    input_size: tuple[int, int]
    layer_names: list[str]
    activations: list[np.ndarray]       # per layer (N, K, h, w)
    stats: list[np.ndarray]             # per layer (N, S, ...)
    baselines: list[np.ndarray | None]  # per layer (N, S) zero-input logits (scorecam) or None
    candidates: np.ndarray              # (N, S) class ids, column 0 the explained class
    logits: np.ndarray                  # (N, C)
    mean_of: np.ndarray | None = None   # (N, T): stats[:, S] is the statistic of their mean gradient
    host_bytes: int = 0                 # bytes the call brought from the model's device to the host


def check_gamma(gamma) -> float:
    """gamma: a finite real >= 0 (bools refused); returned as a float.

    >>> check_gamma(2)
    2.0
    """
    if isinstance(gamma, (bool, np.bool_)) or not isinstance(gamma, (int, float, np.integer, np.floating)):
        raise TypeError(f"gamma must be a real number, got {type(gamma).__name__}")
    g = float(gamma)
    if not np.isfinite(g) or g < 0:
        raise ValueError(f"gamma must be finite and >= 0, got {gamma!r}")
    return g


def check_aggregate(aggregate) -> str:
    """One of :data:`AGGREGATES`, else a ValueError.

    >>> check_aggregate("max")
    'max'
    """
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")
    return aggregate


class Explanation:
    """Maps for a batch, and instant recombination.

    Attributes: ``maps`` (N, H, W) float32 in [0, 1] at the input's resolution; ``raw_maps``
    (N, h, w) ``ReLU(sum_k alpha_k A_k)`` of the first target layer, unnormalised
    (``layer_raw_maps`` holds every layer's); ``targets`` (N,) int64; ``references`` (N, T) int64;
    ``logits`` (N, C) float32; ``candidates`` (N, S): the classes whose weights are stored one by
    one, column 0 the target; ``mean_references`` (N, T): the references whose *mean* gradient is
    stored (the two-pass default: then ``candidates`` holds the target only), else None;
    ``host_bytes``: the bytes the call copied from the model's device to the host; ``gamma``,
    ``aggregate``, ``reverse``, ``method``, ``objective``; ``is_baseline``: True for the base
    method alone (:meth:`baseline`: gamma 0, no reference).

    A small CNN (seeded), one call, then a gamma sweep from the stored weights:

    >>> import torch, finercam
    >>> _ = torch.manual_seed(0)
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
    ...                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 5))
    >>> exp = finercam.FinerCAM(net, "1")(torch.rand(2, 3, 16, 16))
    >>> sweep = [exp.recombine(gamma=g).maps for g in (0.0, 0.5, 1.0)]   # no model call
    >>> exp.maps.shape, exp.references.shape, bool(np.allclose(exp.baseline().maps, sweep[0]))
    ((2, 16, 16), (2, 3), True)
    """

    def __init__(self, store: _Store, gamma: float, references: np.ndarray, aggregate: str,
                 reverse: bool, base_only: bool = False):
        self._store = store
        self.gamma = float(gamma)
        self.references = np.asarray(references, dtype=np.int64)
        self.aggregate = aggregate
        self.reverse = bool(reverse)
        self.method = store.method
        self.objective = store.objective
        self.targets = store.candidates[:, 0].astype(np.int64)
        self.logits = store.logits
        self.candidates = store.candidates
        self.mean_references = store.mean_of
        self.host_bytes = store.host_bytes
        self.layer_names = list(store.layer_names)
        self.is_baseline = base_only  # the base method alone (gamma 0, the target only): baseline()
        coef, primary = self._coefficients()
        self.layer_raw_maps = []
        for A, st, base in zip(store.activations, store.stats, store.baselines, strict=True):
            signed = signed_maps(store.method, A, st, coef, primary, base)
            self.layer_raw_maps.append(self._aggregate(signed))
        self.raw_maps = self.layer_raw_maps[0]
        self.maps = self._normalise(self.layer_raw_maps)

    # -- the objective as coefficients over the stored classes ---------------------------------
    def _coefficients(self) -> tuple[np.ndarray, np.ndarray]:
        """coef (N, G, S) and primary (N, G, S): the objective of each of the G maps over the S
        stored classes, and its gamma-free part (whose zero-input logit Score-CAM subtracts)."""
        st = self._store
        N, S = st.candidates.shape
        if st.objective == "pgc":
            # stats rows: 0 the pgc objective's gradient, 1 the main class's own.
            coef = np.zeros((N, 1, 2), np.float32)
            coef[:, 0, 1 if self.is_baseline else 0] = 1.0
            return coef, coef
        rows = np.arange(N)
        g = 0.0 if self.is_baseline else self.gamma
        per_ref = self.aggregate != "mean" and not self.is_baseline
        if st.mean_of is not None:
            self._check_mean_only(per_ref)
            # The mean row stands for the references: the objective is y_c - g * mean_t y_t.
            pos, S = np.full((N, 1), S, np.int64), S + 1
        else:
            pos = self._reference_positions(self.references)
        T = pos.shape[1]
        G = T if per_ref else 1
        coef = np.zeros((N, G, S), np.float64)
        primary = np.zeros((N, G, S), np.float64)
        for t in range(T):
            gi = t if per_ref else 0
            share = 1.0 if per_ref else 1.0 / T
            if self.reverse and not self.is_baseline:
                coef[rows, gi, pos[:, t]] += share
                primary[rows, gi, pos[:, t]] += share
                coef[rows, gi, 0] -= g * share
            else:
                coef[rows, gi, 0] += share
                primary[rows, gi, 0] += share
                coef[rows, gi, pos[:, t]] -= g * share
        return coef.astype(np.float32), primary.astype(np.float32)

    def _check_mean_only(self, per_reference: bool) -> None:
        """With the two-pass store only the references' mean gradient is known: the same reference
        set (in any order) and ``aggregate="mean"``; else a ValueError naming ``candidates=``."""
        stored = self._store.mean_of
        assert stored is not None
        if per_reference:
            raise ValueError(f"aggregate={self.aggregate!r} needs each reference's own gradient, and this "
                             "Explanation stores the references' mean gradient only (the default: two "
                             "backward passes); call FinerCAM with candidates=K (any K >= 1 stores each "
                             "reference one by one, larger K the next classes too)")
        for n in range(len(stored)):
            if self.references.shape[1] != stored.shape[1] or set(self.references[n].tolist()) != set(
                    stored[n].tolist()):
                raise ValueError(f"references[{n}] = {self.references[n].tolist()}: this Explanation stores "
                                 f"the target's gradient and the mean gradient of the references "
                                 f"{stored[n].tolist()} only (the default: two backward passes), so their "
                                 "weights were not stored one by one; call FinerCAM again with "
                                 "references= or with candidates=K (per-class gradients)")

    def _reference_positions(self, references: np.ndarray) -> np.ndarray:
        cand = self._store.candidates
        pos = np.empty(references.shape, np.int64)
        for n in range(references.shape[0]):
            where = {int(c): i for i, c in enumerate(cand[n])}
            for t, r in enumerate(references[n]):
                i = where.get(int(r))
                if i is None or i == 0:
                    raise ValueError(f"references[{n}] holds class {int(r)}, whose weights were not stored "
                                     f"(stored for sample {n}: {cand[n, 1:].tolist()}); call FinerCAM "
                                     "again with references= or a larger candidates=")
                pos[n, t] = i
        return pos

    def _aggregate(self, signed: np.ndarray) -> np.ndarray:
        """(N, h, w) ReLU'd map from the G signed maps (N, G, h, w), by ``aggregate``."""
        if signed.shape[1] == 1:
            out = signed[:, 0]
        elif self.aggregate == "max":
            out = signed.max(axis=1)
        else:  # mean_after_relu
            out = np.maximum(signed, 0.0).mean(axis=1, dtype=np.float64).astype(np.float32)
        return np.ascontiguousarray(np.maximum(out, 0.0), dtype=np.float32)

    def _normalise(self, raws: Sequence[np.ndarray]) -> np.ndarray:
        size = self._store.input_size
        if self._store.objective == "pgc":
            # pytorch-grad-cam: min-max (eps 1e-7) at the grid, then resize; then the mean over
            # layers and a second min-max (eps 1e-7), which its aggregate_multi_layers applies
            # for one layer too: a resized map's minimum can sit above 0 and its maximum below 1
            # (an interior peak is not a grid point any more), so the second pass changes the map.
            per = [kernels.resize(kernels.minmax(r, eps=1e-7), size) for r in raws]
            return kernels.minmax(np.mean(per, axis=0, dtype=np.float64).astype(np.float32), eps=1e-7)
        if len(raws) == 1:
            return kernels.postprocess(raws[0], size, relu=True, eps=1e-8)
        return kernels.fuse_layers(list(raws), size, relu=True, eps=1e-8)

    # -- public -------------------------------------------------------------------------------
    def recombine(self, gamma=None, references=None, aggregate=None, reverse=None) -> "Explanation":
        """A new Explanation with another gamma, reference subset, aggregation or direction,
        computed from the stored weights only (no model call).

        ``references``: one list of class ids per sample, each among this Explanation's stored
        ``candidates``; otherwise a ``ValueError``. See the class example.
        """
        if self._store.objective == "pgc":
            raise ValueError("recombine needs objective='paper': the pgc objective depends on all "
                             "logits through its softmax weights")
        g = self.gamma if gamma is None else check_gamma(gamma)
        agg = self.aggregate if aggregate is None else check_aggregate(aggregate)
        rev = self.reverse if reverse is None else reverse
        if not isinstance(rev, (bool, np.bool_)):
            raise TypeError(f"reverse must be a bool, got {type(rev).__name__}")
        if references is None:
            refs = self.references
        else:
            from .references import check_references
            refs = check_references(references, self.targets, self.logits.shape[1])
        return Explanation(self._store, g, refs, agg, bool(rev))

    def baseline(self) -> "Explanation":
        """The plain base method (gamma = 0: the target logit alone), no model call; for
        ``objective="pgc"``, pgc's plain map of its main class. See the class example."""
        return Explanation(self._store, 0.0, self.references, self.aggregate, False, base_only=True)

    def __repr__(self) -> str:
        N, H, W = self.maps.shape
        return (f"Explanation(method={self.method!r}, objective={self.objective!r}, gamma={self.gamma}, "
                f"aggregate={self.aggregate!r}, reverse={self.reverse}, maps={N}x{H}x{W}, "
                f"layers={self.layer_names})")

    # -- the interactive view (finercam.explorer) ---------------------------------------------
    def to_html(self, path=None, images=None, class_names=None, *, layer=None, cmap="jet") -> str:
        """One self-contained HTML page (inline JS/CSS, no network) to explore this Explanation:
        gamma slider, any target and references among the stored classes, each layer and their
        fusion, aggregation, base method, colour map, recombined in the browser; written to
        ``path`` when given. See :func:`finercam.explorer.to_html`."""
        from . import explorer

        return explorer.to_html(self, path, images=images, class_names=class_names, layer=layer, cmap=cmap)

    def _repr_html_(self) -> str:
        """Jupyter shows the interactive view inline (:func:`finercam.explorer.repr_html`); for the
        two-pass default, which the view cannot toggle, a line saying how to get it."""
        from . import explorer

        if self._store.mean_of is not None:
            import html

            return (f"<pre>{html.escape(repr(self))}</pre><p>The interactive view needs per-class "
                    "gradients: <code>FinerCAM(..., candidates=10)</code>.</p>")
        return explorer.repr_html(self)

    def diagnose(self, classifier=None):
        """How much the comparison changed each map, and why: per image the correlation with the
        base map, the references' map mass relative to the target's, the cosine similarity of
        their classifier weights (``classifier``: the final nn.Linear or its weight matrix) and
        the logit gap. See :func:`finercam.diagnose.diagnose`; no model call.

        A linear head on pooled features (Grad-CAM is then CAM), its weights as the classifier:

        >>> import torch, finercam
        >>> g = torch.Generator().manual_seed(1)
        >>> head = torch.nn.Linear(4, 6)
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.ReLU(),
        ...                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), head)
        >>> d = finercam.FinerCAM(net, "1", num_references=2)(torch.rand(3, 3, 8, 8, generator=g)).diagnose(head)
        >>> d.weight_cosine.shape, d.summary(0).startswith("class ")
        ((3, 2), True)
        """
        from .diagnose import diagnose

        return diagnose(self, classifier)
