"""Pictures of class activation maps: overlays, panel grids and the paper's curves.

Everything here returns NumPy arrays or :class:`matplotlib.figure.Figure` objects built without
``pyplot``, so nothing touches global plotting state: a Figure shows itself in a notebook cell,
and ``fig.savefig(path)`` writes it anywhere (the Agg canvas is used, no display needed).

matplotlib is the optional extra ``viz`` (``pip install finercam[viz]``); ``import finercam``
never imports it.

>>> import numpy as np
>>> from finercam import viz
>>> image = np.zeros((64, 64, 3), np.uint8)          # HWC uint8, or CHW float, or a tensor
>>> cam = np.linspace(0, 1, 16 * 16).reshape(16, 16)  # any grid: resized bilinearly to the image
>>> viz.overlay(image, cam, alpha=0.4).shape
(64, 64, 3)
>>> fig = viz.compare(image, {"Grad-CAM": cam, "Finer-CAM": cam ** 2})
"""
from __future__ import annotations

import textwrap
from typing import Mapping, Sequence

import numpy as np

try:
    from matplotlib import colormaps as _colormaps
    from matplotlib.colors import Colormap
    from matplotlib.figure import Figure
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "finercam.viz needs matplotlib, an optional extra: pip install finercam[viz]"
    ) from exc

from . import kernels

__all__ = [
    "to_image", "colorize", "overlay", "compare", "draw_image", "panel_grid", "gamma_sweep",
    "deletion_curves", "similarity_curve", "plot_similarity_curve", "to_uint8", "map_panel",
]

_CHANNELS = (1, 3, 4)


def _numpy(x, name: str) -> np.ndarray:
    x = kernels.as_numpy(x)
    if hasattr(x, "mode") and hasattr(x, "convert"):  # a PIL image
        return np.asarray(x.convert("RGB"))
    try:
        return np.asarray(x)
    except Exception as exc:  # noqa: BLE001 - reported with the argument's name
        raise TypeError(f"{name} must be an array, a tensor or a PIL image, "
                        f"got {type(x).__name__}") from exc


def to_image(image, *, layout: str | None = None) -> np.ndarray:
    """Any image as a float32 (H, W, 3) array in [0, 1], ready to draw.

    Accepts NumPy arrays, torch tensors and PIL images; (H, W), (H, W, C), (C, H, W) or a batch of
    one, with C in {1, 3, 4} (grey is repeated, alpha dropped). ``layout`` ("HWC" or "CHW") settles
    ambiguous shapes; by default a leading axis of size 1, 3 or 4 whose last axis is not one of
    those sizes means CHW, and so does any 3-channel-first tensor. Integer images must hold values
    in [0, 255] and are divided by 255; float images already in [0, 1] are kept, any other float
    range (a normalised network input) is min-max rescaled for display.

    >>> to_image(np.full((2, 3), 255, np.uint8)).shape          # grey, repeated
    (2, 3, 3)
    >>> to_image(np.zeros((3, 4, 5), np.float32)).shape         # CHW
    (4, 5, 3)
    >>> to_image(np.array([[-2.0, 2.0]]))[0, :, 0].tolist()     # min-max rescaled
    [0.0, 1.0]
    """
    is_tensor = hasattr(image, "detach")
    a = _numpy(image, "image")
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 2:
        a = a[:, :, None]
    elif a.ndim != 3:
        raise ValueError(f"image must be (H, W), (H, W, C) or (C, H, W), got shape {a.shape}")
    if layout not in (None, "HWC", "CHW"):
        raise ValueError(f"layout must be None, 'HWC' or 'CHW', got {layout!r}")
    if layout is None:
        first, last = a.shape[0] in _CHANNELS, a.shape[-1] in _CHANNELS
        layout = "CHW" if first and (not last or (is_tensor and a.shape[0] == 3)) else "HWC"
    if layout == "CHW":
        a = np.moveaxis(a, 0, -1)
    c = a.shape[-1]
    if c not in _CHANNELS:
        raise ValueError(f"image must have 1, 3 or 4 channels, got shape {a.shape} ({layout})")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"image must not be empty, got shape {a.shape}")
    if c == 1:
        a = np.repeat(a, 3, axis=-1)
    elif c == 4:
        a = a[..., :3]
    if a.dtype == np.bool_:
        return a.astype(np.float32)
    if np.issubdtype(a.dtype, np.integer):
        if a.min() < 0 or a.max() > 255:
            raise ValueError("image: integer images must hold values in [0, 255], got "
                             f"[{a.min()}, {a.max()}]")
        return (a.astype(np.float32) / 255.0)
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"image must hold integers or floats, got dtype {a.dtype}")
    a = a.astype(np.float32)
    if not np.all(np.isfinite(a)):
        raise ValueError("image holds NaN or infinite values")
    lo, hi = float(a.min()), float(a.max())
    if lo >= 0.0 and hi <= 1.0:
        return a
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def to_uint8(image) -> np.ndarray:
    """A [0, 1] float image (any layout :func:`to_image` accepts) as uint8 HWC, rounded:
    ``round(clip(x, 0, 1) * 255)``; grey images become three equal channels.

    >>> import numpy as np
    >>> to_uint8(np.array([[0.0, 0.5, 1.0]], np.float32))[0].tolist()
    [[0, 0, 0], [128, 128, 128], [255, 255, 255]]
    """
    return np.round(np.clip(to_image(image), 0.0, 1.0) * 255.0).astype(np.uint8)


def _cmap(cmap) -> Colormap:
    if isinstance(cmap, Colormap):
        return cmap
    if not isinstance(cmap, str):
        raise TypeError(f"cmap must be a colormap name or a matplotlib Colormap, got "
                        f"{type(cmap).__name__}")
    try:
        return _colormaps[cmap]
    except KeyError:
        raise ValueError(f"cmap: unknown colormap {cmap!r}") from None


def _map2d(cam, name: str = "cam") -> np.ndarray:
    m = _numpy(cam, name)
    if m.ndim == 3 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 2:
        raise ValueError(f"{name} must be one (h, w) map, got shape {m.shape}")
    if m.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {m.shape}")
    if not (np.issubdtype(m.dtype, np.floating) or np.issubdtype(m.dtype, np.integer)
            or m.dtype == np.bool_):
        raise TypeError(f"{name} must hold numbers, got dtype {m.dtype}")
    return m.astype(np.float32)


def colorize(cam, cmap="jet") -> np.ndarray:
    """A map's values, clipped to [0, 1], through a colormap: float32 (h, w, 3); NaN gives 0.

    >>> import numpy as np
    >>> colorize(np.array([[0.0, 1.0, np.nan]]), "gray")[0].tolist()
    [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]
    """
    m = np.clip(_map2d(cam), 0.0, 1.0)
    rgb = _cmap(cmap)(np.nan_to_num(m, nan=0.0))[..., :3]
    rgb[np.isnan(m)] = 0.0
    return rgb.astype(np.float32)


def overlay(image, cam, *, cmap="jet", alpha: float = 0.5, layout: str | None = None) -> np.ndarray:
    """Alpha blend of a map's colours over an image: ``(1 - alpha) * image + alpha * cmap(cam)``.

    The map (any (h, w) grid, values expected in [0, 1] and clipped) is resized to the image with
    the core's half-pixel bilinear resize (:func:`finercam.kernels.resize`). Pixels where the map
    is NaN show the image unchanged. Returns float32 (H, W, 3) in [0, 1].
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating, np.integer)):
        raise TypeError(f"alpha must be a number in [0, 1], got {type(alpha).__name__}")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    img = to_image(image, layout=layout)
    m = _map2d(cam)
    if m.shape != img.shape[:2]:
        m = kernels.resize(m[None], img.shape[:2])[0]
    rgb = colorize(m, cmap)
    a = np.where(np.isnan(m), 0.0, float(alpha)).astype(np.float32)[..., None]
    return ((1.0 - a) * img + a * rgb).astype(np.float32)


def _figure(nrows: int, ncols: int, cell: float, extra_h: float = 0.0) -> Figure:
    return Figure(figsize=(max(ncols * cell, 2.0), nrows * cell + extra_h), layout="constrained")


def draw_image(ax, image, title: str | None = None) -> None:
    """Draw an image (anything :func:`to_image` takes) on a matplotlib Axes, without ticks.

    >>> ax = Figure().subplots()
    >>> draw_image(ax, np.zeros((4, 4, 3)), "black")
    >>> ax.get_title(), list(ax.get_xticks())
    ('black', [])
    """
    ax.imshow(to_image(image), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        # Wrapped to the cell's width so that neighbouring titles never run into each other.
        width = max(12, int(ax.get_position().width * ax.figure.get_figwidth() * 17))
        ax.set_title(textwrap.fill(title, width), fontsize=8)


def panel_grid(cells: Sequence[Sequence], *, titles: Sequence[Sequence[str | None]] | None = None,
               row_labels: Sequence[str] | None = None, suptitle: str | None = None,
               cell_size: float = 1.8) -> Figure:
    """A grid of images with titles: ``cells[r][c]`` is an image (anything :func:`to_image`
    takes, e.g. an :func:`overlay`) or None for an empty cell; ``titles`` has the same nesting.

    >>> img = np.zeros((8, 8, 3))
    >>> fig = panel_grid([[img, img], [img, None]], titles=[["a", "b"], ["c", None]])
    >>> len(fig.axes), [ax.get_title() for ax in fig.axes]
    (4, ['a', 'b', 'c', ''])
    """
    if not isinstance(cells, (list, tuple)) or not cells or \
            not all(isinstance(r, (list, tuple)) for r in cells):
        raise TypeError("cells must be a non-empty list of rows, each a list of images")
    nrows, ncols = len(cells), max(len(r) for r in cells)
    if ncols == 0:
        raise ValueError("cells: every row is empty")
    if titles is not None and (len(titles) != nrows or
                               any(len(t) != len(r) for t, r in zip(titles, cells, strict=True))):
        raise ValueError("titles must have the same nesting as cells")
    if row_labels is not None and len(row_labels) != nrows:
        raise ValueError(f"row_labels must have {nrows} entries, got {len(row_labels)}")
    fig = _figure(nrows, ncols, cell_size, 0.3 if suptitle else 0.0)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for r in range(nrows):
        for c in range(ncols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            cell = cells[r][c] if c < len(cells[r]) else None
            if cell is None:
                ax.set_axis_off()
            else:
                draw_image(ax, cell, titles[r][c] if titles is not None else None)
            if c == 0 and row_labels is not None:
                ax.set_axis_on()
                for side in ax.spines.values():
                    side.set_visible(cell is not None)
                ax.set_ylabel(row_labels[r], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return fig


def compare(image, maps: Mapping[str, object], *, cmap="jet", alpha: float = 0.5,
            title: str | None = None, image_title: str = "image", cell_size: float = 2.0) -> Figure:
    """One row: the image, then its overlay with each named map (e.g. baseline and Finer)."""
    if not isinstance(maps, Mapping) or not maps:
        raise TypeError("maps must be a non-empty mapping of title -> map")
    row = [to_image(image)] + [overlay(image, m, cmap=cmap, alpha=alpha) for m in maps.values()]
    return panel_grid([row], titles=[[image_title, *maps.keys()]], suptitle=title,
                      cell_size=cell_size)


def gamma_sweep(image, maps, gammas: Sequence[float], *, cmap="jet", alpha: float = 0.5,
                title: str | None = None, cell_size: float = 1.6) -> Figure:
    """The paper's Fig. 8: the image, then one overlay per comparison strength gamma.

    ``maps`` is (G, h, w) (or a list of G maps), one per entry of ``gammas``, typically from one
    model call and ``Explanation.recombine(gamma=g)`` for each g.

    >>> maps = np.random.default_rng(0).random((3, 4, 4))
    >>> fig = gamma_sweep(np.zeros((16, 16, 3)), maps, [0.0, 0.6, 1.0])
    >>> [ax.get_title() for ax in fig.axes]
    ['image', 'γ = 0.0', 'γ = 0.6', 'γ = 1.0']
    """
    maps = list(maps)
    if len(maps) != len(gammas):
        raise ValueError(f"maps has {len(maps)} entries but gammas has {len(gammas)}")
    row = [to_image(image)] + [overlay(image, m, cmap=cmap, alpha=alpha) for m in maps]
    names = ["image"] + [f"\u03b3 = {float(g):.1f}" for g in gammas]
    return panel_grid([row], titles=[names], suptitle=title, cell_size=cell_size)


def _curve(x, name: str, n: int | None = None) -> np.ndarray:
    a = np.asarray(_numpy(x, name), dtype=np.float64)
    if a.ndim != 1 or a.size < 2:
        raise ValueError(f"{name} must be a 1-D curve of at least 2 points, got shape {a.shape}")
    if n is not None and a.size != n:
        raise ValueError(f"{name} has {a.size} points but fractions has {n}")
    return a


def deletion_curves(fractions, target, second, *, upto: float | None = None,
                    labels: tuple[str, str] = ("target", "2nd class"), title: str | None = None,
                    ax=None) -> Figure:
    """The paper's Fig. 5: confidence of the target and of the second class while the map's
    top pixels are deleted, with the gap between them shaded (up to ``upto``, e.g. 0.2).

    A map that finds what tells the two classes apart closes the gap fast: the shaded area is small.
    Draws on ``ax`` when given, else on a new Figure; returns the Figure.

    >>> x = np.linspace(0, 1, 5)
    >>> fig = deletion_curves(x, 1 - x, 0.5 * (1 - x), upto=0.25)
    >>> [line.get_label() for line in fig.axes[0].get_lines()]
    ['target', '2nd class']
    """
    x = _curve(fractions, "fractions")
    t = _curve(target, "target", x.size)
    s = _curve(second, "second", x.size)
    if ax is None:
        fig = Figure(figsize=(3.2, 2.4), layout="constrained")
        ax = fig.subplots()
    ax.plot(x, t, color="tab:red", label=labels[0], lw=1.5)
    ax.plot(x, s, color="tab:blue", label=labels[1], lw=1.5)
    keep = x <= upto + 1e-12 if upto is not None else np.ones(x.size, bool)
    ax.fill_between(x[keep], t[keep], s[keep], color="tab:purple", alpha=0.25, lw=0)
    ax.set_xlabel("fraction of pixels deleted", fontsize=8)
    ax.set_ylabel("confidence", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_xlim(float(x[0]), float(x[-1]))
    ax.legend(fontsize=7, frameon=False)
    if title:
        ax.set_title(title, fontsize=8)
    return ax.figure


def _cosine_matrix(w: np.ndarray) -> np.ndarray:
    if np.any(np.linalg.norm(w, axis=1) == 0):
        raise ValueError("weights: a class has an all-zero weight vector; cosine is undefined")
    return np.asarray(kernels.cosine_matrix(w.astype(np.float32)), dtype=np.float64)


def similarity_curve(weights, *, exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The paper's Fig. 1 (left), Appendix A.1: sorted classifier-weight similarity.

    ``S_pq = w_p . w_q / (|w_p| |w_q|)`` over the rows of ``weights`` (C, D); the diagonal has 1
    subtracted (so self-similarity becomes 0, as in the paper), each row is sorted descending, and
    the curve is the mean over classes with its standard deviation (ddof 0). With
    ``exclude_self=True`` the diagonal is dropped instead, leaving C - 1 points.

    >>> m, s = similarity_curve([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    >>> np.round(m, 3).tolist()
    [0.707, 0.236, 0.0]
    """
    w = np.asarray(_numpy(weights, "weights"), dtype=np.float64)
    if w.ndim != 2 or w.shape[0] < 2 or w.shape[1] < 1:
        raise ValueError(f"weights must be (C, D) with C >= 2 classes, got shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("weights hold NaN or infinite values")
    s = _cosine_matrix(w)
    c = s.shape[0]
    if exclude_self:
        s = s[~np.eye(c, dtype=bool)].reshape(c, c - 1)
    else:
        np.fill_diagonal(s, 0.0)  # cos(w, w) - 1, exactly: rounding would leave +-1e-16
    s = np.sort(s, axis=1)[:, ::-1]
    return s.mean(axis=0), s.std(axis=0)


def plot_similarity_curve(curves: Mapping[str, tuple], *, title: str | None = None,
                          ax=None) -> Figure:
    """Draw :func:`similarity_curve` results ``{label: (mean, std)}`` with their std bands.

    >>> w = np.random.default_rng(0).normal(size=(5, 8))
    >>> fig = plot_similarity_curve({"random": similarity_curve(w)})
    >>> fig.axes[0].get_legend_handles_labels()[1]
    ['random']
    """
    if not isinstance(curves, Mapping) or not curves:
        raise TypeError("curves must be a non-empty mapping of label -> (mean, std)")
    if ax is None:
        fig = Figure(figsize=(3.6, 2.6), layout="constrained")
        ax = fig.subplots()
    for label, (mean, std) in curves.items():
        m = _curve(mean, "mean")
        s = _curve(std, "std", m.size)
        rank = np.arange(1, m.size + 1)
        (line,) = ax.plot(rank, m, lw=1.5, label=label)
        ax.fill_between(rank, m - s, m + s, color=line.get_color(), alpha=0.2, lw=0)
    ax.axhline(0.0, color="0.6", lw=0.5)
    ax.set_xlabel("rank of the other class (most similar first)", fontsize=8)
    ax.set_ylabel("cosine similarity of weights", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, frameon=False)
    if title:
        ax.set_title(title, fontsize=9)
    return ax.figure


def _draw_map_cell(ax, image, cell, cmap, alpha: float, region) -> None:
    """One cell of :func:`map_panel`: a note, the photo (``cell["map"]`` None) or an overlay."""
    if "text" in cell:
        ax.set_axis_off()
        ax.text(0.5, 0.5, cell["text"], transform=ax.transAxes, ha="center", va="center", fontsize=9)
        return
    m = cell.get("map")
    if m is None:
        draw_image(ax, image, cell.get("title"))
    else:
        m = _map2d(m, "map")
        draw_image(ax, overlay(image, m, cmap=cmap, alpha=alpha), cell.get("title"))
        if not np.nanmax(np.nan_to_num(m, nan=0.0)) > 0:
            # A ReLU that removed every pixel leaves an all-zero map, which would otherwise
            # draw as a uniform tint that looks like "everything matters equally".
            ax.text(0.5, 0.5, "empty map", transform=ax.transAxes, ha="center", va="center",
                    fontsize=9, color="white", bbox={"facecolor": "black", "alpha": 0.6, "pad": 2})
    if region is not None:
        from matplotlib.patches import Rectangle

        left, top, right, bottom = region
        ax.add_patch(Rectangle((left - 0.5, top - 0.5), right - left, bottom - top, fill=False,
                               linestyle="--", linewidth=0.8, edgecolor="white"))
    if cell.get("caption"):
        ax.set_xlabel(cell["caption"], fontsize=7)


def map_panel(image, rows: Sequence[Sequence[Mapping | None]], *, row_labels=None,
              suptitle: str | None = None, cmap="jet", alpha: float = 0.5, region=None,
              cell_size: float = 2.1, colorbar_label: str = "map value (min-max per map)") -> Figure:
    """A grid of overlays of one image with titles, captions and a colour scale.

    ``rows[r][c]`` is a dict with ``"map"`` (an (h, w) map in [0, 1], resized to the image; NaN
    pixels show the image unchanged; None draws the image itself), ``"title"`` and ``"caption"``
    (written under the cell); a dict with ``"text"`` only (a note in place of an image); or None
    for an empty cell. A map with no positive value is marked
    "empty map". ``region`` (left, top, right, bottom), in image pixels, outlines the part of the
    image the model saw (e.g. a centre crop) on every cell.

    >>> img = np.zeros((20, 30, 3))
    >>> rows = [[{"map": None, "title": "photo"}, {"map": np.zeros((4, 4)), "title": "Grad-CAM",
    ...          "caption": "r = 1.00"}]]
    >>> fig = map_panel(img, rows)
    >>> [t.get_text() for t in fig.axes[1].texts], fig.axes[1].get_xlabel()
    (['empty map'], 'r = 1.00')
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    if not isinstance(rows, (list, tuple)) or not rows or not all(isinstance(r, (list, tuple)) for r in rows):
        raise TypeError("rows must be a non-empty list of rows, each a list of cells")
    nrows, ncols = len(rows), max(len(r) for r in rows)
    if ncols == 0:
        raise ValueError("rows: every row is empty")
    img = to_image(image)
    # Rows as tall as the image's aspect asks, plus room for each row's title and caption.
    aspect = img.shape[0] / img.shape[1]
    fig = Figure(figsize=(ncols * cell_size + 0.6, nrows * (cell_size * aspect + 0.5) + (0.5 if suptitle else 0.1)),
                 layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for r, row in enumerate(rows):
        for c in range(ncols):
            ax = axes[r][c]
            cell = row[c] if c < len(row) else None
            if cell is None:
                ax.set_axis_off()
                continue
            _draw_map_cell(ax, img, cell, cmap, alpha, region)
            if c == 0 and row_labels is not None:
                ax.set_ylabel(row_labels[r], fontsize=8)
    bar = fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), _cmap(cmap)), ax=axes.ravel().tolist(),
                       shrink=0.6, fraction=0.02, pad=0.01)
    bar.set_label(colorbar_label, fontsize=7)
    bar.ax.tick_params(labelsize=7)
    if suptitle:
        width = max(40, int(fig.get_figwidth() * 14))
        fig.suptitle(textwrap.fill(suptitle, width), fontsize=10)
    return fig
