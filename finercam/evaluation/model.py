"""The model under evaluation, seen once before anything is written: the first batch is
forwarded (timed, with the target layer's shape captured) and its logits checked.

A model with one output, a layer without a feature map, a label outside the model's classes or
labels that agree with the model's top-5 classes for less than :data:`MIN_LABEL_AGREEMENT` of
the first batch (a class order or preprocessing mismatch) stop the run with an
:class:`EvaluationInputError` (a ``ValueError``); outputs that look like probabilities give a
``UserWarning`` (:func:`warn_if_probabilities`).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..capture import extract_logits
from ..progress import timed_forward
from .data import Unreadable, split_item

__all__ = ["MIN_LABEL_AGREEMENT", "EvaluationInputError", "FirstLook", "check_logits", "first_look",
           "warn_if_probabilities"]

#: The least share of the first batch whose label is among the model's top-5 classes.
MIN_LABEL_AGREEMENT = 0.05


class EvaluationInputError(ValueError):
    """The model, the data and the output folder of a run do not fit together, as found once
    they meet (the first batch, the resume journal): labels outside the model's classes or far
    from its predictions, a layer without a feature map, a model without logits, no readable
    image, an ``out_dir`` of another run. Raised before anything is written; the command line
    prints it as one line, while any other ``ValueError`` of a run keeps its traceback.
    """


def warn_if_probabilities(logits, source: str = "the model") -> bool:
    """Warn (``UserWarning``) when outputs look like probabilities: every row in [0, 1] and
    summing to 1 (within 1e-3). Finer-CAM's objective ``y_c - gamma * mean_t y_t`` is defined on
    logits; returns whether it warned.

    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn_if_probabilities(np.array([[0.2, 0.8]])), len(caught)
    (True, 1)
    >>> warn_if_probabilities(np.array([[2.0, -1.0]]))
    False
    """
    y = np.asarray(logits, dtype=np.float64)
    if y.ndim != 2 or y.shape[1] < 2 or not np.isfinite(y).all():
        return False
    if y.min() >= 0.0 and y.max() <= 1.0 and np.allclose(y.sum(axis=1), 1.0, atol=1e-3):
        warnings.warn(f"{source} returns probabilities (rows in [0, 1] summing to 1), not logits: "
                      "Finer-CAM's objective y_c - gamma * mean y_t is defined on logits; remove "
                      "the final softmax", UserWarning, stacklevel=2)
        return True
    return False


@dataclass(frozen=True)
class FirstLook:
    """What the first batch shows before anything is written."""

    seconds_per_image: float   # its forward, timed
    channels: int              # of the target layer(s): Score-CAM's forwards per image
    example: torch.Tensor      # one input, for the chunk calibration

    @property
    def pixels(self) -> int:
        return int(self.example.shape[-1] * self.example.shape[-2])


def first_batch(data, n_images: int, batch_size: int) -> tuple[torch.Tensor, np.ndarray]:
    """The readable items among the first ``batch_size`` indices (or the first readable one)."""
    items = []
    for i in range(n_images):
        split = split_item(data[i], i)
        if not isinstance(split, Unreadable):
            items.append(split)
        if items and (len(items) == batch_size or i + 1 >= batch_size):
            break
    if not items:
        raise EvaluationInputError(f"dataset: none of its {n_images} images can be read")
    return torch.stack([it.image for it in items]), np.array([it.label for it in items], np.int64)


def _layer_channels(out, name) -> int:
    out = out[0] if isinstance(out, (tuple, list)) else out
    shape = tuple(getattr(out, "shape", ()))
    if len(shape) not in (3, 4):
        raise EvaluationInputError(f"target_layer {name!r} gives outputs of shape {shape}: a CAM needs a "
                         "feature map (N, K, h, w) or tokens (N, T, D)")
    return int(shape[1] if len(shape) == 4 else shape[-1])


def check_logits(logits: np.ndarray, labels: np.ndarray, target: str,
                 class_names: Sequence[str] | None = None) -> None:
    """The model's first outputs: logits of at least two classes (as many as ``class_names``)
    that cover the labels and, for ``target="label"``, agree with the labels often enough to be
    in the same class order."""
    if logits.ndim != 2:
        raise EvaluationInputError(f"model: must return (N, classes) logits, got shape {logits.shape}")
    n, classes = logits.shape
    if classes < 2:
        raise EvaluationInputError(f"model: returns {classes} output per image; Finer-CAM compares the "
                         "target with other classes and needs logits for at least 2")
    if class_names is not None and len(class_names) != classes:
        raise EvaluationInputError(f"labels holds {len(class_names)} names but the model has {classes} classes")
    warn_if_probabilities(logits, "the model")
    if target != "label":
        return
    if labels.min() < 0 or labels.max() >= classes:
        raise EvaluationInputError(f"labels: the data set has label {int(labels.max())} but the model has "
                         f"{classes} classes (give labels naming the model's classes, or "
                         "target='predicted')")
    _check_agreement(logits, labels)


def _check_agreement(logits: np.ndarray, labels: np.ndarray) -> None:
    n = len(labels)
    top = np.argsort(-logits, axis=1)[:, :5]
    hits = int((top == labels[:, None]).any(axis=1).sum())
    if hits < MIN_LABEL_AGREEMENT * n:
        raise EvaluationInputError(
            f"labels: the data set's labels are among the model's top-5 classes for {hits} of "
            f"the first {n} images (less than {MIN_LABEL_AGREEMENT:.0%}). Likely causes: the "
            "label ids do not follow the model's class order (a folder's label is its index "
            "among the sorted folder names), or the images are not preprocessed as the model "
            "expects (size, mean, std, transform). Options: labels (--labels FILE, the model's "
            "class names in output order, matched to the folder names) or target='predicted' "
            "(--target predicted) to explain the model's own prediction")


def first_look(net, device, layer, data, cfg, class_names=None) -> FirstLook:
    """Forward the first batch (timed), with the target layer's shape captured; check it."""
    from ..layers import resolve_layers

    images, labels = first_batch(data, cfg.n_images, cfg.batch_size)
    images = images.to(device)
    channels: dict = {}

    def keep_channels(name):
        def hook(module, args, out) -> None:  # returns None: the output is left as it is
            channels.setdefault(name, _layer_channels(out, name))
        return hook

    handles = [module.register_forward_hook(keep_channels(name))
               for name, module in resolve_layers(net, layer)]
    try:
        out, seconds = timed_forward(net, images)
    finally:
        for h in handles:
            h.remove()
    logits = extract_logits(out, len(images)).detach().double().cpu().numpy()
    check_logits(logits, labels, cfg.target, class_names)
    return FirstLook(seconds, sum(channels.values()), images[0])
