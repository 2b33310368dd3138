"""Sanity checks for saliency maps: model-parameter randomisation (Adebayo et al., "Sanity Checks
for Saliency Maps", NeurIPS 2018).

A method whose maps stay the same when the model's weights are destroyed explains the image, not
the model. :func:`randomisation_test` re-initialises the model's blocks on a deep copy, never on
the model itself:

* cascading: from the logits down, one block more at each depth (depth k: the top k blocks
  random);
* independent: one block at a time, the others as trained;

and compares each method's maps with the maps of the trained model, per image, by

* ``spearman_abs``: Spearman rank correlation of the absolute maps,
* ``spearman``: Spearman rank correlation of the maps as the method returns them (signed),
* ``ssim``: the structural similarity of the maps min-max normalised to [0, 1] (C core,
  :func:`finercam.kernels.ssim`; scikit-image's defaults, ``data_range`` 1).

For CAMs, which the ReLU makes non-negative, the two Spearman measures coincide. A method passes
when its mean ``spearman_abs`` with every block random is below a threshold (default 0.5, see
:meth:`Randomisation.passes`); a map that ignores the weights (:func:`edge_explainer`, a Sobel
edge detector) keeps a similarity of 1 and fails.

Blocks (:func:`model_blocks`): the model's children that hold parameters, in the order they are
registered (input to output), an ``nn.Sequential`` or ``nn.ModuleList`` child opened into its
own children, one level; or the names the caller gives. Re-initialisation: every submodule with a
``reset_parameters`` method calls it (torch's own initialisation, under a seeded random state
that leaves the caller's untouched); parameters no such module owns (a ViT's position embedding,
its class token) are drawn from a normal with their own mean and standard deviation (0.02 when
they are constant).
"""
from __future__ import annotations

import copy
from typing import Callable, Mapping, NamedTuple, Sequence

import numpy as np
import torch
from torch import nn

from .. import kernels
from .._checks import check_images
from ..capture import extract_logits
from ._masking import _check_classes

__all__ = ["Randomisation", "randomisation_test", "model_blocks", "randomise_blocks", "spearman",
           "cam_explainer", "edge_explainer", "MEASURES", "MODES"]

MEASURES = ("spearman_abs", "spearman", "ssim")
MODES = ("cascading", "independent")
#: A method passes when its mean ``spearman_abs`` with every block random falls below this.
PASS_THRESHOLD = 0.5

Explainer = Callable[[nn.Module, torch.Tensor, np.ndarray], np.ndarray]


class Randomisation(NamedTuple):
    """Result of :func:`randomisation_test`.

    ``cascading[method][measure]`` is (B + 1, N): row 0 the trained model (similarity with itself,
    1), row k the top k blocks random (the last row: every block). ``independent[method][measure]``
    is (B, N): row b only ``blocks[b]`` random. ``blocks`` are in input-to-output order.
    """

    methods: list[str]
    blocks: list[str]
    cascading: dict[str, dict[str, np.ndarray]]
    independent: dict[str, dict[str, np.ndarray]]

    def table(self) -> list[dict]:
        """One row per (method, mode, depth or block): mean and standard error of each measure
        over the images with a defined value (``se = std / sqrt(n)``, ddof 1; 0 for one image)."""
        rows = []
        for method in self.methods:
            for mode, data in (("cascading", self.cascading), ("independent", self.independent)):
                if method not in data:
                    continue
                n_rows = next(iter(data[method].values())).shape[0]
                for k in range(n_rows):
                    if mode == "cascading":
                        label = "trained" if k == 0 else f"top {k}: down to {self.blocks[-k]}"
                    else:
                        label = self.blocks[k]
                    row: dict = {"method": method, "mode": mode, "randomised": label,
                                 "depth": k}
                    for measure, values in data[method].items():
                        v = values[k][np.isfinite(values[k])]
                        row[measure] = float(np.mean(v)) if v.size else float("nan")
                        row[measure + "_se"] = float(np.std(v, ddof=1) / np.sqrt(v.size)) if v.size > 1 else 0.0
                    rows.append(row)
        return rows

    def passes(self, threshold: float = PASS_THRESHOLD, measure: str = "spearman_abs") -> dict[str, bool]:
        """Per method: whether its mean ``measure`` with every block random (the last cascading
        depth) is below ``threshold``."""
        return {m: bool(np.nanmean(self.cascading[m][measure][-1]) < threshold)
                for m in self.methods if m in self.cascading}


# --- similarity ------------------------------------------------------------------------------------


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..P of each row, ties sharing their mean rank (as ``scipy.stats.rankdata``)."""
    out = np.empty(x.shape, dtype=np.float64)
    for i, row in enumerate(x):
        order = np.argsort(row, kind="stable")
        sorted_row = row[order]
        starts = np.r_[True, sorted_row[1:] != sorted_row[:-1]]
        group = np.cumsum(starts) - 1
        first = np.flatnonzero(starts)
        last = np.r_[first[1:], row.size] - 1
        mean_rank = (first + last) / 2.0 + 1.0
        out[i, order] = mean_rank[group]
    return out


def spearman(a, b) -> np.ndarray:
    """Spearman rank correlation of each pair of maps (N, ...), ties at their mean rank:
    :math:`\\rho = \\mathrm{corr}(\\mathrm{rank}(a), \\mathrm{rank}(b))`. NaN when either map is
    constant.

    >>> spearman(np.array([[1.0, 2.0, 3.0]]), np.array([[10.0, 30.0, 20.0]])).round(3).tolist()
    [0.5]
    """
    x = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    y = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    rx, ry = _average_ranks(x), _average_ranks(y)
    rx -= rx.mean(1, keepdims=True)
    ry -= ry.mean(1, keepdims=True)
    denom = np.sqrt((rx * rx).sum(1) * (ry * ry).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (rx * ry).sum(1) / np.where(denom > 0, denom, 1.0), np.nan)


def _unit(maps: np.ndarray) -> np.ndarray:
    """Each map min-max normalised to [0, 1] (a constant map to 0), float32."""
    return kernels.minmax(np.ascontiguousarray(maps, dtype=np.float32), eps=0.0)


def _constant(maps: np.ndarray) -> np.ndarray:
    flat = maps.reshape(maps.shape[0], -1)
    return (flat == flat[:, :1]).all(axis=1)


def _similarities(ref: np.ndarray, maps: np.ndarray) -> dict[str, np.ndarray]:
    """The measures of the module doc per image. A rank correlation with a constant map is
    undefined: 0 when only the randomised map is constant (it kept nothing of the trained one),
    NaN when the trained map is (the image is left out of the means)."""
    win = min(7, *(s - (1 - s % 2) for s in ref.shape[1:]))
    lost = _constant(maps) & ~_constant(ref)
    out = {"spearman_abs": np.where(lost, 0.0, spearman(np.abs(ref), np.abs(maps))),
           "spearman": np.where(lost, 0.0, spearman(ref, maps))}
    out["ssim"] = (kernels.ssim(_unit(ref), _unit(maps), win=win, data_range=1.0) if win >= 3
                   else np.full(ref.shape[0], np.nan))
    return out


# --- blocks and their randomisation ----------------------------------------------------------------


def model_blocks(model: nn.Module) -> list[str]:
    """The names of the model's blocks that hold parameters, input to output (see the module doc).

    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2))
    >>> model_blocks(net)
    ['0', '3']
    """
    names = []
    for name, child in model.named_children():
        if isinstance(child, (nn.Sequential, nn.ModuleList)):
            names += [f"{name}.{n}" for n, c in child.named_children() if any(True for _ in c.parameters())]
        elif any(True for _ in child.parameters()):
            names.append(name)
    if any(True for _ in model.parameters(recurse=False)):
        names.insert(0, "")  # parameters of the model itself (a class token, say): the first block
    return names


def randomise_blocks(model: nn.Module, names: Sequence[str], seed: int = 0) -> None:
    """Re-initialise the blocks ``names`` of ``model`` in place (see the module doc): call this on
    a copy. The random state of torch is restored afterwards."""
    modules = dict(model.named_modules())
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        for k, name in enumerate(names):
            torch.manual_seed(seed * 1000 + k)
            block = modules[name]
            owned: set[int] = set()
            targets = [block] if name == "" else list(block.modules())
            for m in targets:
                if name != "" and hasattr(m, "reset_parameters") and callable(m.reset_parameters):
                    m.reset_parameters()
                    owned.update(id(p) for p in m.parameters(recurse=False))
            params = block.parameters(recurse=False) if name == "" else block.parameters()
            for p in params:
                if id(p) not in owned:
                    std = float(p.std()) if p.numel() > 1 else 0.0
                    p.normal_(float(p.mean()), std if std > 0 else 0.02)


# --- explainers ------------------------------------------------------------------------------------


def cam_explainer(target_layer, method: str = "gradcam", gamma: float = 0.0, references=None,
                  **finer_kwargs) -> Explainer:
    """An explainer for :func:`randomisation_test`: ``FinerCAM(model, target_layer, method,
    gamma, **finer_kwargs)(images, targets, references).maps``. ``gamma=0`` is the base method;
    ``references`` fixes the compared classes (one list per image) instead of choosing them
    from the randomised model's logits."""
    from ..finer import FinerCAM

    def explain(model: nn.Module, images: torch.Tensor, targets: np.ndarray) -> np.ndarray:
        cam = FinerCAM(model, target_layer, method=method, gamma=gamma, **finer_kwargs)
        return cam(images, targets=[int(t) for t in targets], references=references).maps

    return explain


def edge_explainer(model: nn.Module, images: torch.Tensor, targets: np.ndarray) -> np.ndarray:
    """A control that ignores the model: the Sobel gradient magnitude of the image's channel mean,
    :math:`\\sqrt{(S_x * \\bar x)^2 + (S_y * \\bar x)^2}` (edges replicated). It must fail the test."""
    x = images.detach().float().cpu().mean(1, keepdim=True)
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]).view(1, 1, 3, 3)
    p = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate")
    gx = torch.nn.functional.conv2d(p, kx)
    gy = torch.nn.functional.conv2d(p, kx.transpose(2, 3))
    return torch.sqrt(gx * gx + gy * gy)[:, 0].numpy()


# --- the test ------------------------------------------------------------------------------------


def _explain(explainer: Explainer, model, images, targets, name: str) -> np.ndarray:
    maps = np.asarray(kernels.as_numpy(explainer(model, images, targets)), dtype=np.float64)
    if maps.ndim == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.ndim != 3 or maps.shape[0] != images.shape[0]:
        raise ValueError(f"explainer {name!r} must return (N, H, W) maps for {images.shape[0]} images, "
                         f"got shape {maps.shape}")
    return maps


def randomisation_test(model: nn.Module, images, explainer: Explainer | Mapping[str, Explainer],
                       targets=None, *, blocks: Sequence[str] | None = None,
                       modes: Sequence[str] = MODES, seed: int = 0, progress: bool = False) -> Randomisation:
    """Cascading and independent model-parameter randomisation (see the module doc).

    :param model: the classifier; a deep copy is randomised for every depth and block, the model
        itself is never changed (its weights, mode, hooks and gradients stay as they were).
    :param images: (N, C, H, W).
    :param explainer: ``f(model, images, targets) -> (N, H, W) maps``, or a mapping of method
        names to such functions (:func:`cam_explainer`, :func:`edge_explainer`).
    :param targets: the explained class per image (default: the trained model's prediction),
        the same at every depth.
    :param blocks: block names (default :func:`model_blocks`), input to output.
    :param seed: the re-initialisations' seed.

    Costs ``(1 + B) * len(modes)`` explanations per method, B the number of blocks.

    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <...>
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
    ...                     nn.Flatten(), nn.Linear(4, 3)).eval()
    >>> r = randomisation_test(net, torch.rand(2, 3, 8, 8), {"edges": edge_explainer})
    >>> r.blocks, r.cascading["edges"]["ssim"].shape, r.passes()
    (['0', '4'], (3, 2), {'edges': False})
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    images = check_images(images)
    explainers = dict(explainer) if isinstance(explainer, Mapping) else {"method": explainer}
    for name, f in explainers.items():
        if not callable(f):
            raise TypeError(f"explainer {name!r} must be callable, got {type(f).__name__}")
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ValueError(f"modes must be a non-empty subset of {MODES}, got {modes!r}")
    names = model_blocks(model) if blocks is None else list(blocks)
    known = dict(model.named_modules())
    missing = [b for b in names if b not in known]
    if missing or not names:
        raise ValueError(f"blocks must name modules of the model, unknown: {missing or names}")
    trained = copy.deepcopy(model)  # even the forward below runs on a copy: batch norm in
    with torch.no_grad():           # training mode would update the model's running statistics
        logits = extract_logits(trained(images), images.shape[0]).detach().cpu()
    t = (logits.argmax(1).numpy() if targets is None
         else _check_classes(targets, images.shape[0], logits.shape[1], "targets"))
    reference = {n: _explain(f, trained, images, t, n) for n, f in explainers.items()}
    del trained
    steps: list[tuple[str, int, list[str]]] = []
    if "cascading" in modes:
        steps += [("cascading", k, names[len(names) - k:]) for k in range(1, len(names) + 1)]
    if "independent" in modes:
        steps += [("independent", b, [names[b]]) for b in range(len(names))]
    results: dict[str, dict[str, dict[str, list[np.ndarray]]]] = {
        mode: {n: {m: [] for m in MEASURES} for n in explainers} for mode in modes}
    for n in explainers:
        if "cascading" in modes:
            for m, v in _similarities(reference[n], reference[n]).items():
                results["cascading"][n][m].append(v)
    iterator = steps
    if progress:
        from tqdm import tqdm  # type: ignore[import-untyped]  # the text bar: no widget warning in notebooks
        iterator = tqdm(steps, desc="randomisation", unit="model")
    for mode, _, randomised in iterator:
        copy_ = copy.deepcopy(model)
        randomise_blocks(copy_, randomised, seed)
        for n, f in explainers.items():
            for m, v in _similarities(reference[n], _explain(f, copy_, images, t, n)).items():
                results[mode][n][m].append(v)
        del copy_
    stacked = {mode: {n: {m: np.stack(v) for m, v in per.items()} for n, per in by.items()}
               for mode, by in results.items()}
    return Randomisation(list(explainers), names, stacked.get("cascading", {}), stacked.get("independent", {}))
