"""Our own small models for the bird world, with shipped weights that load offline.

``load("cnn")`` / ``load("vit")`` return an eval-mode model (float32) with the trained weights
from ``finercam/world/models/weights``; each model names the layer to explain in
``model.default_target_layer`` (also :func:`default_target_layer`).  Both take float images
(B, 3, 96, 96) in [0, 1] (normalisation is inside the model) and return 16 logits, one per
:data:`finercam.world.datasets.CLASS_NAMES`.

>>> from finercam.world.models import build, default_target_layer
>>> default_target_layer("cnn"), default_target_layer("vit")
('block3', 'blocks.3.norm1')
>>> build("cnn").fc.out_features
16
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch
from torch import nn

from .cnn import SmallCNN
from .vit import SmallViT

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MODELS = ("cnn", "vit")  # trained by `python -m finercam.world.models.train`
#: Every embedded model :func:`load` knows: the two above and the linear probe.
EMBEDDED = MODELS + ("probe",)
_CLASSES = {"cnn": SmallCNN, "vit": SmallViT}


def _check_name(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if name not in _CLASSES:
        raise ValueError(f"name must be one of {MODELS}, got {name!r}")
    return name


def build(name: str, **config: Any) -> nn.Module:
    """A freshly initialised model (training mode); ``config`` overrides the architecture."""
    return _CLASSES[_check_name(name)](**config)


def checkpoint(name: str, path: Optional[Union[str, Path]] = None) -> Dict[str, Any]:
    """The checkpoint of ``name``: state dict (float16), config, accuracy, training record.

    ``path`` defaults to the shipped file ``WEIGHTS_DIR / f"{name}.pt"``.

    >>> ckpt = checkpoint("cnn")
    >>> ckpt["config"]["num_classes"], next(iter(ckpt["state_dict"].values())).dtype
    (16, torch.float16)
    """
    path = WEIGHTS_DIR / f"{_check_name(name)}.pt" if path is None else Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no shipped weights for {name!r} at {path}; train them with "
                                f"`python -m finercam.world.models.train --model {name}`")
    return torch.load(path, map_location="cpu", weights_only=True)


def load(name: str, path: Optional[Union[str, Path]] = None) -> nn.Module:
    """The trained model ``"cnn"``, ``"vit"`` or ``"probe"``, float32, in eval mode, loaded offline.

    ``path`` loads another checkpoint written by ``python -m finercam.world.models.train`` (for
    the probe: by ``python -m finercam.world.models.probe``). The probe (the paper's setting: a
    linear head on the frozen ImageNet EfficientNet-Lite0, :mod:`finercam.world.models.probe`)
    needs the extra ``[imagenet]`` and birds rendered at its ``input_size`` (224).

    >>> model = load("cnn")
    >>> type(model).__name__, model.training, model.default_target_layer
    ('SmallCNN', False, 'block3')
    >>> model(torch.zeros(1, 3, 96, 96)).shape
    torch.Size([1, 16])
    """
    if name == "probe":
        from .probe import load_probe

        return load_probe(None if path is None else Path(path))
    ckpt = checkpoint(name, path)
    model = build(name, **ckpt["config"])
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()})
    return model.eval()


def default_target_layer(name: str) -> str:
    """Dotted name of the layer to explain for model ``name`` at its default architecture."""
    return str(build(_check_name(name)).default_target_layer)


__all__ = ["EMBEDDED", "MODELS", "SmallCNN", "SmallViT", "WEIGHTS_DIR", "build", "checkpoint", "default_target_layer", "load"]
