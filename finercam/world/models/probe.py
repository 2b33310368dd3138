"""The paper's setting in the bird world: a linear probe on a frozen pretrained backbone.

Finer-CAM's authors explain linear classifiers trained on frozen CLIP / DINOv2 features, where
similar classes get similar classifier weights. :class:`LinearProbe` is that model here: the
ImageNet EfficientNet-Lite0 of :func:`finercam.world.models.imagenet.load_imagenet`, frozen, and
one ``nn.Linear`` trained on the bird world, as ONE module whose layers can be explained::

    input (3, 96, 96) in [0, 1]  (the bird world's images, like the CNN and the ViT)
    -> bilinear resize to ``input_size`` (default 224) unless already, (x - 0.5) / 0.5
    -> EfficientNet-Lite0 stem, _blocks.0 .. _blocks.15, _conv_head, _bn1, ReLU6   (frozen)
    -> ``pooling`` of each of ``feature_layers`` (default: the average of _bn1), concatenated
    -> _fc: nn.Linear(sum of their pooled widths, 16)                              (trained)

The module keeps the backbone's own attribute names (``_conv_stem``, ``_blocks``, ``_bn1``), so
the layers are addressed as in :data:`finercam.world.models.imagenet.TARGET_LAYERS`; the default
target layer is ``_bn1`` (1,280 channels, 5 x 5 at 160, 7 x 7 at 224). Only ``_fc`` is shipped
(``weights/probe.pt``); the backbone comes from the ``imagenet`` extra.

Training (``python -m finercam.world.models.probe --out finercam/world/models/weights/probe.pt``)
renders the images, extracts the pooled features once (cached as ``.npy`` under ``--cache``),
fits the linear head by full-batch L-BFGS on the softmax cross-entropy with an L2 penalty and
measures the accuracy on fresh test images (another split). A head trained by ``finercam probe
--backbone imagenet`` (on a CUB-format tree of the bird world's renders) becomes the world's probe
with ``python -m finercam.world.models.probe --from-probe-file FILE --out PATH``
(:func:`from_probe_file`); :func:`load_probe` also reads such a file as is. Its ``pooling`` is
one of :data:`finercam.probe.POOLINGS` (:func:`finercam.probe.pool_features`), and its ``_bn1``
is the output of the ``_bn1`` module itself (``activation`` False: what a hook on ``_bn1``
sees, before the ReLU6), where the original probe pools the ReLU6 of it (``activation`` True).

>>> from finercam.world.models.probe import LinearProbe, load_probe
>>> probe = load_probe()
>>> isinstance(probe, LinearProbe), probe.target_layer, probe(torch.zeros(1, 3, 96, 96)).shape
(True, '_bn1', torch.Size([1, 16]))
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import datasets
from . import WEIGHTS_DIR

__all__ = ["DEFAULT_TARGET_LAYER", "FEATURE_LAYERS", "INPUT_SIZE", "LinearProbe", "build_probe",
           "pooled_features", "fit_head", "load_probe", "from_probe_file"]

#: The layer to explain: the backbone's last feature map (before ReLU6), as for the ImageNet network.
DEFAULT_TARGET_LAYER = "_bn1"
#: The pooled layers the linear head reads by default.
FEATURE_LAYERS: Tuple[str, ...] = ("_bn1",)
#: The backbone's input size; the bird world's 96 x 96 images are resized to it inside the model.
INPUT_SIZE = 224
#: Channels of every block output of EfficientNet-Lite0, and of the head (``_bn1``).
_CHANNELS = {**{f"_blocks.{i}": c for i, c in enumerate(
    (16, 24, 24, 40, 40, 80, 80, 80, 112, 112, 112, 192, 192, 192, 192, 320))}, "_bn1": 1280}


def _check_layers(feature_layers: Sequence[str]) -> Tuple[str, ...]:
    layers = tuple(feature_layers)
    if not layers or any(name not in _CHANNELS for name in layers):
        raise ValueError(f"feature_layers must be a non-empty subset of {tuple(_CHANNELS)}, got {layers!r}")
    return layers


class LinearProbe(nn.Module):
    """Frozen EfficientNet-Lite0 + average pooling + one linear layer (see the module doc).

    ``backbone`` is an ``efficientnet_lite_pytorch.EfficientNet``; its modules are shared, not
    copied, and frozen (``requires_grad`` False). The output is (N, num_classes) logits.
    """

    default_target_layer = DEFAULT_TARGET_LAYER
    target_layer = DEFAULT_TARGET_LAYER
    # The backbone's modules, shared (set in __init__ by name).
    _conv_stem: nn.Module
    _bn0: nn.Module
    _blocks: nn.ModuleList
    _conv_head: nn.Module
    _bn1: nn.Module
    _swish: nn.Module
    class_names: Sequence[str]

    def __init__(self, backbone: nn.Module, num_classes: int = 16,
                 feature_layers: Sequence[str] = FEATURE_LAYERS, input_size: int = INPUT_SIZE,
                 pooling: str = "avg", activation: bool = True) -> None:
        from ...probe import POOLINGS

        super().__init__()
        self.feature_layers = _check_layers(feature_layers)
        self.input_size = int(input_size)
        if pooling not in POOLINGS or pooling == "cls":
            raise ValueError(f"pooling must be one of {tuple(p for p in POOLINGS if p != 'cls')}, got {pooling!r}")
        self.pooling, self.activation = pooling, bool(activation)
        for name in ("_conv_stem", "_bn0", "_blocks", "_conv_head", "_bn1", "_swish"):
            setattr(self, name, getattr(backbone, name))
        for p in self.parameters():
            p.requires_grad_(False)
        widths = {"avgmax": 2, "grid2": 4}.get(pooling, 1)  # features per channel
        self._fc = nn.Linear(widths * sum(_CHANNELS[n] for n in self.feature_layers), num_classes)
        self.config = {"num_classes": num_classes, "feature_layers": list(self.feature_layers),
                       "input_size": self.input_size, "pooling": pooling, "activation": self.activation}

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """The head's input: ``feature_layers`` of images x in [0, 1], each pooled by ``pooling``
        (:func:`finercam.probe.pool_features`), concatenated."""
        from ...probe import pool_features

        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        x = self._swish(self._bn0(self._conv_stem((x - 0.5) / 0.5)))
        taps: Dict[str, torch.Tensor] = {}
        for i, block in enumerate(self._blocks):
            x = block(x)
            taps[f"_blocks.{i}"] = x
        bn1 = self._bn1(self._conv_head(x))
        taps["_bn1"] = self._swish(bn1) if self.activation else bn1
        return torch.cat([pool_features(taps[n], self.pooling) for n in self.feature_layers], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.pooled(x))


def build_probe(**config) -> LinearProbe:
    """A probe on the pretrained backbone with an untrained head (needs the ``imagenet`` extra).

    >>> build_probe(feature_layers=("_blocks.12", "_bn1"))._fc.in_features   # 192 + 1280
    1472
    """
    from .imagenet import load_imagenet

    return LinearProbe(load_imagenet().model, **config).eval()


@torch.no_grad()
def pooled_features(probe: LinearProbe, n: int, split: str, seed: int = 0, batch: int = 32,
                    cache: Optional[Path] = None, log=print, render_size: Optional[int] = None
                    ) -> Tuple[np.ndarray, np.ndarray]:
    """Pooled features (n, D) float32 and labels (n,) of the first ``n`` images of ``split``,
    rendered at ``render_size`` (default: the probe's input size).

    With ``cache``, they are read from / written to ``cache/<split>_s<seed>_n<n>_r<render>_<size>_<layers>.npy``.

    >>> feats, labels = pooled_features(build_probe(input_size=64), 2, "test", log=None)
    >>> feats.shape, labels.tolist()
    ((2, 1280), [0, 1])
    """
    render_size = probe.input_size if render_size is None else int(render_size)
    tag = f"{split}_s{seed}_n{n}_r{render_size}_{probe.input_size}_{'+'.join(probe.feature_layers)}"
    if cache is not None and (Path(cache) / f"{tag}.npy").is_file():
        return np.load(Path(cache) / f"{tag}.npy"), np.load(Path(cache) / f"{tag}_labels.npy")
    feats, labels = [], []
    t0 = time.time()
    for lo in range(0, n, batch):
        b = datasets.generate(min(batch, n - lo), seed=seed, split=split, start=lo, size=render_size)
        feats.append(probe.pooled(torch.from_numpy(b.images)).numpy())
        labels.append(b.labels)
        if log and (lo // batch) % 10 == 0:
            log(f"  features {split}: {lo + len(b.labels)}/{n} ({time.time() - t0:.0f} s)")
    out = np.concatenate(feats).astype(np.float32), np.concatenate(labels).astype(np.int64)
    if cache is not None:
        Path(cache).mkdir(parents=True, exist_ok=True)
        np.save(Path(cache) / f"{tag}.npy", out[0])
        np.save(Path(cache) / f"{tag}_labels.npy", out[1])
    return out


def fit_head(features: np.ndarray, labels: np.ndarray, num_classes: int = 16, l2: float = 1e-2,
             steps: int = 200) -> Tuple[np.ndarray, np.ndarray]:
    """Weight (C, D) and bias (C,) minimising the mean softmax cross-entropy
    :math:`-\\frac{1}{N}\\sum_i \\log \\mathrm{softmax}(W x_i + b)_{y_i} + \\lambda \\lVert W \\rVert^2`
    by full-batch L-BFGS on standardised features (the scaling is folded back into W and b), with
    :math:`\\lambda` = ``l2`` acting on the standardised weights.

    >>> x = np.array([[0.0, 1.0], [1.0, 0.0], [0.1, 0.9], [0.9, 0.2]], np.float32)
    >>> w, b = fit_head(x, np.array([0, 1, 0, 1]), num_classes=2)
    >>> (x @ w.T + b).argmax(1).tolist()
    [0, 1, 0, 1]
    """
    x = torch.from_numpy(features).double()
    mu, sd = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mu) / sd
    y = torch.from_numpy(labels)
    w = torch.zeros(num_classes, z.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=steps, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(z @ w.T + b, y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    w_raw = (w / sd).detach()
    b_raw = (b - (w / sd * mu).sum(1)).detach()
    return w_raw.float().numpy(), b_raw.float().numpy()


def load_probe(path: Optional[Path] = None) -> LinearProbe:
    """The trained probe (``weights/probe.pt`` or ``path``), float32, eval mode, class names
    :data:`finercam.world.datasets.CLASS_NAMES`; needs the ``imagenet`` extra.

    >>> probe = load_probe()
    >>> probe.target_layer, probe._fc.out_features, probe.class_names[0]
    ('_bn1', 16, 'rosy finch')
    """
    path = WEIGHTS_DIR / "probe.pt" if path is None else Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no probe weights at {path}; train them with "
                                "`python -m finercam.world.models.probe --out PATH`")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if "format" in ckpt:  # a `finercam probe` file
        ckpt = from_probe_file(path)
    probe = build_probe(**ckpt["config"])
    probe._fc.load_state_dict({k: v.float() for k, v in ckpt["state_dict"].items()})
    probe.class_names = datasets.CLASS_NAMES
    return probe.eval()


def from_probe_file(path: Path) -> Dict[str, Any]:
    """The world's checkpoint (``state_dict``, ``config``, ``accuracy``, ``record``) for a head that
    ``finercam probe --backbone imagenet --layer L --pooling P`` wrote: the same frozen backbone and
    normalisation ((x - 0.5) / 0.5 at the file's input size), the same layer taken as a hook on it
    sees it (``activation`` False), the same pooling (``auto`` is the average of a map) and head.
    A file from another backbone or a layer the probe lacks is a ``ValueError``."""
    from ...probe import load_checkpoint

    ckpt = load_checkpoint(path)
    pre = ckpt["preprocessing"]
    if ckpt["backbone"] != "imagenet" or list(pre["mean"]) != [0.5] * 3 or list(pre["std"]) != [0.5] * 3:
        raise ValueError(f"{path}: the world's probe takes a head on --backbone imagenet, got {ckpt['backbone']!r}")
    layer = ckpt["feature_layer"]
    _check_layers([layer])
    weight = ckpt["head"]["weight"].float()
    config = {"num_classes": int(weight.shape[0]), "feature_layers": [layer], "input_size": int(pre["size"]),
              "pooling": "avg" if ckpt["pooling"] == "auto" else ckpt["pooling"], "activation": False}
    record = dict(ckpt.get("record", {}))
    return {"state_dict": {"weight": weight, "bias": ckpt["head"]["bias"].float()}, "config": config,
            "accuracy": float(record.get("accuracy", float("nan"))), "record": record}


def _accuracy(w: np.ndarray, b: np.ndarray, feats: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean((feats @ w.T + b).argmax(1) == labels))


def train_probe(out: Path, n_train: int, n_test: int, feature_layers: Sequence[str], input_size: int,
                l2: float, seed: int = 0, cache: Optional[Path] = None) -> Dict[str, object]:
    """Extract features, fit the head, measure test accuracy, write ``out``; returns the record."""
    t0 = time.time()
    probe = build_probe(feature_layers=feature_layers, input_size=input_size)
    xtr, ytr = pooled_features(probe, n_train, "train", seed, cache=cache)
    xte, yte = pooled_features(probe, n_test, "test", seed, cache=cache)
    w, b = fit_head(xtr, ytr, l2=l2)
    record: Dict[str, object] = {"n_train": n_train, "n_test": n_test, "l2": l2, "seed": seed,
              "train_accuracy": _accuracy(w, b, xtr, ytr), "test_accuracy": _accuracy(w, b, xte, yte),
              "seconds": round(time.time() - t0, 1)}
    state = {"weight": torch.from_numpy(w), "bias": torch.from_numpy(b)}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state, "config": probe.config, "accuracy": record["test_accuracy"],
                "record": record}, out)
    return record


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m finercam.world.models.probe --out PATH``: train the probe's head and save it."""
    p = argparse.ArgumentParser(prog="python -m finercam.world.models.probe", description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=WEIGHTS_DIR / "probe.pt")
    p.add_argument("--n-train", type=int, default=4800)
    p.add_argument("--n-test", type=int, default=1024)
    p.add_argument("--layers", default=",".join(FEATURE_LAYERS), help="comma-separated pooled layers")
    p.add_argument("--input-size", type=int, default=INPUT_SIZE)
    p.add_argument("--l2", type=float, default=1e-2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", type=Path, default=Path("out/probe_cache"), help="feature cache folder")
    p.add_argument("--from-probe-file", type=Path, default=None, metavar="FILE",
                   help="write the head of a `finercam probe --backbone imagenet` file to --out instead of training")
    args = p.parse_args(argv)
    if args.from_probe_file is not None:
        ckpt = from_probe_file(args.from_probe_file)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        torch.save(ckpt, args.out)
        print({"out": str(args.out), **ckpt["config"], "accuracy": ckpt["accuracy"]})
        return 0
    torch.set_num_threads(1)
    record = train_probe(args.out, args.n_train, args.n_test, args.layers.split(","), args.input_size,
                         args.l2, args.seed, args.cache)
    print(record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
