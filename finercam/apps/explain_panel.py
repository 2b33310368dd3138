"""What ``finercam explain`` draws and writes for one image, from one
:class:`~finercam.Explanation`: the panel's maps laid back on the photo, their numbers, the console
lines, the report's section and the interactive view.

Every map here is a recombination of the image's one model call
(:meth:`finercam.Explanation.recombine`); nothing calls the model again.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..diagnose import energy_moved, map_correlation
from ..layers import find_classifier
from ..methods import METHOD_LABELS
from .classes import name_of, short_name

__all__ = ["GAMMA_STRIP", "TOP_K", "ImageMaps", "console_lines", "diagnosis", "map_change", "panel_figure", "panel_maps",
           "report_image", "top_predictions", "view_image", "write_view"]

#: The comparison strengths of the strip against the nearest reference (paper Fig. 8).
GAMMA_STRIP = (0.0, 0.3, 0.6, 1.0, 1.5)
#: How many predictions the console and the report list.
TOP_K = 5


def map_change(base: np.ndarray, other: np.ndarray) -> tuple[float, float]:
    """How much a map differs from the base map: (Pearson r, share of the energy that moved).

    :func:`finercam.diagnose.map_correlation` and :func:`finercam.diagnose.energy_moved` of the
    two maps: ``moved = 1/2 sum |p - q|`` with ``p = base / sum(base)``, ``q = other / sum(other)``
    (0: same shape, 1: disjoint). NaN where a map is empty (all zero) or constant.

    >>> a = np.array([[1.0, 0.0], [0.0, 0.0]]); b = np.array([[0.5, 0.5], [0.0, 0.0]])
    >>> [round(v, 3) for v in map_change(a, b)]
    [0.577, 0.5]
    """
    p = np.asarray(base, np.float64)[None]
    q = np.asarray(other, np.float64)[None]
    return float(map_correlation(p, q)[0]), float(energy_moved(p, q)[0])


@dataclass
class ImageMaps:
    """One image's panel: its maps at the photo's size (NaN outside the region the model saw),
    titled, with their numbers against the base map.

    ``cells`` are the rows of :func:`finercam.viz.map_panel`; ``numbers`` is ``(label, r, moved)``
    per map, the base map first, then the default Finer map, one per reference, the gamma strip.
    """

    photo: Any
    region: tuple[int, int, int, int]
    exp: Any
    refs: list[int]
    cells: list[list[dict]]
    numbers: list[tuple[str, float, float]]
    base: np.ndarray
    finer: np.ndarray


def _lay_on_photo(raw: np.ndarray, region, photo_size) -> np.ndarray:
    """A (h, w) raw map resized to ``region`` of the photo and min-maxed; NaN outside."""
    from .. import kernels

    left, top, right, bottom = region
    width, height = photo_size
    full = np.full((height, width), np.nan, np.float32)
    full[top:bottom, left:right] = kernels.postprocess(raw[None], (bottom - top, right - left))[0]
    return full


class _Cells:
    """Collects the panel's cells and their numbers against one base map."""

    def __init__(self, base_raw: np.ndarray, region, photo_size):
        self.base_raw, self.region, self.photo_size = base_raw, region, photo_size
        self.numbers: list[tuple[str, float, float]] = []

    def cell(self, exp, title: str, label: str) -> dict:
        raw = exp.raw_maps[0]
        r, moved = map_change(self.base_raw, raw)
        self.numbers.append((label, r, moved))
        caption = ("" if raw.max() <= 0 else
                   f"r = {r:.2f}, moved {moved:.0%}" if np.isfinite(r) else f"moved {moved:.0%}")
        return {"map": _lay_on_photo(raw, self.region, self.photo_size), "title": title, "caption": caption}


def panel_maps(exp, photo, region, names, method: str, gamma: float, reference_gamma: float,
               references_given: bool) -> ImageMaps:
    """The panel of one :class:`~finercam.Explanation` (one image): row 1 the photo, the base map,
    the default Finer map (``gamma``, its references averaged, Eq. 8) and the Finer map against
    each reference alone at ``reference_gamma``; row 2 the gamma strip (:data:`GAMMA_STRIP`)
    against the first reference (paper Fig. 8)."""
    refs = [int(r) for r in exp.references[0]]
    base = exp.baseline()
    cells = _Cells(base.raw_maps[0], region, photo.size)
    averaged = f"{len(refs)} refs averaged" if len(refs) > 1 else "1 ref"
    row1 = [{"map": None, "title": f"photo: {short_name(names, int(exp.targets[0]))}"},
            cells.cell(base, f"{METHOD_LABELS.get(method, method)} (base)", "base"),
            cells.cell(exp, f"Finer \u03b3={gamma:g}, {averaged}",
                       f"Finer \u03b3={gamma:g}, " + (f"mean of {len(refs)}" if len(refs) > 1 else "1 reference"))]
    for r in refs:
        one = exp.recombine(gamma=reference_gamma, references=[[r]])
        row1.append(cells.cell(one, f"vs {short_name(names, r)} (\u03b3={reference_gamma:g})",
                               f"vs {name_of(names, r)}, \u03b3={reference_gamma:g}"))
    which = "first reference given" if references_given else "nearest reference"
    row2 = [{"text": f"\u03b3 strip against\n{short_name(names, refs[0])}\n({which})"}]
    for g in GAMMA_STRIP:
        one = exp.recombine(gamma=g, references=[[refs[0]]])
        row2.append(cells.cell(one, f"\u03b3 = {g:g}", f"vs {name_of(names, refs[0])}, \u03b3={g:g}"))
    return ImageMaps(photo, region, exp, refs, [row1, row2], cells.numbers, row1[1]["map"], row1[2]["map"])


def top_predictions(exp, names, k: int = TOP_K) -> list[tuple[int, str, float, float]]:
    """``(class id, name, probability, logit)`` of the ``k`` most probable classes of image 0."""
    y = exp.logits[0].astype(np.float64)
    p = np.exp(y - y.max())
    p /= p.sum()
    order = np.argsort(-p)[:k]
    return [(int(c), short_name(names, int(c)), float(p[c]), float(y[c])) for c in order]


def panel_figure(maps: ImageMaps, label: str, names, alpha: float):
    """The panel as a matplotlib figure, titled with the prediction and the references."""
    from .. import viz

    target = int(maps.exp.targets[0])
    probability = top_predictions(maps.exp, names, 1)[0][2]
    refs = ", ".join(short_name(names, r) for r in maps.refs)
    title = f"{label}: {short_name(names, target)} ({probability:.0%}) vs {refs}"
    region = None if maps.region == (0, 0, *maps.photo.size) else maps.region
    return viz.map_panel(maps.photo, maps.cells, suptitle=title, alpha=alpha, region=region)


def console_lines(path, maps: ImageMaps, names) -> str:
    """Prediction, references and the numbers of the default and per-reference maps (the gamma
    strip's are in index.html)."""
    top = top_predictions(maps.exp, names)
    lines = [f"{path}: {name_of(names, top[0][0])} {top[0][2]:.1%}; top-5: "
             + ", ".join(f"{n} {p:.1%}" for _, n, p, _ in top),
             "  references: " + ", ".join(name_of(names, r) for r in maps.refs)]
    lines += [f"  {label}: " + (f"r = {r:.3f} with the base map, {moved:.1%} of its energy moved"
                                 if np.isfinite(moved) else "empty map (the ReLU removed every value)")
              for label, r, moved in maps.numbers[1:2 + len(maps.refs)]]
    return "\n".join(lines)


def diagnosis(model, exp, names) -> str:
    """Why the default Finer map moved as much as it did (:meth:`Explanation.diagnose`), with the
    model's classifier head (:func:`finercam.layers.find_classifier`) for the weight cosines when
    it has one."""
    return exp.diagnose(find_classifier(model, exp.logits.shape[1])).summary(0, names)


def report_image(report, path, stem: str, maps: ImageMaps, names, fig) -> None:
    """The image's section of the report: top-5, references, the panel and its numbers."""
    report.heading(f"{Path(path).name}")
    top = top_predictions(maps.exp, names)
    report.table([[i + 1, n, c, p, y] for i, (c, n, p, y) in enumerate(top)],
                 header=["rank", "class", "id", "probability", "logit"],
                 caption="Top-5 predictions")
    report.text("Compared with: " + ", ".join(name_of(names, r) for r in maps.refs)
                + " (the references, nearest logit first).")
    report.figure(fig, f"{stem}_panel",
                  caption="Row 1: photo, base map, Finer at the paper's default, Finer against each "
                          "reference alone. Row 2: gamma strip against the nearest reference. Under "
                          "each map: r = correlation with the base map, moved = share of its energy "
                          "that moved.")
    report.table([[label, r, moved] for label, r, moved in maps.numbers],
                 header=["map", "r with base", "energy moved"], caption="How much Finer changed the map")


def view_image(transform: Callable, photo, mean, std, custom_transform: bool) -> np.ndarray:
    """What the network saw, for the interactive view (whose maps are at the input's size): the
    transformed photo with its normalisation undone, (3, H, W) in [0, 1]. A custom ``--transform``
    has no known normalisation: each channel is min-max scaled instead."""
    x = np.asarray(transform(photo), dtype=np.float32)
    if custom_transform:
        lo = x.min(axis=(1, 2), keepdims=True)
        return (x - lo) / np.maximum(x.max(axis=(1, 2), keepdims=True) - lo, 1e-12)
    m = np.asarray(mean, np.float32).reshape(-1, 1, 1)
    s = np.asarray(std, np.float32).reshape(-1, 1, 1)
    return np.clip(x * s + m, 0.0, 1.0)


def write_view(report, out: Path, image: np.ndarray, exp, stem: str, names) -> None:
    """``--html``: the interactive view of this image beside the report, linked from it."""
    from ..explorer import write_html

    write_html(exp, [image], out / f"{stem}.html", class_names=names, title=f"finercam: {stem}")
    report.link("Interactive view (gamma slider, reference toggles)", f"{stem}.html")
