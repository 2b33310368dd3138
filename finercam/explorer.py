"""An interactive view of an :class:`~finercam.explanation.Explanation`: one self-contained HTML file.

The page holds what :meth:`Explanation.recombine` needs, per image and per target layer, and
recombines in the browser (inline JavaScript, no network fetch): moving the gamma slider,
toggling a reference class, switching the aggregation or the base method repaints the overlay
without a model call. What is embedded depends on the base method:

* **linear methods** (``gradcam``, ``xgradcam``, ``cam``, ``hirescam``, ``scorecam``): the weights
  of an objective ``o = sum_s c_s y_s`` are the same combination of the per-class weights, so the
  signed map of any objective is ``sum_s c_s M_s`` with one small raw map per stored class,
  ``M_s = sum_k alpha^s_k A_k`` (for hirescam the per-class map ``sum_k G^s_k A_k``). Score-CAM's
  zero-input term (Eq. 9) adds ``- (sum_s p_s f(x_b)_s) sum_k A_k``, so its page also holds
  ``sum_k A_k`` and the S zero-input logits. Every aggregation follows from these maps:
  ``mean`` = ``ReLU(M_c - gamma mean_t M_t)``, ``max`` = ``ReLU(max_t (M_c - gamma M_t))``,
  ``mean_after_relu`` = ``mean_t ReLU(M_c - gamma M_t)``.
* **layercam**, **gradcam++**: their weights are not linear in the gradient, so the page holds the
  activations ``A`` (K, h, w) and the per-class gradients ``G_s`` (S, K, h, w) at the layer's grid,
  and the browser evaluates the method's formula on ``g = sum_s c_s G_s`` exactly as
  :func:`finercam.methods.signed_maps` does (no gamma grid, any gamma is exact). This is the
  largest page: ``(S + 1) K h w`` floats per image and layer (about 2.7 MB for a 1,280-channel
  7 x 7 layer with 10 stored references).
* ``objective="pgc"`` explanations cannot be recombined (pgc's objective depends on all logits):
  the page holds their map and base map only and the controls other than "base method" are off.

Post-processing in the browser follows the C core (:mod:`finercam.kernels`): ReLU, half-pixel
bilinear resize to the input (``src = max((dst + 0.5) in / out - 0.5, 0)``, ``align_corners=False``),
min-max ``(u - min u) / (max u - min u + 1e-8)`` with an all-equal map becoming zeros; several
layers are averaged after their own min-max and min-maxed again. Intermediate results are rounded
to float32 where the C core rounds.

The page's scripting interface (``window.finercam``): ``set({image, gamma, references, aggregate,
base, reverse})`` applies a state as the controls would, ``state()`` returns it, ``map()`` returns
``{width, height, data}``, ``data`` the current normalised map at the input's resolution,
row-major, equal to ``exp.recombine(gamma, references, aggregate, reverse).maps[image]`` (or
``exp.baseline()`` with ``base: true``) within 1e-4.

>>> import torch, finercam
>>> head = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(6, 5))
>>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 5), torch.nn.ReLU(), head)
>>> page = to_html(finercam.FinerCAM(net, "1")(torch.rand(1, 3, 20, 20)), class_names=list("abcde"))
>>> page.startswith("<!DOCTYPE html>"), "window.finercam" in page, "http://" in page
(True, True, False)
"""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from . import kernels
from .methods import signed_maps

__all__ = ["LINEAR_METHODS", "view_data", "to_html", "write_html", "repr_html", "page_html",
           "asset"]

#: Methods whose map is linear in the per-class statistics: the page holds one raw map per class.
LINEAR_METHODS = ("gradcam", "xgradcam", "cam", "hirescam", "scorecam")
#: Methods whose map is not linear in the per-class statistics: the page holds the activations and
#: the per-class gradients and recombines them itself.
NONLINEAR_METHODS = ("layercam", "gradcam++")
_ASSET_DIR = Path(__file__).resolve().parent


def asset(name: str) -> str:
    """The text of one of the page's own assets, ``"explorer.js"`` or ``"explorer.css"``.

    >>> "window.finercam" in asset("explorer.js")
    True
    """
    if name not in ("explorer.js", "explorer.css"):
        raise ValueError(f"name must be 'explorer.js' or 'explorer.css', got {name!r}")
    return (_ASSET_DIR / name).read_text(encoding="utf-8")


def _b64(array: np.ndarray) -> str:
    """Little-endian float32 bytes, base64: what the page's ``Float32Array`` reads."""
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f4").tobytes()).decode("ascii")


def _layer_payload(method: str, A: np.ndarray, stats: np.ndarray, base: np.ndarray | None) -> dict:
    """What the browser needs for one image and one layer: A (K, h, w), stats (S, ...)."""
    K, h, w = A.shape
    S = stats.shape[0]
    if method in NONLINEAR_METHODS:
        return {"kind": "gradient", "h": h, "w": w, "K": K, "A": _b64(A), "G": _b64(stats)}
    # One signed map per stored class: the objective "y_s alone" (identity coefficients).
    eye = np.eye(S, dtype=np.float32)[None]
    per_class = signed_maps(method, A[None], stats[None], eye, np.zeros_like(eye),
                            None if base is None else base[None])[0]
    out = {"kind": "linear", "h": h, "w": w, "maps": _b64(per_class)}
    if method == "scorecam":
        out["asum"] = _b64(kernels.combine(A[None], np.ones((1, 1, K), np.float32))[0, 0])
        out["baseline"] = [float(v) for v in np.asarray(base, np.float32)]
    return out


def _image_uri(image: Any) -> str | None:
    """A PNG data URI of one display image: PIL image, or array (H, W, 3) / (3, H, W), uint8 or
    float in [0, 1]."""
    if image is None:
        return None
    from PIL import Image

    if not isinstance(image, Image.Image):
        arr = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
        if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
            arr = np.moveaxis(arr, 0, -1)
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if arr.ndim not in (2, 3):
            raise ValueError(f"images: each image must be (H, W, 3), (3, H, W) or (H, W), got shape {arr.shape}")
        if arr.dtype != np.uint8:
            arr = (np.clip(np.asarray(arr, np.float64), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        image = Image.fromarray(arr)
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _name_list(class_names, num_classes: int) -> list | None:
    """Names indexable by class id for :meth:`finercam.diagnose.Diagnosis.summary` (ids without a
    name read "class k")."""
    if class_names is None:
        return None
    if isinstance(class_names, dict):
        return [str(class_names.get(k, f"class {k}")) for k in range(num_classes)]
    names = list(class_names)
    return [str(names[k]) if k < len(names) else f"class {k}" for k in range(num_classes)]


def _names(class_names, ids) -> dict:
    if class_names is None:
        return {}
    if isinstance(class_names, Mapping):
        return {str(i): str(class_names[i]) for i in ids if i in class_names}
    if not isinstance(class_names, Sequence) or isinstance(class_names, str):
        raise TypeError(f"class_names must be a sequence or a mapping of class names, got {type(class_names).__name__}")
    return {str(i): str(class_names[i]) for i in ids if 0 <= i < len(class_names)}


def _check_images(images, n: int) -> list:
    if images is None:
        return [None] * n
    if isinstance(images, (str, bytes)) or not hasattr(images, "__len__"):
        raise TypeError(f"images must be a batch or a list of images, got {type(images).__name__}")
    if len(images) != n:
        raise ValueError(f"images must hold one image per explained sample ({n}), got {len(images)}")
    return [images[i] for i in range(n)]


def view_data(exp, images=None, class_names=None, title: str | None = None) -> dict:
    """The page's data (JSON-ready) for ``exp``: per image its photo, target, stored classes,
    current references and per-layer data (see the module doc); the state of ``exp``.

    >>> import torch, finercam
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
    >>> d = view_data(finercam.FinerCAM(net, "1", num_references=1)(torch.rand(1, 3, 8, 8)))
    >>> d["method"], d["size"], d["images"][0]["layers"][0]["kind"], len(d["images"][0]["candidates"])
    ('gradcam', [8, 8], 'linear', 5)
    """
    store = exp._store
    photos = _check_images(images, len(exp.targets))
    H, W = (int(v) for v in store.input_size)
    fixed = store.objective == "pgc"
    base_maps = exp.baseline().maps if fixed else np.empty((0,))
    # Why the loaded map moved as much as it did (at the explanation's own gamma and references).
    why = None if fixed or exp.is_baseline else exp.diagnose()
    _names(class_names, [])  # checks class_names before anything reads it
    names_by_id = _name_list(class_names, exp.logits.shape[1])
    items, ids = [], set()
    for n, photo in enumerate(photos):
        cand = [int(c) for c in store.candidates[n]]
        ids.update(cand)
        item = {"target": cand[0], "candidates": cand, "references": [int(r) for r in exp.references[n]],
                "logits": [float(exp.logits[n, c]) for c in cand], "image": _image_uri(photo),
                "why": None if why is None else why.summary(n, names_by_id)}
        if fixed:
            item["fixed"] = {"map": _b64(exp.maps[n]), "base": _b64(base_maps[n])}
        else:
            item["layers"] = [_layer_payload(store.method, A[n], st[n], None if b is None else b[n])
                              for A, st, b in zip(store.activations, store.stats, store.baselines, strict=True)]
        items.append(item)
    return {"version": 1, "title": title or f"finercam: {store.method}", "method": store.method,
            "objective": store.objective, "layers": list(store.layer_names), "size": [H, W],
            "gamma": float(exp.gamma), "aggregate": exp.aggregate, "reverse": bool(exp.reverse),
            "base": bool(exp.is_baseline), "names": _names(class_names, sorted(ids)),
            "images": items}


def page_html(data: dict | None, title: str = "finercam", app_script: str | None = None) -> str:
    """The whole page around ``data`` (from :func:`view_data`; ``None`` for an empty view): inline
    CSS, inline JavaScript, the data as a JSON script element. ``app_script`` (the local web app's
    script, :mod:`finercam.apps.app`) runs before the view's script, in a ``#finercam-app`` block.

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
            f"<body>{app}<div id=\"finercam-root\"></div>"
            f"<script type=\"application/json\" id=\"finercam-data\">{payload}</script>"
            f"<script>{asset('explorer.js')}</script></body></html>\n")


def to_html(exp, path=None, images=None, class_names=None, title: str | None = None) -> str:
    """The interactive view of ``exp`` as one HTML string; also written to ``path`` when given.

    ``images``: one display image per sample (PIL images, or arrays (H, W, 3) / (3, H, W), uint8
    or float in [0, 1]; a (N, 3, H, W) tensor of [0, 1] pixels works), drawn under the map;
    ``class_names``: a sequence indexed by class id, or a mapping id -> name.

    >>> import torch, finercam
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
    >>> x = torch.rand(1, 3, 8, 8)
    >>> len(to_html(finercam.FinerCAM(net, "1")(x), images=x)) > 10000
    True
    """
    data = view_data(exp, images, class_names, title)
    page = page_html(data, data["title"])
    if path is not None:
        Path(path).write_text(page, encoding="utf-8")
    return page


def write_html(exp, images, path, class_names=None, title: str | None = None) -> Path:
    """Write the view of ``exp`` to ``path`` (see :func:`to_html`) and return the path; for
    ``finercam explain --html`` and the demo report.

    >>> import tempfile, torch, finercam
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
    >>> x = torch.rand(1, 3, 8, 8)
    >>> write_html(finercam.FinerCAM(net, "1")(x), x, Path(tempfile.mkdtemp()) / "v.html").suffix
    '.html'
    """
    path = Path(path)
    to_html(exp, path, images=images, class_names=class_names, title=title)
    return path


def repr_html(exp, images=None, class_names=None, height: int = 640) -> str:
    """The view in an ``<iframe srcdoc>``, what Jupyter shows for an Explanation: the page's
    script and styles stay inside the frame, so several views in one notebook do not clash.

    >>> import torch, finercam
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
    >>> repr_html(finercam.FinerCAM(net, "1")(torch.rand(1, 3, 8, 8))).startswith("<iframe")
    True
    """
    page = to_html(exp, images=images, class_names=class_names)
    return (f"<iframe srcdoc=\"{html.escape(page, quote=True)}\" style=\"width:100%;height:{int(height)}px;"
            "border:1px solid #ddd\" sandbox=\"allow-scripts\"></iframe>")
