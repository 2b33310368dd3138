"""The paper's classifier: a linear head on a frozen backbone (Sec. 4.1, Table 4), as one module.

:class:`ProbeModel` runs the backbone, takes the output of one feature layer, pools it and applies
a linear layer: :math:`y = W\\,\\mathrm{pool}(f_\\ell(x)) + b`. Pooling: ``"avg"`` (the mean over
the positions: the spatial grid of an ``(N, C, H, W)`` map, the tokens of an ``(N, T, D)``
sequence), ``"max"``, ``"cls"`` (token 0 of a sequence), ``"auto"`` (``avg`` for a map, ``cls``
for a sequence), ``"avgmax"`` (``avg`` and ``max`` concatenated: :math:`2C` features, so a small
part that fires strongly is not averaged away) or ``"grid2"`` (a map's mean over each cell of a
2 x 2 grid, ``adaptive_avg_pool2d`` cells, channel-major: :math:`4C` features, so the head can
tell where on the bird a channel fires). Every pooling is a differentiable function of the
feature layer's output (``max`` through its arg-max), so Grad-CAM and Finer-CAM on that layer
see the head's true gradient. The backbone's layers stay explainable: ``model.default_target_layer`` is
``"backbone.<feature layer>"``, and any layer under ``backbone.`` can be named.

Training (:func:`train_probe`) follows the paper: the backbone frozen, the features extracted once
(:func:`extract_features`: cached in a folder chunk by chunk, so an interrupted extraction resumes
where it stopped; a progress bar with images/s and ETA), then the head fitted by Adam with
learning rate 3e-4 for 100 epochs (:data:`PAPER_OPTIMISER`; mini-batches of 256 shuffled
features, the softmax cross-entropy, no weight decay). :func:`accuracy` is the top-1 accuracy.

:func:`save_probe` writes one file holding the head, the feature layer, the pooling, the class
names, the preprocessing and how to rebuild the backbone (a spec string the command line resolves:
``imagenet``, ``PKG:FACTORY``, ``hf:DIR``); :func:`load_checkpoint` reads it back and
:meth:`ProbeModel.from_checkpoint` rebuilds the module around a backbone.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

__all__ = ["PAPER_OPTIMISER", "preprocessing_view", "POOLINGS", "FORMAT", "ProbeModel", "pool_features", "extract_features",
           "fit_linear_head", "accuracy", "save_probe", "load_checkpoint", "train_probe"]

#: The paper's optimiser settings (Sec. 4.1): Adam, learning rate 3e-4, 100 epochs.
PAPER_OPTIMISER: Dict[str, Any] = {"optimiser": "adam", "lr": 3e-4, "epochs": 100, "batch_size": 256,
                                   "weight_decay": 0.0}
POOLINGS = ("auto", "avg", "max", "cls", "avgmax", "grid2")
FORMAT = "finercam-probe/1"
#: Images per cached feature file.
CACHE_CHUNK = 256


def _first_tensor(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    hidden = getattr(out, "last_hidden_state", None)
    if isinstance(hidden, torch.Tensor):
        return hidden
    raise TypeError(f"the feature layer returns {type(out).__name__}, not a tensor")


def pool_features(features: torch.Tensor, pooling: str) -> torch.Tensor:
    """``(N, C, H, W)`` or ``(N, T, D)`` -> ``(N, C)`` / ``(N, D)`` by ``pooling``; ``(N, D)`` as is.

    >>> x = torch.arange(8.0).reshape(1, 2, 2, 2)
    >>> pool_features(x, "avg").tolist(), pool_features(x, "max").tolist()
    ([[1.5, 5.5]], [[3.0, 7.0]])
    >>> pool_features(torch.arange(6.0).reshape(1, 3, 2), "auto").tolist()   # a sequence: its token 0
    [[0.0, 1.0]]
    >>> pool_features(x, "avgmax").tolist()                                  # avg then max
    [[1.5, 5.5, 3.0, 7.0]]
    >>> pool_features(torch.arange(16.0).reshape(1, 1, 4, 4), "grid2").tolist()  # 2 x 2 cells
    [[2.5, 4.5, 10.5, 12.5]]
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if features.ndim == 2:
        return features
    if features.ndim == 4:
        if pooling == "cls":
            raise ValueError("pooling 'cls' needs a token sequence (N, T, D); the layer gives a map (N, C, H, W)")
        if pooling == "grid2":
            return nn.functional.adaptive_avg_pool2d(features, 2).flatten(1)
        if pooling == "avgmax":
            return torch.cat([features.mean(dim=(2, 3)), features.amax(dim=(2, 3))], dim=1)
        return features.amax(dim=(2, 3)) if pooling == "max" else features.mean(dim=(2, 3))
    if features.ndim == 3:
        if pooling == "grid2":
            raise ValueError("pooling 'grid2' needs a map (N, C, H, W); the layer gives a token sequence (N, T, D)")
        if pooling in ("cls", "auto"):
            return features[:, 0]
        if pooling == "avgmax":
            return torch.cat([features.mean(dim=1), features.amax(dim=1)], dim=1)
        return features.amax(dim=1) if pooling == "max" else features.mean(dim=1)
    raise ValueError(f"the feature layer's output must be (N, D), (N, T, D) or (N, C, H, W), got {tuple(features.shape)}")


class ProbeModel(nn.Module):
    """Frozen ``backbone`` + pooled ``feature_layer`` + linear ``head`` (see the module doc).

    The backbone's parameters are frozen (``requires_grad`` False); its forward runs in full and
    the feature layer's output is taken by a forward hook that lives only during the call (so a
    hook an explainer puts on that layer first sees, and may replace, the output the head reads).

    >>> backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    >>> model = ProbeModel(backbone, "0", "avg", nn.Linear(4, 2), class_names=("a", "b"))
    >>> model(torch.zeros(1, 3, 8, 8)).shape, model.default_target_layer
    (torch.Size([1, 2]), 'backbone.0')
    """

    def __init__(self, backbone: nn.Module, feature_layer: str, pooling: str, head: nn.Linear,
                 class_names: Optional[Sequence[str]] = None) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        try:
            backbone.get_submodule(feature_layer)
        except AttributeError:
            raise ValueError(f"feature_layer {feature_layer!r} is not a module of the backbone") from None
        self.backbone = backbone
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.feature_layer, self.pooling, self.head = feature_layer, pooling, head
        self.default_target_layer = self.target_layer = f"backbone.{feature_layer}"
        if class_names is not None:
            self.class_names = tuple(class_names)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """The head's input: the feature layer's output for images ``x``, pooled."""
        taken: Dict[str, Any] = {}

        def take(module: nn.Module, args: Any, out: Any) -> None:
            taken["out"] = out

        handle = self.backbone.get_submodule(self.feature_layer).register_forward_hook(take)
        try:
            self.backbone(x)
        finally:
            handle.remove()
        return pool_features(_first_tensor(taken["out"]), self.pooling)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pooled(x))

    @classmethod
    def from_checkpoint(cls, checkpoint: Dict[str, Any], backbone: nn.Module) -> "ProbeModel":
        """The module a :func:`save_probe` file describes, around ``backbone``, in eval mode."""
        weight = checkpoint["head"]["weight"]
        head = nn.Linear(weight.shape[1], weight.shape[0])
        head.load_state_dict({k: v.float() for k, v in checkpoint["head"].items()})
        model = cls(backbone, checkpoint["feature_layer"], checkpoint["pooling"], head,
                    checkpoint.get("class_names"))
        return model.eval()


def _dataset_key(parts: Dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


@torch.no_grad()
def extract_features(model: ProbeModel, dataset: Any, *, identity: Dict[str, Any], cache: Optional[Path] = None,
                     batch_size: int = 32, device: Any = None, progress: bool = True,
                     label: str = "features") -> Tuple[np.ndarray, np.ndarray]:
    """Pooled features ``(N, D)`` float32 and labels ``(N,)`` of every item of ``dataset``.

    With ``cache``, features are kept in ``cache/<key>/chunk_<k>.npz`` (:data:`CACHE_CHUNK` images
    each), ``key`` a hash of ``identity`` (what decides the features: backbone, layer, pooling,
    data spec, preprocessing) and the data set's length: a run that stops resumes at the first
    missing chunk, and a finished extraction is read back without a forward.
    """
    from tqdm.auto import tqdm  # type: ignore[import-untyped]

    n = len(dataset)
    folder = None
    if cache is not None:
        folder = Path(cache) / _dataset_key({**identity, "n": n})
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "identity.json").write_text(json.dumps({**identity, "n": n}, indent=1, default=str))
    chunks = range(math.ceil(n / CACHE_CHUNK))
    feats: list = []
    labels: list = []
    todo = [k for k in chunks if folder is None or not (folder / f"chunk_{k:05d}.npz").is_file()]
    bar = tqdm(total=sum(min(CACHE_CHUNK, n - k * CACHE_CHUNK) for k in todo), unit="img", desc=label,
               disable=not progress or not todo, dynamic_ncols=True)
    for k in chunks:
        path = None if folder is None else folder / f"chunk_{k:05d}.npz"
        if path is not None and path.is_file():
            with np.load(path) as z:
                feats.append(z["features"])
                labels.append(z["labels"])
            continue
        f_k, y_k = [], []
        for lo in range(k * CACHE_CHUNK, min(n, (k + 1) * CACHE_CHUNK), batch_size):
            items = [dataset[i] for i in range(lo, min(n, (k + 1) * CACHE_CHUNK, lo + batch_size))]
            x = torch.stack([it[0] for it in items])
            if device is not None:
                x = x.to(device)
            f_k.append(model.pooled(x).float().cpu().numpy())
            y_k.append(np.array([int(it[1]) for it in items], np.int64))
            bar.update(len(items))
        feats.append(np.concatenate(f_k))
        labels.append(np.concatenate(y_k))
        if path is not None:
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, features=feats[-1], labels=labels[-1])
            tmp.replace(path)  # a chunk is there whole or not at all
    bar.close()
    return np.concatenate(feats).astype(np.float32), np.concatenate(labels).astype(np.int64)


def fit_linear_head(features: np.ndarray, labels: np.ndarray, num_classes: int, *, lr: float = 3e-4,
                    epochs: int = 100, batch_size: int = 256, weight_decay: float = 0.0, seed: int = 0,
                    progress: bool = True, device: Any = None) -> Tuple[nn.Linear, list]:
    """A linear head fitted by Adam on the softmax cross-entropy (the paper's setting by default),
    :math:`\\min_{W, b} \\frac{1}{N} \\sum_i -\\log \\mathrm{softmax}(W x_i + b)_{y_i}`, over
    ``epochs`` passes of shuffled mini-batches; PyTorch's default initialisation, seeded. Returns
    the head (CPU, float32) and the mean loss of each epoch.

    >>> x = np.array([[0.0, 1.0], [1.0, 0.0]] * 8, np.float32); y = np.array([0, 1] * 8)
    >>> head, losses = fit_linear_head(x, y, 2, lr=0.1, epochs=50, progress=False)
    >>> head(torch.from_numpy(x)).argmax(1).tolist() == y.tolist(), losses[-1] < losses[0]
    (True, True)
    """
    from tqdm.auto import tqdm

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    head = nn.Linear(features.shape[1], num_classes)
    if device is not None:
        head = head.to(device)
    x = torch.from_numpy(np.ascontiguousarray(features, np.float32))
    y = torch.from_numpy(np.asarray(labels, np.int64))
    if device is not None:
        x, y = x.to(device), y.to(device)
    opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    losses = []
    bar = tqdm(range(epochs), unit="epoch", desc="head", disable=not progress, dynamic_ncols=True)
    for _ in bar:
        order = torch.randperm(len(x), generator=g)
        total = 0.0
        for lo in range(0, len(x), batch_size):
            idx = order[lo:lo + batch_size].to(x.device)
            loss = nn.functional.cross_entropy(head(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / max(1, len(x)))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    return head.cpu().float(), losses


@torch.no_grad()
def accuracy(head: nn.Linear, features: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of ``head`` on pooled ``features``: :math:`\\frac{1}{N}\\sum_i [\\arg\\max_c (W x_i + b)_c = y_i]`."""
    if len(labels) == 0:
        return float("nan")
    pred = head(torch.from_numpy(np.ascontiguousarray(features, np.float32))).argmax(1).numpy()
    return float(np.mean(pred == np.asarray(labels)))


def save_probe(path: Any, model: ProbeModel, *, backbone: str, preprocessing: Dict[str, Any],
               record: Dict[str, Any]) -> Path:
    """Write ``model``'s head and what rebuilds it (see the module doc) to ``path``."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": FORMAT, "backbone": backbone, "feature_layer": model.feature_layer,
                "pooling": model.pooling, "head": {k: v.detach().cpu() for k, v in model.head.state_dict().items()},
                "class_names": list(getattr(model, "class_names", ()) or ()), "preprocessing": preprocessing,
                "record": record}, out)
    return out


def load_checkpoint(path: Any) -> Dict[str, Any]:
    """The dict a :func:`save_probe` file holds; a file that is not one is a ``ValueError`` naming it."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no probe file at {p}")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several kinds for a file that is not a checkpoint
        raise ValueError(f"{p} is not a probe file: {type(e).__name__}: {e}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{p} is not a probe file written by `finercam probe` (format {FORMAT})")
    return ckpt


def train_probe(model: ProbeModel, train: Any, test: Any, *, identity: Dict[str, Any], cache: Optional[Path] = None,
                lr: float = 3e-4, epochs: int = 100, batch_size: int = 256, seed: int = 0, device: Any = None,
                progress: bool = True, extract_batch: int = 32
                ) -> Dict[str, Any]:
    """Extract the features of ``train`` and ``test``, fit a new ``model.head`` (its output size
    kept, its input size the features'), measure both accuracies; returns the record (accuracies,
    image counts, settings, seconds)."""
    t0 = time.time()
    xtr, ytr = extract_features(model, train, identity={**identity, "split": "train"}, cache=cache,
                                batch_size=extract_batch, device=device, progress=progress, label="features (train)")
    xte, yte = extract_features(model, test, identity={**identity, "split": "eval"}, cache=cache,
                                batch_size=extract_batch, device=device, progress=progress, label="features (eval)")
    t1 = time.time()
    num_classes = model.head.out_features
    if ytr.size and (ytr.min() < 0 or ytr.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got {ytr.min()}..{ytr.max()}")
    head, losses = fit_linear_head(xtr, ytr, num_classes, lr=lr, epochs=epochs, batch_size=batch_size,
                                   seed=seed, progress=progress, device=device)
    model.head = head.to(next(model.backbone.parameters(), torch.zeros(0)).device)
    record = {"train_images": int(len(ytr)), "eval_images": int(len(yte)), "train_accuracy": accuracy(head, xtr, ytr),
              "accuracy": accuracy(head, xte, yte), "lr": lr, "epochs": epochs, "batch_size": batch_size,
              "seed": seed, "final_loss": losses[-1] if losses else float("nan"), "feature_dim": int(xtr.shape[1]),
              "seconds_features": round(t1 - t0, 2), "seconds_head": round(time.time() - t1, 2)}
    return record


def preprocessing_view(pre: Dict[str, Any]):
    """The :class:`~finercam.evaluation.datasets.View` of a probe file's ``preprocessing`` record
    (``mode`` ``"center_crop"`` or ``"resize"``, ``size``, ``mean``, ``std``): the transform its
    head was trained with, and the photo region it shows.

    >>> v = preprocessing_view({"mode": "resize", "size": 32, "mean": [0.5] * 3, "std": [0.5] * 3})
    >>> v.crop(64, 48)
    (0, 0, 64, 48)
    """
    from .evaluation.datasets import center_crop_view, resize_view

    if pre["mode"] == "center_crop":
        return center_crop_view(pre["size"], mean=pre["mean"], std=pre["std"])
    return resize_view(pre["size"], pre["mean"], pre["std"])
