"""The demo's numbers: explain each model x method once, then score every map kind through
:mod:`finercam.evaluation` (the same maps and scores as ``finercam evaluate``), adding only what
the demo reports itself: the paired differences Finer - baseline, the correlation of the two
maps and the energy share per part."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ... import metrics
from ...diagnose import map_correlation
from ...evaluation.scoring import region_scores, score_maps, setting_maps
from ...evaluation.tables import mean_of_defined
from ...explanation import Explanation
from ...finer import FinerCAM
from ...progress import progress_bar
from ...world.datasets import PARTS, discriminative_mask
from .plan import COLUMN_KEYS, GAMMA, MAP_KINDS, NUM_REFERENCES, SETTINGS, Model, head, map_setting, model_inputs


@dataclass
class Run:
    """One model x method over its test images: maps per kind and the nearest references."""

    exp0: Explanation       # the Explanation of the first chunk (for figures)
    maps: dict              # MAP_KINDS ("base" / "nearest" / "aggregated") -> (N, H, W)
    references: np.ndarray  # (N, T)
    logits: np.ndarray      # (N, C)


def explain(model: Model, method: str, x, labels, chunk: int, bar) -> Run:
    """Every map kind of ``method`` over ``x``, ``chunk`` images per model call (the other
    kinds come from each call's Explanation, without a model call)."""
    cam = FinerCAM(model.net, model.layer, method=method, gamma=GAMMA,
                   num_references=NUM_REFERENCES)
    parts: dict = {kind: [] for kind in MAP_KINDS}
    refs, logits, exp0 = [], [], None
    for lo in range(0, len(x), chunk):
        xb = x[lo:lo + chunk]
        exp = cam(xb, targets=torch.as_tensor(labels[lo:lo + chunk]))
        exp0 = exp0 if exp0 is not None else exp
        for kind in MAP_KINDS:
            parts[kind].append(setting_maps(exp, map_setting(kind, method)))
        refs.append(exp.references)
        logits.append(exp.logits)
        bar.update(len(xb))
    assert exp0 is not None, "explain needs at least one image"
    return Run(exp0, {k: np.concatenate(v) for k, v in parts.items()}, np.concatenate(refs),
               np.concatenate(logits))


def regions(parts: np.ndarray, labels: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """(N, H, W) ground-truth discriminative region of each image against its references."""
    return np.stack([discriminative_mask(parts[i], int(labels[i]), [int(r) for r in refs[i]])
                     for i in range(len(labels))])


def _scored_maps(model: Model, run: Run, x, batch, steps: int, n_del: int, bar) -> dict:
    """Map kind -> the per-image metrics of finercam.evaluation (deletion on the first
    ``n_del``, NaN after) with the energy share in the bird's box."""
    boxes = metrics.boxes_to_masks(batch.boxes, x.shape[-2:])
    per_map = {}
    for kind in MAP_KINDS:
        maps = run.maps[kind]
        ev = score_maps(model.net, x, maps, batch.labels, run.references[:, 0], steps=steps,
                        deletion_images=n_del)
        ev["energy"] = region_scores(maps, boxes)["energy"]
        per_map[kind] = ev
        bar.update(1)
    return per_map


def paired_difference(finer: np.ndarray, base: np.ndarray) -> dict:
    """Mean and standard error of ``finer - base`` over the images where both are defined.

    >>> paired_difference(np.array([1.0, 2.0, np.nan]), np.array([0.0, 0.0, 1.0]))
    {'mean': 1.5, 'se': 0.5, 'n': 2}
    """
    d = finer - base
    d = d[np.isfinite(d)]
    return {"mean": float(d.mean()), "se": float(d.std(ddof=1) / np.sqrt(d.size)), "n": int(d.size)}


def _empty_maps(maps: np.ndarray) -> int:
    # An all-zero map points nowhere: its energy is undefined (skipped in the means) and its
    # "top pixels" are a tie broken by index; the count says how often.
    return int(np.sum(maps.reshape(len(maps), -1).max(axis=1) <= 0))


def score(model: Model, run: Run, x, batch, steps: int, n_del: int, bar) -> dict:
    """Per setting and map kind ("base" / "finer"): the mean of every column, the paired
    difference finer - base with its standard error, the maps' correlation; and the per-part
    energy shares. RD, Loc. and the discriminative-region columns use every image; the deletion
    curve (``steps`` forwards per image and map) the first ``n_del``.
    """
    refs = run.references
    region = {"nearest": regions(batch.parts, batch.labels, refs[:, :1]),
              "aggregated": regions(batch.parts, batch.labels, refs)}
    per_map = _scored_maps(model, run, x, batch, steps, n_del, bar)
    out: dict = {}
    for setting, _, _ in SETTINGS:
        res: dict[str, Any] = {}
        per_image = {}
        for kind, map_kind in (("base", "base"), ("finer", setting)):
            maps = run.maps[map_kind]
            vals = {k: np.asarray(per_map[map_kind][k], np.float64) for k in COLUMN_KEYS[:4]}
            disc = region_scores(maps, region[setting], prefix="disc_")
            vals.update({k: np.asarray(v, np.float64) for k, v in disc.items()})
            res[kind] = {k: mean_of_defined(v) for k, v in vals.items()}
            res[kind]["empty"] = _empty_maps(maps)
            per_image[kind] = vals
        res["diff"] = {c: paired_difference(per_image["finer"][c], per_image["base"][c])
                       for c in COLUMN_KEYS}
        res["map_correlation"] = mean_of_defined(map_correlation(run.maps["base"], run.maps[setting]))
        out[setting] = res
    out["parts"] = {kind: part_energy(run.maps[kind], batch.parts) for kind in MAP_KINDS}
    return out


def part_energy(maps: np.ndarray, parts: np.ndarray) -> dict:
    """Mean share of map energy on each part's visible pixels and on the background."""
    total = maps.sum(axis=(1, 2), dtype=np.float64)
    ok = total > 0
    shares = {}
    for p, name in enumerate(PARTS):
        s = (maps * parts[:, p]).sum(axis=(1, 2), dtype=np.float64)
        shares[name] = float(np.mean(s[ok] / total[ok]))
    bird = parts.any(axis=1)
    s = (maps * ~bird).sum(axis=(1, 2), dtype=np.float64)
    shares["background"] = float(np.mean(s[ok] / total[ok]))
    return shares


def _method_inputs(models: list[Model], data: dict, bar):
    """(model, method key, its images, its batch, image count) for every model x method, the
    progress bar labelled with the pair."""
    for model in models:
        x, batch = model_inputs(model, data)
        for key, _ in model.methods:
            bar.set_postfix_str(f"{model.key} {key}")
            k = model.count(key)
            yield model, key, x[:k], batch, k


def explain_all(models: list[Model], data: dict) -> dict:
    """(model key, method) -> its :class:`Run` over the images the method covers."""
    runs: dict = {}
    total = sum(m.count(key) for m in models for key, _ in m.methods)
    with progress_bar(total=total, desc="explaining", unit="img", file=sys.stderr) as bar:
        for model, key, x, batch, k in _method_inputs(models, data, bar):
            # Score-CAM forwards every channel of every image: smaller chunks keep the bar moving.
            chunk = 16 if key == "scorecam" else 64
            runs[model.key, key] = explain(model, key, x, batch.labels[:k], chunk, bar)
    return runs


def score_all(models: list[Model], runs: dict, data: dict, steps: int) -> dict:
    """model key -> method -> the scores of :func:`score`."""
    scores: dict = {m.key: {} for m in models}
    total = sum(len(m.methods) for m in models) * len(MAP_KINDS)
    with progress_bar(total=total, desc="scoring", unit="map set", file=sys.stderr) as bar:
        for model, key, x, batch, k in _method_inputs(models, data, bar):
            scores[model.key][key] = score(model, runs[model.key, key], x, head(batch, k),
                                           steps, min(model.deletion_images, k), bar)
    return scores
