"""Scoring: the rows of a table (settings), their maps, and every per-image number of a batch.

A :class:`Setting` is one row: a base method, or Finer with the configured gamma, references
and aggregation, or an ablation (another gamma, the r-th most similar class alone, another
aggregation). :func:`setting_maps` gets its maps from the method's ``Explanation`` without a
model call. :func:`score_maps` gives every metric of :mod:`finercam.metrics` per image (RD and
the target's drop at each fraction, the deletion AUC of the target and the compared class, from
one set of masked forwards); :func:`region_scores` the energy share in a region ("Loc.") and the
pointing game. :func:`score_batch` is one batch of the runner: explain, then score each row.
The keys are the column keys of :mod:`finercam.evaluation.tables`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from .. import metrics
from ..methods import METHOD_LABELS
from .data import Item, region_mask
from .parts import is_parts, part_scores

__all__ = ["Setting", "region_scores", "road_insertion_scores", "score_batch", "score_maps", "setting_maps",
           "settings"]


@dataclass(frozen=True)
class Setting:
    """One row. ``recombine``: None for the base method (gamma = 0); ``{}`` for Finer as
    configured; ``{"gamma": g}``, ``{"aggregate": a}`` (``Explanation.recombine``'s arguments)
    or ``{"rank": r}`` (the r-th most similar class alone, 1 = the most similar) for ablations.

    >>> [s.name for s in settings(["gradcam"], finer=True, gammas=[0.2], reference_ranks=[2])]
    ['Grad-CAM', 'Grad-CAM + Finer', 'Grad-CAM + Finer gamma=0.2', 'Grad-CAM + Finer ref=2']
    """

    name: str
    method: str
    recombine: dict | None


def settings(methods: Sequence[str], *, finer: bool = True, gammas: Sequence[float] = (),
             reference_ranks: Sequence[int] = (), aggregations: Sequence[str] = ()) -> list[Setting]:
    """The rows of a run, method by method: the base method, Finer, then the ablations."""
    out = []
    for m in methods:
        name = METHOD_LABELS.get(m, m)
        out.append(Setting(name, m, None))
        if finer:
            out.append(Setting(f"{name} + Finer", m, {}))
        out += [Setting(f"{name} + Finer gamma={g:g}", m, {"gamma": float(g)}) for g in gammas]
        out += [Setting(f"{name} + Finer ref={r}", m, {"rank": int(r)}) for r in reference_ranks]
        out += [Setting(f"{name} + Finer agg={a}", m, {"aggregate": a}) for a in aggregations]
    return out


def setting_maps(exp, setting: Setting) -> np.ndarray:
    """The ``(N, H, W)`` maps of one row from its method's explanation (no model call).

    ``{"rank": r}`` compares with ``exp.candidates[:, r]`` alone (column 0 is the target).
    """
    kw = setting.recombine
    if kw is None:
        return exp.baseline().maps
    if "rank" in kw:
        return exp.recombine(references=exp.candidates[:, kw["rank"]].reshape(-1, 1).tolist()).maps
    return exp.recombine(**kw).maps


def score_maps(model, images: torch.Tensor, maps: np.ndarray, targets, compare_to, *,
               fractions: Sequence[float] = (0.05, 0.1), steps: int | None = 20, baseline=0.0,
               chunk: int = 64, deletion_images: int | None = None) -> dict[str, np.ndarray]:
    """Every masked-forward metric per image: ``rd@f`` and ``drop@f`` per fraction,
    ``deletion`` and ``deletion_ref`` (when ``steps``). (N,) float64 arrays.

    With ``deletion_images`` the deletion curves cover only the first that many images (their
    ``steps`` forwards per image and map are the run's largest cost) and are NaN after them;
    otherwise the fractions and the deletion steps share their masked forwards
    (:func:`finercam.metrics.evaluate_maps`). ``chunk`` images go into one forward.
    """
    if deletion_images is None:
        res = metrics.evaluate_maps(model, images, maps, targets, compare_to, fractions=fractions,
                                    steps=steps, baseline=baseline, batch_size=chunk)
        return {k: v for k, v in res.items() if k not in ("target", "compare_to")}
    res = metrics.evaluate_maps(model, images, maps, targets, compare_to, fractions=fractions,
                                steps=None, baseline=baseline, batch_size=chunk)
    out = {k: v for k, v in res.items() if k not in ("target", "compare_to")}
    if steps:
        k = int(deletion_images)
        d = metrics.deletion_auc(model, images[:k], maps[:k], np.asarray(targets)[:k], steps=steps,
                                 baseline=baseline, compare_to=np.asarray(compare_to)[:k],
                                 batch_size=chunk)
        out["deletion"] = _padded(d.auc, len(maps))
        out["deletion_ref"] = _padded(d.reference_auc, len(maps))
    return out


def road_insertion_scores(model, images: torch.Tensor, maps: np.ndarray, targets, *,
                          road_fractions: Sequence[float] = (), insertion_steps: int = 0,
                          chunk: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
    """The ROAD and insertion columns per image, when asked for: ``road_morf``, ``road_lerf``
    and ``road`` (:func:`finercam.metrics.road` at ``road_fractions``, noise seeded by ``seed``)
    and ``insertion`` (:func:`finercam.metrics.insertion_auc` with ``insertion_steps``, from the
    blurred image). (N,) float64 arrays; empty when neither is asked for."""
    out: dict[str, np.ndarray] = {}
    if road_fractions:
        r = metrics.road(model, images, maps, targets, road_fractions, batch_size=chunk, seed=seed)
        out.update(road_morf=r.morf, road_lerf=r.lerf, road=r.combined)
    if insertion_steps:
        out["insertion"] = metrics.insertion_auc(model, images, maps, targets, steps=insertion_steps,
                                                 batch_size=chunk).auc
    return out


def _padded(values: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, np.nan)
    out[:len(values)] = values
    return out


def region_scores(maps: np.ndarray, masks: np.ndarray, has_region=None,
                  prefix: str = "") -> dict[str, np.ndarray]:
    """``energy``: the share of a map's energy inside its region (the energy pointing game,
    "Loc."; NaN for an all-zero map); ``pointing``: whether its maximum lies inside. ``masks``
    holds the regions of the images with ``has_region`` (default: every image); the others get
    NaN / False. ``prefix`` names another region's columns (``"disc_"``).

    >>> m = np.array([[[0.0, 1.0], [0.0, 3.0]]])
    >>> r = region_scores(m, np.array([[[False, True], [False, False]]]))
    >>> float(r["energy"][0]), bool(r["pointing"][0])
    (0.25, False)
    """
    n = len(maps)
    sel = np.arange(n) if has_region is None else np.nonzero(has_region)[0]
    energy, pointing = np.full(n, np.nan), np.zeros(n, bool)
    energy[sel] = metrics.energy_in_mask(np.maximum(maps[sel], 0), masks)
    pointing[sel] = metrics.pointing_game(maps[sel], masks)
    return {prefix + "energy": energy, prefix + "pointing": pointing}


def _explained(cams: dict, methods: Sequence[str], images, labels: np.ndarray, target: str):
    """Each method's Explanation of ``images`` and the targets: the labels, or (``target=
    "predicted"``) the first method's predictions."""
    first, *others = methods
    explained = {first: cams[first](images, targets=labels if target == "label" else None)}
    targets = labels if target == "label" else np.asarray(explained[first].targets)
    explained.update({m: cams[m](images, targets=targets) for m in others})
    return explained, targets


def score_batch(net, cams: dict, items: Sequence[Item], indices: Sequence[int],
                rows: Sequence[Setting], cfg, chunk: int, device) -> list[dict]:
    """The per-image records of one batch of readable items: every row's metrics.

    ``cfg`` gives ``methods``, ``target``, ``fractions``, ``steps`` and ``baseline``; a record is
    ``{"index", "label", "target", "compare_to", "metrics": {row name: {column key: value}}}``.
    """
    images = torch.stack([it.image for it in items]).to(device)
    labels = np.array([it.label for it in items], dtype=np.int64)
    n, _, h, w = images.shape
    explained, targets = _explained(cams, cfg.methods, images, labels, cfg.target)
    logits = np.asarray(explained[cfg.methods[0]].logits, dtype=np.float64)
    compare = metrics.nearest_logit_class(logits, targets)
    has_region = np.array([it.region is not None for it in items])
    has_parts = [is_parts(it.parts) for it in items]  # the readers' part points or trait masks
    masks = (np.stack([region_mask(it.region, h, w) for it in items if it.region is not None])
             if has_region.any() else None)
    records: list[dict[str, Any]] = [{"index": int(i), "label": int(labels[j]), "target": int(targets[j]),
                "compare_to": int(compare[j]), "metrics": {}} for j, i in enumerate(indices)]
    for row in rows:
        maps = setting_maps(explained[row.method], row)
        res = score_maps(net, images, maps, targets, compare, fractions=cfg.fractions,
                         steps=cfg.steps, baseline=cfg.baseline, chunk=chunk)
        # the noise of ROAD seeded by the batch's first index: the same on every resume and split
        res.update(road_insertion_scores(net, images, maps, targets, chunk=chunk, seed=int(indices[0]),
                                         road_fractions=getattr(cfg, "road_fractions", ()),
                                         insertion_steps=getattr(cfg, "insertion_steps", 0)))
        regional = region_scores(maps, masks, has_region) if masks is not None else {}
        # part points or trait masks (the readers'): the part scores, for images with a visible part
        parts = part_scores(maps, [it.parts for it in items]) if any(has_parts) else {}
        for j in range(n):
            records[j]["metrics"][row.name] = _image_values(res, j) | (
                _image_values(regional, j) if has_region[j] else {}) | (
                _image_values(parts, j) if parts and not np.isnan(parts["part_pointing"][j]) else {})
    return records


def _image_values(scores: dict[str, np.ndarray], j: int) -> dict[str, float | bool]:
    """Image ``j``'s value of each score, as JSON records it (a hit as a bool)."""
    return {key: bool(v[j]) if v.dtype == np.bool_ else float(v[j]) for key, v in scores.items()}
