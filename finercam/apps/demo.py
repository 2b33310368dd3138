"""``finercam demo``: the spot-the-difference benchmark end to end, as a self-contained HTML report.

For the three embedded models of :mod:`finercam.world.models` (the small CNN and the small ViT on
96 x 96 renders, and the linear probe on a frozen ImageNet EfficientNet-Lite0, the paper's setting,
on the same birds rendered at 224 x 224) and the base methods Grad-CAM, Layer-CAM and Score-CAM
(not for the probe: its 1,280 channels would cost 1,280 forwards at 224 x 224 per image), the demo
explains a seeded test set of the bird world (:mod:`finercam.world.datasets`; the probe a prefix
of it) once per method (one model call; every other setting is an ``Explanation.recombine``) and
writes:

* the paper's figures: Fig. 4 panels, Fig. 7 (one image against each of its top-3 references),
  Fig. 8 (a gamma sweep), Fig. 5 (deletion curves of the target and the second class), Fig. 1
  left (sorted classifier-weight similarity);
* the Table-1-style table (deletion AUC, RD@5%, RD@10%, energy in the object box) plus two
  columns only a generated data set can give: the share of each map's energy inside the
  ground-truth discriminative region (the parts whose attributes differ between the target and
  its references) and the pointing game on that region; the single-reference (T = 1, nearest
  logit) and 3-reference (T = 3, the paper's default) settings are reported separately;
* ``results.json`` with every number of the tables.

Targets are the true labels; references are the classes with the nearest logits (the paper's
rule); masked pixels are set to 0 (black) as in the metrics' default.

    finercam demo                 # >= 200 test images, the full report
    finercam demo --quick         # a few images, every figure (what CI runs)
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..methods import METHOD_LABELS

METHODS = tuple((key, METHOD_LABELS[key]) for key in ("gradcam", "layercam", "scorecam"))
MODELS = (("cnn", "CNN"), ("vit", "ViT"), ("probe", "Probe"))
#: The side at which each model's test images are rendered (the probe was trained on 224 x 224
#: renders; the same birds rendered at 96 and upsampled put it at chance).
RENDER_SIZES = {"cnn": 96, "vit": 96, "probe": 224}
#: Why the probe has no Score-CAM rows (said in the page and in its tables).
NO_SCORECAM = "no Score-CAM: its 1,280 channels would cost 1,280 forwards at 224 x 224 per image"
GAMMA = 0.6
NUM_REFERENCES = 3
GAMMAS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
#: The Finer settings: (key in results.json, short label, title). "nearest": compared with the
#: nearest-logit class only (T = 1); "aggregated": with the NUM_REFERENCES nearest, aggregated.
SETTINGS = (("nearest", "T = 1", "single reference (T = 1, nearest logit)"),
            ("aggregated", f"T = {NUM_REFERENCES}",
             f"{NUM_REFERENCES} references (T = {NUM_REFERENCES}, aggregated, the paper's default)"))
#: The map sets of a run: the baseline and each Finer setting.
MAP_KINDS = ("base",) + tuple(key for key, _, _ in SETTINGS)
COLUMNS = (("deletion", "Del. \u2193"), ("rd@0.05", "RD@5% \u2191"), ("rd@0.1", "RD@10% \u2191"),
           ("loc", "Loc. (box) \u2191"), ("energy", "Disc. energy \u2191"),
           ("pointing", "Part PG \u2191"))
LOWER_IS_BETTER = {"deletion"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``finercam demo`` options to ``p`` (a bad one is reported as one line, exit 2).

    >>> p = argparse.ArgumentParser(prog="finercam demo")
    >>> add_arguments(p)
    >>> args = p.parse_args(["--quick", "--out", "report"])
    >>> args.quick, args.out, args.images, args.seed
    (True, 'report', None, 0)
    """
    from .explain import one_line_errors

    one_line_errors(p)
    p.add_argument("--out", default="out/demo", metavar="DIR",
                   help="report folder (default: out/demo)")
    p.add_argument("--quick", action="store_true",
                   help="a few images, every model, every figure (the CI mode)")
    p.add_argument("--images", type=int, default=None, metavar="N",
                   help="test images for the table (default 200; 16 with --quick)")
    p.add_argument("--score-images", type=int, default=None, metavar="M",
                   help="the first M of them for Score-CAM, which costs one forward per channel "
                        "(default 64; 8 with --quick)")
    p.add_argument("--seed", type=int, default=0, help="seed of the test images (default 0)")
    p.add_argument("--steps", type=int, default=None,
                   help="deletion-curve steps (default 10; 5 with --quick)")
    p.add_argument("--deletion-images", type=int, default=None, metavar="D",
                   help="the first D images get deletion curves, which cost one forward per "
                        "step (default 64; 8 with --quick)")
    p.add_argument("--probe-images", type=int, default=None, metavar="P",
                   help="the first P images, rendered at 224 x 224, for the linear probe "
                        "(default 64; 16 with --quick)")
    p.add_argument("--probe-deletion-images", type=int, default=None, metavar="Q",
                   help="the first Q of those with the probe's deletion curves (default 16; 8 "
                        "with --quick)")


@dataclass
class _Model:
    """One embedded model and the share of the run it covers (prefixes of the test images)."""

    key: str
    label: str
    net: object
    layer: str
    size: int               # the side its test images are rendered at
    images: int             # the first ``images`` test images are explained
    score_images: int       # the first of them with Score-CAM (0: no Score-CAM)
    deletion_images: int    # the first of them with deletion curves

    @property
    def methods(self) -> tuple:
        """The (key, label) of the base methods this model is explained with."""
        return tuple(m for m in METHODS if m[0] != "scorecam" or self.score_images)

    @property
    def counts(self) -> dict:
        """The prefixes, as recorded in results.json and written in the captions."""
        return {"images": self.images, "score_images": self.score_images,
                "deletion_images": self.deletion_images, "size": self.size}

    def count(self, method: str) -> int:
        """The images a method explains (Score-CAM: a prefix, one forward per channel each)."""
        return self.score_images if method == "scorecam" else self.images


@dataclass
class _Run:
    """One model x method over the whole test set: maps per setting and the nearest references."""

    exp0: object            # the Explanation of the first chunk (for figures)
    maps: dict              # MAP_KINDS ("base" / "nearest" / "aggregated") -> (N, H, W)
    references: np.ndarray  # (N, T)
    logits: np.ndarray      # (N, C)


def _classifier_weights(net) -> np.ndarray:
    from torch import nn

    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("model has no nn.Linear classifier")
    return linears[-1].weight.detach().cpu().numpy().astype(np.float64)


def _explain(model: _Model, method: str, x, labels, chunk: int, bar) -> _Run:
    import torch

    from ..finer import FinerCAM

    cam = FinerCAM(model.net, model.layer, method=method, gamma=GAMMA,
                   num_references=NUM_REFERENCES)
    parts: dict = {kind: [] for kind in MAP_KINDS}
    refs, logits, exp0 = [], [], None
    for lo in range(0, len(x), chunk):
        xb = x[lo:lo + chunk]
        exp = cam(xb, targets=torch.as_tensor(labels[lo:lo + chunk]))
        exp0 = exp0 if exp0 is not None else exp
        parts["aggregated"].append(exp.maps)
        parts["nearest"].append(exp.recombine(references=exp.references[:, :1]).maps)
        parts["base"].append(exp.baseline().maps)
        refs.append(exp.references)
        logits.append(exp.logits)
        bar.update(len(xb))
    return _Run(exp0, {k: np.concatenate(v) for k, v in parts.items()}, np.concatenate(refs),
                 np.concatenate(logits))


def _head(batch, k: int):
    """The first k images of a Batch."""
    from ..world.datasets import Batch

    return Batch(batch.images[:k], batch.labels[:k], batch.boxes[:k], batch.parts[:k])


def _regions(parts: np.ndarray, labels: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """(N, H, W) ground-truth discriminative region of each image against its references."""
    from ..world.datasets import discriminative_mask

    return np.stack([discriminative_mask(parts[i], int(labels[i]), [int(r) for r in refs[i]])
                     for i in range(len(labels))])


def _score(model: _Model, run: _Run, x, batch, steps: int, n_del: int, bar) -> dict:
    """Per setting and map kind ("base" / "finer"): the mean of every column, the paired
    difference finer - base with its standard error, and the per-part energy shares.

    RD, Loc., energy and pointing use every image; the deletion curve (``steps`` forwards per
    image and map) the first ``n_del``.
    """
    from .. import metrics

    labels, refs = batch.labels, run.references
    boxes = metrics.boxes_to_masks(batch.boxes, x.shape[-2:])
    nearest = refs[:, 0]
    region = {"nearest": _regions(batch.parts, labels, refs[:, :1]),
              "aggregated": _regions(batch.parts, labels, refs)}
    per_map = {}
    for kind in MAP_KINDS:
        maps = run.maps[kind]
        ev = metrics.evaluate_maps(model.net, x, maps, labels, compare_to=nearest, steps=None)
        ev["loc"] = metrics.energy_in_mask(maps, boxes)
        ev["deletion"] = metrics.deletion_auc(model.net, x[:n_del], maps[:n_del], labels[:n_del],
                                              steps=steps, compare_to=nearest[:n_del]).auc
        per_map[kind] = ev
        bar.update(1)
    out: dict = {}
    for setting, _, _ in SETTINGS:
        res, per_image = {}, {}
        for kind, ev in (("base", per_map["base"]), ("finer", per_map[setting])):
            maps = run.maps["base" if kind == "base" else setting]
            vals = {k: np.asarray(ev[k], np.float64) for k in ("deletion", "rd@0.05", "rd@0.1", "loc")}
            vals["energy"] = metrics.energy_in_mask(maps, region[setting])
            vals["pointing"] = metrics.pointing_game(maps, region[setting]).astype(np.float64)
            res[kind] = {k: float(np.nanmean(v)) for k, v in vals.items()}
            # An all-zero map points nowhere: its energy is undefined (skipped in the means)
            # and its "top pixels" are a tie broken by index; the count says how often.
            res[kind]["empty"] = int(np.sum(maps.reshape(len(maps), -1).max(axis=1) <= 0))
            per_image[kind] = vals
        diff = {}
        for c, _ in COLUMNS:
            d = per_image["finer"][c] - per_image["base"][c]
            d = d[np.isfinite(d)]
            diff[c] = {"mean": float(d.mean()), "se": float(d.std(ddof=1) / np.sqrt(d.size)),
                       "n": int(d.size)}
        res["diff"] = diff
        res["map_correlation"] = mean_map_correlation(run.maps["base"], run.maps[setting])
        out[setting] = res
    out["parts"] = {kind: _part_energy(run.maps[kind], batch.parts) for kind in MAP_KINDS}
    return out


def mean_map_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over images of the Pearson correlation of two stacks of maps ``(N, H, W)``.

    For image :math:`i`, over its pixels :math:`p`,
    :math:`r_i = \\sum_p \\tilde a_p \\tilde b_p / \\sqrt{\\sum_p \\tilde a_p^2 \\sum_p \\tilde b_p^2}`
    with :math:`\\tilde a = a - \\bar a`, :math:`\\tilde b = b - \\bar b`; images where either
    map is constant are left out (NaN when all are). The demo uses it for how much Finer changed
    a map, benchmarks/why_finer.py for how alike the target's and the reference's maps are.

    >>> a = np.array([[[0.0, 1.0], [2.0, 3.0]], [[1.0, 1.0], [1.0, 1.0]]])
    >>> mean_map_correlation(a, 2 * a + 1), mean_map_correlation(a, -a)
    (1.0, -1.0)
    """
    from ..diagnose import map_correlation

    r = map_correlation(a, b)
    ok = np.isfinite(r)
    return float(r[ok].mean()) if ok.any() else float("nan")


def _part_energy(maps: np.ndarray, parts: np.ndarray) -> dict:
    """Mean share of map energy on each part's visible pixels and on the background."""
    from ..world.datasets import PARTS

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


# --- figures -------------------------------------------------------------------------------------


def _example_of(batch, cls: int, avoid: int = -1) -> np.ndarray:
    idx = [i for i in np.nonzero(batch.labels == cls)[0] if i != avoid]
    return batch.images[idx[0]] if idx else np.zeros_like(batch.images[0])


def _pick(batch, run: _Run, n: int, limit: int) -> list[int]:
    """Correctly classified images among the first ``limit``, one per family first."""
    from ..world.datasets import CLASS_FAMILY

    pred = run.logits.argmax(1)
    chunk = min(len(run.exp0.targets), limit)
    good = [i for i in range(chunk) if pred[i] == batch.labels[i]] or list(range(chunk))
    picked, fams = [], set()
    for i in good:
        f = CLASS_FAMILY[int(batch.labels[i])]
        if f not in fams:
            picked.append(i)
            fams.add(f)
        if len(picked) == n:
            return picked
    return (picked + [i for i in good if i not in picked])[:n]


def _name(c: int) -> str:
    from ..world.datasets import CLASS_NAMES

    return CLASS_NAMES[int(c)]


def _fig4(model: _Model, runs: dict, batch, rows: list[int]):
    from . import viz

    cells, maps, titles, labels = [], [], [], []
    for i in rows:
        img = batch.images[i]
        ref = int(runs["gradcam"].references[i, 0])
        row, row_maps = [img, _example_of(batch, ref, i)], [None, None]
        tit = ["image", f"similar: {_name(ref)}"]
        for key, label in model.methods:
            pair = [runs[key].maps["base"][i], runs[key].maps["aggregated"][i]]
            row += [viz.overlay(img, m) for m in pair]
            row_maps += pair
            tit += [label, f"Finer-{label}"]
        cells.append(row)
        maps.append(row_maps)
        titles.append(tit)
        labels.append(_name(batch.labels[i]))
    fig = viz.panel_grid(cells, titles=titles, row_labels=labels, cell_size=1.5,
                         suptitle=f"{model.label}: baseline and Finer-CAM (\u03b3 = {GAMMA}, "
                                  f"T = {NUM_REFERENCES}), as the paper's Fig. 4")
    return _finish_overlays(fig, maps)


def _finish_overlays(fig, maps: list[list]):
    """Write "empty map" on each overlay whose map the ReLU emptied (an all-zero map would
    draw as a uniform tint) and add the colour scale; ``maps`` mirrors the figure's grid of
    axes (row-major), None where a cell is not a map. Returns ``fig``."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    ncols = max(len(row) for row in maps)
    for r, row in enumerate(maps):
        for c, m in enumerate(row):
            if m is not None and not np.max(m) > 0:
                fig.axes[r * ncols + c].text(
                    0.5, 0.5, "empty map", transform=fig.axes[r * ncols + c].transAxes,
                    ha="center", va="center", fontsize=8, color="white",
                    bbox={"facecolor": "black", "alpha": 0.6, "pad": 2})
    bar = fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), "jet"), ax=fig.axes, shrink=0.6,
                       fraction=0.015, pad=0.01)
    bar.set_label("map value (min-max per map)", fontsize=7)
    bar.ax.tick_params(labelsize=7)
    return fig


def _fig7(model: _Model, run: _Run, batch, i: int):
    from . import viz
    from ..world.datasets import differing_parts

    exp, img, c = run.exp0, batch.images[i], int(batch.labels[i])
    refs = [int(r) for r in exp.references[i]]
    base, aggregated = exp.baseline().maps[i], exp.maps[i]
    maps_row = [img, viz.overlay(img, base)]
    maps_grid = [[None, base], [None, aggregated], [None, None]]
    # the paper's Fig. 7 heads the baseline's column "None"
    maps_titles = [_name(c), "no reference (Grad-CAM)"]
    truth_row = [None, viz.overlay(img, aggregated)]
    truth_titles = [None, f"all {len(refs)} (aggregated)"]
    class_row = [None, None]
    class_titles = [None, None]
    per_ref = np.asarray(exp.references).copy()
    for t, r in enumerate(refs):
        per_ref[:, 0] = exp.references[:, t]
        m = exp.recombine(references=per_ref[:, :1]).maps[i]
        maps_row.append(viz.overlay(img, m))
        maps_grid[0].append(m)
        maps_grid[1].append(None)
        maps_grid[2].append(None)
        maps_titles.append(f"vs {_name(r)}")
        region = _regions(batch.parts[i:i + 1], batch.labels[i:i + 1], np.array([[r]]))[0]
        # The region in cyan over a dimmed image: small parts (beak, eye) must stay visible.
        base_img = viz.to_image(img)
        cyan = np.array([0.0, 1.0, 1.0], np.float32)
        truth_row.append(np.where(region[..., None], 0.35 * base_img + 0.65 * cyan,
                                  0.35 * base_img))
        truth_titles.append("differs: " + ", ".join(differing_parts(c, r)))
        class_row.append(_example_of(batch, r, i))
        class_titles.append(_name(r))
    fig = viz.panel_grid([maps_row, truth_row, class_row],
                         titles=[maps_titles, truth_titles, class_titles],
                         row_labels=["Finer-Grad-CAM", "ground truth", "reference class"],
                         cell_size=1.7, suptitle=f"{model.label}: one image against each of its "
                         "top-3 references (paper's Fig. 7)")
    return _finish_overlays(fig, maps_grid)


def _fig8(model: _Model, run: _Run, batch, rows: list[int]):
    from . import viz

    exp = run.exp0
    nearest = exp.references[:, :1]
    sweep = [exp.recombine(gamma=g, references=nearest).maps for g in GAMMAS]  # no model call
    cells, maps, titles, labels = [], [], [], []
    for i in rows:
        img = batch.images[i]
        cells.append([img, _example_of(batch, int(nearest[i, 0]), i)] +
                     [viz.overlay(img, s[i]) for s in sweep])
        maps.append([None, None] + [s[i] for s in sweep])
        titles.append(["image", f"vs {_name(nearest[i, 0])}"] +
                      [f"\u03b3 = {g:.1f}" for g in GAMMAS])
        labels.append(_name(batch.labels[i]))
    fig = viz.panel_grid(cells, titles=titles, row_labels=labels, cell_size=1.5,
                         suptitle=f"{model.label}: comparison strength \u03b3 from 0 (Grad-CAM) "
                         "to 1, one model call (paper's Fig. 8)")
    return _finish_overlays(fig, maps)


def _fig5(model: _Model, run: _Run, x, batch, rows: list[int], steps: int):
    from matplotlib.figure import Figure

    from .. import metrics
    from . import viz

    idx = np.array(rows)
    exp = run.exp0
    second = exp.references[idx, 0]
    fig = Figure(figsize=(13.5, 2.5 * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), 6, squeeze=False,
                        gridspec_kw={"width_ratios": [1, 1, 1, 1.5, 1, 1.5]})
    curves = {}
    for kind, maps in (("Grad-CAM", exp.baseline().maps[idx]),
                       ("Finer-Grad-CAM", exp.recombine(references=exp.references[:, :1]).maps[idx])):
        curves[kind] = (maps, metrics.deletion_auc(model.net, x[idx], maps, batch.labels[idx],
                                                   steps=steps, compare_to=second))
    for r, i in enumerate(rows):
        img = batch.images[i]
        viz.draw_image(axes[r][0], img, _name(batch.labels[i]))
        viz.draw_image(axes[r][1], _example_of(batch, int(second[r]), i),
                       f"2nd: {_name(second[r])}")
        for j, (kind, (maps, d)) in enumerate(curves.items()):
            viz.draw_image(axes[r][2 + 2 * j], viz.overlay(img, maps[r]), kind)
            gap = float(np.trapezoid((d.curve[r] - d.reference_curve[r])[d.fractions <= 0.2],
                                     d.fractions[d.fractions <= 0.2]))
            viz.deletion_curves(d.fractions, d.curve[r], d.reference_curve[r], upto=0.2,
                                labels=("target", "2nd class"), ax=axes[r][3 + 2 * j],
                                title=f"{kind}: gap area to 20% = {gap:.3f}")
    fig.suptitle(f"{model.label}: deletion curves of the target and the second class; shaded: "
                 "their gap while the top 20% are deleted (paper's Fig. 5)", fontsize=10)
    maps = [[None, None, curves["Grad-CAM"][0][r], None, curves["Finer-Grad-CAM"][0][r], None]
            for r in range(len(rows))]
    return _finish_overlays(fig, maps)


# --- tables --------------------------------------------------------------------------------------


def _row_labels(counts: dict) -> dict:
    """Method key -> row label; ``counts``: a model's prefixes (:attr:`_Model.counts`)."""
    labels = dict(METHODS)
    if 0 < counts["score_images"] < counts["images"]:
        labels["scorecam"] += f" ({counts['score_images']} images)"
    return labels


def _subsets(counts: dict) -> str:
    deletion = f"Del. over the first {min(counts['deletion_images'], counts['images'])}"
    if not counts["score_images"]:
        return f"{deletion}; {NO_SCORECAM}"
    return f"{deletion}, Score-CAM over the first {counts['score_images']}"


def _methods_scored(scores: dict) -> tuple:
    """The (key, label) of METHODS that a model's scores cover."""
    return tuple(m for m in METHODS if m[0] in scores)


def _table_rows(scores: dict, setting: str, labels: dict):
    rows, best = [], []
    for m, (key, _) in enumerate(_methods_scored(scores)):
        s = scores[key][setting]
        for j, kind in enumerate(("base", "finer")):
            rows.append([labels[key] if kind == "base" else "+ Finer"] +
                        [round(s[kind][c], 3) + 0.0 for c, _ in COLUMNS] + [s[kind]["empty"]])
        for col, (c, _) in enumerate(COLUMNS, start=1):
            b, f = round(s["base"][c], 3), round(s["finer"][c], 3)
            if b == f:
                continue
            win = (f < b) if c in LOWER_IS_BETTER else (f > b)
            best.append((2 * m + (1 if win else 0), col))
    return rows, best


def _diff_rows(scores: dict, labels: dict) -> list:
    rows = []
    for key, _ in _methods_scored(scores):
        for setting, short, _ in SETTINGS:
            d = scores[key][setting]["diff"]
            rows.append([labels[key], short] +
                        [f"{d[c]['mean']:+.3f} \u00b1 {d[c]['se']:.3f}" for c, _ in COLUMNS] +
                        [str(d["loc"]["n"]), f"{scores[key][setting]['map_correlation']:.2f}"])
    return rows


def _markdown(scores_by_model: dict, models: list[_Model]) -> str:
    lines = []
    for model in models:
        counts = model.counts
        for setting, _, title in SETTINGS:
            lines.append(f"**{model.label}, {title}**, {counts['images']} test images "
                         f"{_rendered(model)}({_subsets(counts)})\n")
            lines.append("| method | " + " | ".join(h for _, h in COLUMNS) + " | empty maps |")
            lines.append("|---|" + "---:|" * (len(COLUMNS) + 1))
            rows, best = _table_rows(scores_by_model[model.key], setting, _row_labels(counts))
            bold = set(best)
            for i, row in enumerate(rows):
                cells = [row[0]] + [(f"**{v:.3f}**" if (i, j) in bold else f"{v:.3f}")
                                    for j, v in enumerate(row[1:-1], start=1)] + [str(row[-1])]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
        lines.append(f"**{model.label}: Finer minus baseline**, paired, mean \u00b1 standard "
                     "error\n")
        lines.append("| method | setting | " + " | ".join(h for _, h in COLUMNS) +
                     " | pairs | map corr. |")
        lines.append("|---|---|" + "---:|" * (len(COLUMNS) + 2))
        for row in _diff_rows(scores_by_model[model.key], _row_labels(counts)):
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


# --- the command ---------------------------------------------------------------------------------


def _load_models(plan: "_Plan") -> list[_Model]:
    """The embedded models in eval mode, each with its render size and image prefixes."""
    from ..world import models

    out = []
    for key, label in MODELS:
        net = models.load(key)
        net.eval()
        if key == "probe":
            counts = (plan.probe_images, 0, plan.probe_deletion_images)
        else:
            counts = (plan.images, plan.score_images, plan.deletion_images)
        out.append(_Model(key, label, net, net.default_target_layer, RENDER_SIZES[key], *counts))
    return out


def _render(models: list[_Model], seed: int) -> dict:
    """Render size -> (x, Batch) of the first test images, as many as the models at that size
    need. The labels depend on the index only, so every size shows the same species in order."""
    import torch

    from ..world import datasets

    data = {}
    for size in sorted({m.size for m in models}):
        n = max(m.images for m in models if m.size == size)
        batch = datasets.generate(n, seed=seed, split="test", size=size)
        data[size] = (torch.from_numpy(batch.images), batch)
    return data


def _inputs(model: _Model, data: dict):
    """(x, Batch) of the test images a model covers, at its render size."""
    x, batch = data[model.size]
    return x[:model.images], _head(batch, model.images)


def _rendered(model: _Model) -> str:
    """How a model's images differ from the others' in a caption ('' at the default 96)."""
    return "" if model.size == 96 else f"rendered at {model.size} x {model.size} "


@dataclass
class _Plan:
    """How many images each part of the demo covers, checked against each other."""

    images: int            # the table's test images
    score_images: int      # the first of them explained with Score-CAM
    deletion_images: int   # the first of them with deletion curves
    steps: int             # deletion-curve steps
    probe_images: int      # the first of them explained with the probe (rendered at 224)
    probe_deletion_images: int  # the first of those with the probe's deletion curves

    @classmethod
    def from_args(cls, args) -> "_Plan":
        quick = bool(args.quick)

        def chosen(value, quick_default, full_default):
            return value if value is not None else (quick_default if quick else full_default)

        plan = cls(chosen(args.images, 16, 200), chosen(args.score_images, 8, 64),
                   chosen(args.deletion_images, 8, 64), chosen(args.steps, 5, 10),
                   chosen(getattr(args, "probe_images", None), 16, 64),
                   chosen(getattr(args, "probe_deletion_images", None), 8, 16))
        if plan.images < 16:
            raise ValueError(f"--images must be >= 16 (one image per class), got {plan.images}")
        if not 1 <= plan.score_images <= plan.images:
            raise ValueError(f"--score-images must be in [1, --images], got {plan.score_images}")
        if not 1 <= plan.deletion_images <= plan.images:
            raise ValueError(f"--deletion-images must be in [1, --images], got {plan.deletion_images}")
        if plan.steps < 2:
            raise ValueError(f"--steps must be >= 2, got {plan.steps}")
        if not 1 <= plan.probe_images <= plan.images:
            raise ValueError(f"--probe-images must be in [1, --images], got {plan.probe_images}")
        if not 1 <= plan.probe_deletion_images <= plan.probe_images:
            raise ValueError("--probe-deletion-images must be in [1, --probe-images], got "
                             f"{plan.probe_deletion_images}")
        return plan


def _explain_all(models: list[_Model], data: dict) -> dict:
    """(model key, method) -> its _Run over the images the method covers."""
    import sys

    from ..progress import progress_bar

    runs: dict = {}
    total = sum(m.count(key) for m in models for key, _ in m.methods)
    with progress_bar(total=total, desc="explaining", unit="img", file=sys.stderr) as bar:
        for model, key, x, batch, k in _method_inputs(models, data, bar):
            # Score-CAM forwards every channel of every image: smaller chunks keep the bar moving.
            chunk = 16 if key == "scorecam" else 64
            runs[model.key, key] = _explain(model, key, x, batch.labels[:k], chunk, bar)
    return runs


def _method_inputs(models: list[_Model], data: dict, bar):
    """(model, method key, its images, its batch, image count) for every model x method, the
    progress bar labelled with the pair."""
    for model in models:
        x, batch = _inputs(model, data)
        for key, _ in model.methods:
            bar.set_postfix_str(f"{model.key} {key}")
            k = model.count(key)
            yield model, key, x[:k], batch, k


def _score_all(models: list[_Model], runs: dict, data: dict, steps: int) -> dict:
    """model key -> method -> the scores of :func:`_score`."""
    import sys

    from ..progress import progress_bar

    scores: dict = {m.key: {} for m in models}
    total = sum(len(m.methods) for m in models) * len(MAP_KINDS)
    with progress_bar(total=total, desc="scoring", unit="map set", file=sys.stderr) as bar:
        for model, key, x, batch, k in _method_inputs(models, data, bar):
            scores[model.key][key] = _score(model, runs[model.key, key], x, _head(batch, k),
                                            steps, min(model.deletion_images, k), bar)
    return scores


def _model_facts(model: _Model, run0: _Run, batch) -> tuple[float, np.ndarray]:
    """(accuracy on the test images, share of same-family references by rank)."""
    from ..world.datasets import CLASS_FAMILY

    acc = float(np.mean(run0.logits.argmax(1) == batch.labels))
    fam = np.array([[CLASS_FAMILY[int(r)] == CLASS_FAMILY[int(c)] for r in rr]
                    for rr, c in zip(run0.references, batch.labels)])
    return acc, fam.mean(0)


def _model_figures(report, model: _Model, runs: dict, x, batch, rows: list[int], bar) -> None:
    """The paper's Fig. 4, 7, 8 and 5 for one model."""
    run0 = runs[model.key, "gradcam"]
    report.figure(_fig4(model, {k: runs[model.key, k] for k, _ in model.methods}, batch, rows),
                  f"{model.key}-fig4",
                  f"Baseline and Finer maps for {('', 'one', 'two', 'three')[len(model.methods)]} "
                  "base methods.")
    bar.update(1)
    report.figure(_fig7(model, run0, batch, rows[0]), f"{model.key}-fig7",
                  "Finer-Grad-CAM against each reference (top row); the ground-truth parts "
                  "that differ (middle row); an image of each reference class (bottom).")
    bar.update(1)
    report.figure(_fig8(model, run0, batch, rows[:2]), f"{model.key}-fig8",
                  "Gamma sweep against the nearest reference, from one model call.")
    bar.update(1)
    report.figure(_fig5(model, run0, x, batch, rows[:2], 20), f"{model.key}-fig5",
                  "Deletion curves: a map that finds what separates the two classes "
                  "closes their gap quickly (small shaded area).")
    bar.update(1)


def _explorer_view(report, model: _Model, x, batch, rows: list[int]) -> None:
    """The interactive view (finercam.explorer) of a few test images of one model: Finer-Grad-CAM
    at the demo's settings, recombined in the browser (one more model call, for these images)."""
    import torch

    from ..explorer import write_html
    from ..finer import FinerCAM
    from ..world.datasets import CLASS_NAMES

    cam = FinerCAM(model.net, model.layer, method="gradcam", gamma=GAMMA, num_references=NUM_REFERENCES)
    exp = cam(x[rows], targets=torch.as_tensor(batch.labels[rows]))
    name = f"{model.key}-explore.html"
    write_html(exp, x[rows], report.out_dir / name, class_names=list(CLASS_NAMES),
               title=f"finercam demo: {model.label}, Finer-Grad-CAM")
    report.embed(name, f"{model.label}: interactive view of {len(rows)} test images (gamma slider, "
                       "reference toggles by class name, aggregation; no model call in the browser)")


def _model_tables(report, model: _Model, scores: dict, meta: dict) -> None:
    """The Table-1-style tables, the paired differences and the part shares of one model."""
    counts = model.counts
    labels = _row_labels(counts)
    report.definitions(_column_definitions(meta, model))
    for setting, _, title in SETTINGS:
        rows, best = _table_rows(scores, setting, labels)
        report.table(rows, ["method"] + [h for _, h in COLUMNS] + ["empty maps"], best=best,
                     caption=f"{model.label}, {title}; {counts['images']} images "
                     f"{_rendered(model)}({_subsets(counts)})."
                     " Bold: the better of baseline and Finer where they differ at 3 decimals.")
    report.table(_diff_rows(scores, labels),
                 ["method", "setting"] + [h for _, h in COLUMNS] + ["pairs", "map corr."],
                 caption=f"{model.label}: Finer minus baseline, paired over the same "
                 "images, mean \u00b1 standard error (for Del. lower is better); pairs: "
                 "images where neither map is empty (Del.: the deletion prefix); map "
                 "corr.: mean Pearson correlation of the baseline and Finer maps.")
    parts = scores["gradcam"]["parts"]
    names = list(parts["base"])
    kinds = {"base": "Grad-CAM"} | {key: f"Finer, {short}" for key, short, _ in SETTINGS}
    report.table([[label] + [parts[k][p] for p in names] for k, label in kinds.items()],
                 ["Grad-CAM map"] + names,
                 caption=f"{model.label}: mean share of map energy on each part "
                 f"({counts['images']} images).")


def _model_section(report, model: _Model, runs: dict, scores: dict, data: dict, meta: dict,
                   bar) -> None:
    """One model's heading, facts, figures and tables; records its facts in ``meta``."""
    x, batch = _inputs(model, data)
    run0 = runs[model.key, "gradcam"]
    acc, same_family = _model_facts(model, run0, batch)
    meta["accuracy"][model.key] = acc
    meta["same_family_references"][model.key] = same_family.tolist()
    meta["models"][model.key] = model.counts
    report.heading(f"{model.label} (layer {model.layer}, test accuracy "
                   f"{100 * acc:.1f}% on these images)")
    if model.key == "probe":
        report.text(PROBE_TEXT.format(n=model.images, d=min(model.deletion_images, model.images)))
    report.text("Share of references from the target's own family, by rank: " +
                ", ".join(f"#{t + 1}: {100 * v:.0f}%" for t, v in enumerate(same_family)))
    rows = _pick(batch, run0, 3, model.score_images or model.images)
    _model_figures(report, model, runs, x, batch, rows, bar)
    _explorer_view(report, model, x, batch, rows)
    _model_tables(report, model, scores[model.key], meta)


def _similarity_section(report, models: list[_Model], meta: dict) -> None:
    from . import viz

    curves = {m.label: viz.similarity_curve(_classifier_weights(m.net)) for m in models}
    meta["weight_similarity_top3"] = {k: [round(float(v), 4) for v in c[0][:3]]
                                      for k, c in curves.items()}
    report.heading("Classifier-weight similarity")
    report.figure(viz.plot_similarity_curve(
        curves, title="sorted cosine similarity of classifier weights"), "fig1-similarity",
        "Mean over classes of the sorted similarity to the other classes, with its std "
        "band (paper's Fig. 1 left; the self-similarity is 0 after subtracting 1).")


WHAT_FINER_SHOWS = (
    "Finer-CAM explains what sets a class apart from the classes the model finds most similar. "
    "Grad-CAM follows the gradient of the target's logit y_c; Finer-CAM follows y_c - \u03b3 y_d, "
    "the target minus its references d (the classes with the nearest logits), so the evidence "
    "the target shares with its look-alikes cancels and what differs remains (paper, Eq. 7-8). "
    "The bird world makes this checkable: look-alike species differ on a few named parts "
    "(beak, crest, wing, ...), and the masks of those parts are the ground-truth discriminative "
    "region that the Disc. energy and Part PG columns score.")


PROBE_TEXT = (
    "The paper's setting: one linear layer (1,280 x 16) on the average-pooled last feature map of "
    "a frozen ImageNet EfficientNet-Lite0 (65.2 % on 1,024 fresh test images; docs/benchmark.md). "
    "Its birds are the same species in the same order, rendered at 224 x 224 (at 96 x 96 "
    "upsampled it is at chance). An EfficientNet forward at 224 costs tens of milliseconds per "
    "image on a CPU, so the probe covers the first {n} test images, deletion curves the first {d}, "
    "and it has " + NO_SCORECAM + ". Its maps live on a 7 x 7 grid.")


def _change(diff: dict) -> str:
    """A paired difference as a word and its numbers: up / down beyond two standard errors."""
    m, se = diff["mean"], diff["se"]
    word = "up" if m > 2 * se else "down" if m < -2 * se else "no change"
    return f"{word} ({m:+.3f} \u00b1 {se:.3f})"


def _finding(scores: dict, models: list[_Model]) -> str:
    """The run's main finding, from its paired differences with one reference: where Finer moves
    the box energy beyond two standard errors, and how far the maps move elsewhere."""
    up, down, same = [], [], []
    for model in models:
        for key, label in model.methods:
            d = scores[model.key][key]["nearest"]["diff"]["loc"]
            corr = scores[model.key][key]["nearest"]["map_correlation"]
            name = f"{model.label} {label} ({d['mean']:+.3f} \u00b1 {d['se']:.3f})"
            (up if d["mean"] > 2 * d["se"] else down if d["mean"] < -2 * d["se"]
             else same).append((name, corr))

    def names(group):
        return ", ".join(n for n, _ in group) or "none"

    text = (f"Main finding of this run (one reference, Finer minus baseline over the same images): "
            f"Finer moves more of the map's energy into the bird's box for {names(up)}; less for "
            f"{names(down)}; no difference beyond two standard errors for {names(same)}.")
    for model in models:
        corr = [scores[model.key][key]["nearest"]["map_correlation"] for key, _ in model.methods]
        text += (f" The {model.label}'s Finer maps correlate {min(corr):.2f} to {max(corr):.2f} "
                 "with its baseline maps.")
    return text + (" docs/benchmark.md reads the full run method by method and shows that a "
                   "gain of the shipped ViT is one trained model's, not the ViT's: other "
                   "checkpoints of the same architecture range from losses to gains.")


def _column_definitions(meta: dict, model: _Model) -> list[tuple[str, str]]:
    """What each column of one model's tables means, written where its tables appear."""
    covered = (f"; {NO_SCORECAM}" if not model.score_images else
               f"; Score-CAM rows: the first {model.score_images}")
    return [
        ("images", f"the {model.label}'s first {model.images} test images"
         f"{', rendered at %d x %d' % (model.size, model.size) if model.size != 96 else ''}"
         f"{covered}."),
        ("Del. \u2193", f"deletion AUC: the target's probability as the map's top pixels are set "
         f"to 0 in {meta['steps']} steps, area under that curve, over the first "
         f"{min(model.deletion_images, model.images)} images; lower is better (the map found "
         "the evidence)."),
        ("RD@5%, RD@10%", "relative confidence drop (paper, Eq. 10) after deleting the map's top "
         "5 % / 10 % of pixels: the target's probability drop minus the nearest reference's, "
         "(p_c - p*_c) - (p_d - p*_d). Each drop lies in [-1, 1], so RD lies in [-2, 2]; it "
         "exceeds 1 when the deletion takes most of the target's probability and the reference "
         "gains."),
        ("Loc. (box)", "the paper's energy pointing game: the share of the map's energy inside "
         "the bird's bounding box."),
        ("Disc. energy", "the share of the map's energy inside the ground-truth discriminative "
         "region: the visible parts whose attributes differ between the target and its "
         "reference(s)."),
        ("Part PG", "pointing game on that region: the share of maps whose maximum lies in it."),
        ("empty maps", "maps the ReLU emptied (zero everywhere, marked \"empty map\" in the "
         "figures); their energy is undefined and left out of the means."),
    ]


def _setup_text(plan: _Plan, seed: int) -> str:
    return (f"{plan.images} test images of the bird world (seed {seed}), 16 species in 4 "
            "families; the three embedded models: the CNN and the ViT on 96 x 96 renders, the "
            f"linear probe on the first {plan.probe_images} of the same birds rendered at 224 x 224 "
            f"(deletion curves on its first {plan.probe_deletion_images}; {NO_SCORECAM}); "
            f"gamma = {GAMMA}; references = the classes with the "
            "nearest logits to the true class. Baseline maps and every Finer setting come from one "
            "model call per method (Explanation.recombine). Masked pixels are set to 0. Deletion "
            f"curves ({plan.steps} steps) cover the first {plan.deletion_images} images and "
            f"Score-CAM (one forward per channel and image) the first {plan.score_images} for the "
            "CNN and the ViT: like the probe's, these are balanced prefixes (labels cycle through "
            "the 16 classes); every other column covers all of a model's images.")


def _write_report(args, plan: _Plan, models, runs, scores, data: dict, meta: dict) -> Path:
    """The HTML report (figures written as they are made), results.json and tables.md."""
    import sys

    from ..progress import progress_bar
    from .report import Report
    from .zeroshot_section import add_section  # the tiny dual encoder's section (issue 6)

    out = Path(args.out)
    report = Report(out, "finercam demo: Finer-CAM on the spot-the-difference bird world")
    with progress_bar(total=len(models) * 4, desc="figures", unit="fig", file=sys.stderr) as bar:
        report.heading("What Finer-CAM shows, and what this run found")
        report.text(WHAT_FINER_SHOWS)
        report.text(_finding(scores, models), highlight=True)
        report.text(_setup_text(plan, args.seed))
        meta["accuracy"], meta["same_family_references"], meta["models"] = {}, {}, {}
        for model in models:
            _model_section(report, model, runs, scores, data, meta, bar)
    _similarity_section(report, models, meta)
    meta["zeroshot"] = add_section(report, n=16 if args.quick else 128, seed=args.seed,
                                   classifier=models[0].net, target_layer=models[0].layer,
                                   classifier_label=models[0].label)
    meta["seconds"] = round(time.perf_counter() - meta.pop("_t0"), 1)
    report.heading("Reproduce")
    report.code("finercam demo" + (" --quick" if args.quick else "") +
                f"  # {meta['seconds']} s, finercam {meta['finercam']}, torch {meta['torch']}")
    (out / "results.json").write_text(json.dumps({"meta": meta, "scores": scores}, indent=1))
    (out / "tables.md").write_text(_markdown(scores, models))
    return report.write()


def run(args) -> int:
    """Build the demo report in ``args.out`` (options of :func:`add_arguments`); returns 0.

    Explains the test images with the three embedded models, measures the Table-1-style columns
    and writes every figure and the table as an HTML report. It takes seconds with ``--quick``
    and minutes without, so the example only prepares the arguments:

    >>> p = argparse.ArgumentParser(prog="finercam demo")
    >>> add_arguments(p)
    >>> args = p.parse_args(["--quick"])
    >>> callable(run), args.out
    (True, 'out/demo')
    """
    import torch

    from .. import __version__

    t0 = time.perf_counter()
    plan = _Plan.from_args(args)
    models = _load_models(plan)
    data = _render(models, args.seed)
    runs = _explain_all(models, data)
    scores = _score_all(models, runs, data, plan.steps)
    meta = {"images": plan.images, "score_images": plan.score_images,
            "deletion_images": plan.deletion_images, "seed": args.seed, "steps": plan.steps,
            "probe_images": plan.probe_images, "probe_deletion_images": plan.probe_deletion_images,
            "gamma": GAMMA, "num_references": NUM_REFERENCES, "quick": bool(args.quick),
            "finercam": __version__, "torch": torch.__version__, "_t0": t0}
    path = _write_report(args, plan, models, runs, scores, data, meta)
    print(f"report: {path.resolve()}")
    return 0
