"""The demo's figures: the paper's Fig. 4, 5, 7, 8 and Fig. 1 left for each model, and the
interactive view of a few test images."""
from __future__ import annotations

import numpy as np
import torch
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from ... import metrics, viz
from ...explorer import write_html
from ...finer import FinerCAM
from ...world.datasets import CLASS_FAMILY, CLASS_NAMES, differing_parts
from .compute import Run, regions
from .plan import GAMMA, GAMMAS, NUM_REFERENCES, Model, classifier_weights


def _example_of(batch, cls: int, avoid: int = -1) -> np.ndarray:
    """An image of class ``cls`` other than image ``avoid`` (black if there is none)."""
    idx = [i for i in np.nonzero(batch.labels == cls)[0] if i != avoid]
    return batch.images[idx[0]] if idx else np.zeros_like(batch.images[0])


def pick(batch, run: Run, n: int, limit: int) -> list[int]:
    """Correctly classified images among the first ``limit``, one per family first."""
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
    return CLASS_NAMES[int(c)]


def _fig4(model: Model, runs: dict, batch, rows: list[int]):
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
    return finish_overlays(fig, maps)


def finish_overlays(fig, maps: list[list]):
    """Write "empty map" on each overlay whose map the ReLU emptied (an all-zero map would
    draw as a uniform tint) and add the colour scale; ``maps`` mirrors the figure's grid of
    axes (row-major), None where a cell is not a map. Returns ``fig``."""

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


def _fig7(model: Model, run: Run, batch, i: int):
    exp, img, c = run.exp0, batch.images[i], int(batch.labels[i])
    refs = [int(r) for r in exp.references[i]]
    base, aggregated = exp.baseline().maps[i], exp.maps[i]
    maps_row = [img, viz.overlay(img, base)]
    maps_grid = [[None, base], [None, aggregated], [None, None]]
    # the paper's Fig. 7 heads the baseline's column "None"
    maps_titles = [_name(c), "no reference (Grad-CAM)"]
    truth_row = [None, viz.overlay(img, aggregated)]
    truth_titles = [None, f"all {len(refs)} (aggregated)"]
    class_row: list = [None, None]
    class_titles: list = [None, None]
    per_ref = np.asarray(exp.references).copy()
    for t, r in enumerate(refs):
        per_ref[:, 0] = exp.references[:, t]
        m = exp.recombine(references=per_ref[:, :1]).maps[i]
        maps_row.append(viz.overlay(img, m))
        maps_grid[0].append(m)
        maps_grid[1].append(None)
        maps_grid[2].append(None)
        maps_titles.append(f"vs {_name(r)}")
        region = regions(batch.parts[i:i + 1], batch.labels[i:i + 1], np.array([[r]]))[0]
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
    return finish_overlays(fig, maps_grid)


def _fig8(model: Model, run: Run, batch, rows: list[int]):
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
    return finish_overlays(fig, maps)


def _fig5(model: Model, run: Run, x, batch, rows: list[int], steps: int):
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
    return finish_overlays(fig, maps)


def model_figures(report, model: Model, runs: dict, x, batch, rows: list[int], bar) -> None:
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


def explorer_view(report, model: Model, x, batch, rows: list[int]) -> None:
    """The interactive view (finercam.explorer) of a few test images of one model: Finer-Grad-CAM
    at the demo's settings, recombined in the browser (one more model call, for these images)."""
    cam = FinerCAM(model.net, model.layer, method="gradcam", gamma=GAMMA, num_references=NUM_REFERENCES)
    exp = cam(x[rows], targets=torch.as_tensor(batch.labels[rows]))
    name = f"{model.key}-explore.html"
    write_html(exp, x[rows], report.out_dir / name, class_names=list(CLASS_NAMES),
               title=f"finercam demo: {model.label}, Finer-Grad-CAM")
    report.embed(name, f"{model.label}: interactive view of {len(rows)} test images (gamma slider, "
                       "reference toggles by class name, aggregation; no model call in the browser)")


def similarity_section(report, models: list[Model], meta: dict) -> None:
    """Fig. 1 left: the sorted similarity of each model's classifier weights."""
    curves = {m.label: viz.similarity_curve(classifier_weights(m.net)) for m in models}
    meta["weight_similarity_top3"] = {k: [round(float(v), 4) for v in c[0][:3]]
                                      for k, c in curves.items()}
    report.heading("Classifier-weight similarity")
    report.figure(viz.plot_similarity_curve(
        curves, title="sorted cosine similarity of classifier weights"), "fig1-similarity",
        "Mean over classes of the sorted similarity to the other classes, with its std "
        "band (paper's Fig. 1 left; the self-similarity is 0 after subtracting 1).")
