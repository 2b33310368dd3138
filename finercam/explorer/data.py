"""The explorer page's data: per image the photo, the stored classes and, per target layer, what
the browser needs to recombine any map among them (see :mod:`finercam.explorer`).
"""
from __future__ import annotations

import base64
import io
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["COLORMAPS", "FUSED", "LINEAR_METHODS", "comparison_words", "view_data"]

#: Methods whose map is linear in the per-class statistics: the page holds one raw map per class.
LINEAR_METHODS = ("gradcam", "xgradcam", "cam", "hirescam", "scorecam")
#: Methods whose page holds the activations and the per-class gradients (their weights are not
#: linear in the gradient). Not :data:`finercam.methods.GRADIENT_METHODS`, the methods that need one.
PAGE_GRADIENT_METHODS = ("layercam", "gradcam++")
#: The colour maps a page offers: jet (the paper's figures, the default), viridis and cividis
#: (perceptually uniform; cividis also for colour-vision deficiencies), as matplotlib defines them.
COLORMAPS = ("jet", "viridis", "cividis")
#: The page's ``layer`` value for the fusion of every target layer (``Explanation.maps``).
FUSED = "fused"


def _b64(array: np.ndarray) -> str:
    """Little-endian float32 bytes, base64: what the page's ``Float32Array`` reads."""
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f4").tobytes()).decode("ascii")


def _hi_lo(array: np.ndarray) -> tuple[str, str]:
    """A float64 array as two float32 arrays ``hi = fl32(x)``, ``lo = fl32(x - hi)`` (base64): the
    page adds them in double and gets x to about 2^-48 relative, where float32 alone keeps 2^-24.
    A map that is the small difference of two large per-class maps needs the extra bits."""
    x = np.asarray(array, np.float64)
    hi = x.astype(np.float32)
    return _b64(hi), _b64((x - hi.astype(np.float64)).astype(np.float32))


def _layer_payload(method: str, A: np.ndarray, stats: np.ndarray, base: np.ndarray | None) -> dict:
    """What the browser needs for one image and one layer: A (K, h, w), stats (S, ...)."""
    K, h, w = A.shape
    if method in PAGE_GRADIENT_METHODS:
        return {"kind": "gradient", "h": h, "w": w, "K": K, "A": _b64(A), "G": _b64(stats)}
    # One signed map per stored class, M_s = sum_k alpha^s_k A_k, in float64 (the statistics and
    # activations are float32; their products and sums are not rounded again).
    if method == "hirescam":
        per_class = np.asarray(stats, np.float64)                         # (S, h, w) already a map
    else:
        per_class = np.einsum("sk,khw->shw", np.asarray(stats, np.float64), np.asarray(A, np.float64))
    hi, lo = _hi_lo(per_class)
    out = {"kind": "linear", "h": h, "w": w, "maps": hi, "maps_lo": lo}
    if method == "scorecam":
        out["asum"], out["asum_lo"] = _hi_lo(np.asarray(A, np.float64).sum(axis=0))
        out["baseline"] = [float(v) for v in np.asarray(base, np.float32)]
    return out


def _join_or(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def comparison_words(target: str, references: Sequence[str], *, reverse: bool = False, base: bool = False) -> str:
    """What a map compares, in words: ``"tiger cat, not Egyptian cat"`` (the page's caption and the
    explain panel's titles say the same). ``base``: the target alone; ``reverse`` (App. C.3): the
    references, not the target.

    >>> comparison_words("tiger cat", ["Egyptian cat"])
    'tiger cat, not Egyptian cat'
    >>> comparison_words("tiger cat", ["Egyptian cat", "tabby", "lynx"], reverse=True)
    'Egyptian cat, tabby or lynx, not tiger cat'
    >>> comparison_words("tiger cat", ["tabby"], base=True)
    'tiger cat'
    """
    if base:
        return str(target)
    refs = [str(r) for r in references]
    if not refs:
        raise ValueError("references must name at least one class")
    return f"{_join_or(refs)}, not {target}" if reverse else f"{target}, not {_join_or(refs)}"


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


def _check_view_options(layer, cmap, layer_names: list) -> str:
    """The page's first layer (a target layer's name or :data:`FUSED`), checked with ``cmap``."""
    if cmap not in COLORMAPS:
        raise ValueError(f"cmap must be one of {COLORMAPS}, got {cmap!r}")
    if layer is None:
        return FUSED if len(layer_names) > 1 else layer_names[0]
    if layer != FUSED and layer not in layer_names:
        raise ValueError(f"layer must be one of the explanation's layers {layer_names} or {FUSED!r}, got {layer!r}")
    return str(layer)


def view_data(exp, images=None, class_names=None, title: str | None = None, *, layer: str | None = None,
              cmap: str = "jet") -> dict:
    """The page's data (JSON-ready) for ``exp``: per image its photo, target, stored classes,
    current references and per-layer data (see the module doc); the state of ``exp``.

    ``layer``: the layer the page shows first, a name of ``exp.layer_names`` or ``"fused"`` (the
    default with several layers: the fusion, ``exp.maps``); ``cmap``: the first colour map, one of
    :data:`COLORMAPS`.

    >>> import torch, finercam
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
    >>> d = view_data(finercam.FinerCAM(net, "1", num_references=1, candidates=10)(torch.rand(1, 3, 8, 8)))
    >>> d["method"], d["size"], d["images"][0]["layers"][0]["kind"], len(d["images"][0]["candidates"])
    ('gradcam', [8, 8], 'linear', 5)
    """
    store = exp._store
    if getattr(store, "mean_of", None) is not None:
        raise ValueError("the interactive view picks the target and toggles references one by one and needs "
                         "each stored class's own gradient; this Explanation stores the references' mean "
                         "gradient only (two backward passes): call FinerCAM with candidates=K (e.g. 10)")
    photos = _check_images(images, len(exp.targets))
    first_layer = _check_view_options(layer, cmap, list(store.layer_names))
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
    return {"version": 2, "title": title or f"finercam: {store.method}", "method": store.method,
            "objective": store.objective, "layers": list(store.layer_names), "size": [H, W],
            "gamma": float(exp.gamma), "aggregate": exp.aggregate, "reverse": bool(exp.reverse),
            "base": bool(exp.is_baseline), "layer": FUSED if fixed else first_layer, "cmap": cmap,
            "names": _names(class_names, sorted(ids)), "images": items}
