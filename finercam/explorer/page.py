"""The explorer page around its data: inline CSS and JavaScript read from the package's ``static``
folder (:mod:`importlib.resources`, so it works from a wheel or a zip), the data as a JSON script
element, no network fetch.
"""
from __future__ import annotations

import html
import json
from importlib import resources
from pathlib import Path

from .data import view_data

__all__ = ["asset", "page_html", "repr_html", "script", "to_html", "write_html"]

#: The page's scripts, in the order they run: the numerics (the kernels' twins), the colour maps,
#: the view, its URL fragment and PNG download, the scripting interface. Each adds to
#: ``window.finercamParts``; the last one defines ``window.finercam`` and starts the view.
SCRIPTS = ("numerics.js", "colormaps.js", "explorer.js", "share.js", "api.js")
ASSETS = SCRIPTS + ("explorer.css",)


def asset(name: str) -> str:
    """The text of one of the page's own static files (:data:`ASSETS`).

    >>> "window.finercam = api" in asset("api.js")
    True
    """
    if name not in ASSETS:
        raise ValueError(f"name must be one of {ASSETS}, got {name!r}")
    return resources.files(__package__).joinpath("static").joinpath(name).read_text(encoding="utf-8")


def script() -> str:
    """The page's whole script: :data:`SCRIPTS` in order.

    >>> script().index("ns.numerics = ") < script().index("window.finercam = api")
    True
    """
    return "\n".join(asset(name) for name in SCRIPTS)


def page_html(data: dict | None, title: str = "finercam", app_script: str | None = None) -> str:
    """The whole page around ``data`` (from :func:`~finercam.explorer.view_data`; ``None`` for an
    empty view): inline CSS, inline JavaScript, the data as a JSON script element. ``app_script``
    (the local web app's script, :mod:`finercam.apps.app`) runs before the view's script, in a
    ``#finercam-app`` block.

    >>> page_html(None, app_script="window.finercamApp = function (api) {};").count("<script")
    3
    """
    payload = "null" if data is None else json.dumps(data, separators=(",", ":"))
    # "</" cannot appear inside the JSON script element: the HTML parser would end it there.
    payload = payload.replace("</", "<\\/")
    app = "" if app_script is None else f"<div id=\"finercam-app\"></div><script>{app_script}</script>"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title><style>{asset('explorer.css')}</style></head>"
            f"<body>{app}<main id=\"finercam-root\"></main>"
            f"<script type=\"application/json\" id=\"finercam-data\">{payload}</script>"
            f"<script>{script()}</script></body></html>\n")


def to_html(exp, path=None, images=None, class_names=None, title: str | None = None, *,
            layer: str | None = None, cmap: str = "jet") -> str:
    """The interactive view of ``exp`` as one HTML string; also written to ``path`` when given.

    ``images``: one display image per sample (PIL images, or arrays (H, W, 3) / (3, H, W), uint8
    or float in [0, 1]; a (N, 3, H, W) tensor of [0, 1] pixels works), drawn under the map;
    ``class_names``: a sequence indexed by class id, or a mapping id -> name; ``layer``: the layer
    shown first (default: the fusion when there are several); ``cmap``: one of
    :data:`~finercam.explorer.COLORMAPS` (default jet, the paper's).

    >>> import torch, finercam
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
    >>> x = torch.rand(1, 3, 8, 8)
    >>> len(to_html(finercam.FinerCAM(net, "1", candidates=10)(x), images=x, cmap="cividis")) > 10000
    True
    """
    data = view_data(exp, images, class_names, title, layer=layer, cmap=cmap)
    page = page_html(data, data["title"])
    if path is not None:
        Path(path).write_text(page, encoding="utf-8")
    return page


def write_html(exp, images, path, class_names=None, title: str | None = None, *, layer: str | None = None,
               cmap: str = "jet") -> Path:
    """Write the view of ``exp`` to ``path`` (see :func:`to_html`) and return the path; for
    ``finercam explain --html`` and the demo report.

    >>> import tempfile, torch, finercam
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
    >>> x = torch.rand(1, 3, 8, 8)
    >>> write_html(finercam.FinerCAM(net, "1", candidates=10)(x), x, Path(tempfile.mkdtemp()) / "v.html").suffix
    '.html'
    """
    path = Path(path)
    to_html(exp, path, images=images, class_names=class_names, title=title, layer=layer, cmap=cmap)
    return path


def repr_html(exp, images=None, class_names=None, height: int = 640) -> str:
    """The view in an ``<iframe srcdoc>``, what Jupyter shows for an Explanation: the page's
    script and styles stay inside the frame, so several views in one notebook do not clash.

    >>> import torch, finercam
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
    >>> repr_html(finercam.FinerCAM(net, "1", candidates=10)(torch.rand(1, 3, 8, 8))).startswith("<iframe")
    True
    """
    page = to_html(exp, images=images, class_names=class_names)
    return (f"<iframe srcdoc=\"{html.escape(page, quote=True)}\" style=\"width:100%;height:{int(height)}px;"
            "border:1px solid #ddd\" sandbox=\"allow-scripts allow-downloads\"></iframe>")

