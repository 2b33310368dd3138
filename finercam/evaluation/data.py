"""What the runner reads: a folder of images, a named data set or a torch ``Dataset``, and the
items they give, split into image, label, object region and parts.

:func:`resolve_data` turns the ``dataset`` argument (``--data`` on the command line) into a
``Dataset``: a folder ``root/<class>/<image>`` (an :class:`ImageFolder`, with ``root/boxes.csv``
if present), a registered data set ``name:ROOT[:split]`` (a reader of :data:`READERS`, e.g.
``cub:/data/CUB_200_2011:test``) or an import string ``package.module:name`` naming a
``Dataset``, a class or a factory (called without arguments). A new reader is one entry of
:data:`READERS`.

An item is ``(image, label)``, ``(image, label, region)`` or ``(image, label, info)`` with
``info`` a dict holding ``"box"`` or ``"mask"`` and optionally ``"parts"``; a dict item
``{"image", "label", "box" | "mask", "parts"}`` also works. :func:`split_item` reads any of
them into an :class:`Item`.
"""
from __future__ import annotations

import csv
import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import torch

from .. import metrics

__all__ = ["DEFAULT_SIZE", "IMAGENET_MEAN", "IMAGENET_STD", "IMAGE_EXTENSIONS", "READERS",
           "ImageFolder", "Item", "Unreadable", "default_transform", "import_object",
           "match_classes", "reads_images", "region_mask", "resolve_data", "split_item"]

#: torchvision's ImageNet normalisation, the input convention of most ImageNet classifiers.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The side of :func:`default_transform`'s output when no size is given.
DEFAULT_SIZE = 224
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".jfif",
                    ".ppm", ".pgm")
#: Registered data sets: ``name`` -> the import string of its reader, a callable
#: ``reader(root, split, *, transform, crop, class_names) -> Dataset`` (``split`` None when the
#: spec names none). Imported only when a spec names it, so ``import finercam`` stays cheap.
READERS: dict[str, str] = {name: f"finercam.evaluation.datasets:RUNNER_READERS.{name}"
                           for name in ("cub", "cars", "aircraft", "birds525", "fishvista")}


def default_transform(size: int = DEFAULT_SIZE, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> Callable:
    """Resize (bilinear, aspect not kept, so the map lies on the whole photo) and normalise.

    The transform maps a PIL RGB image to a ``(3, size, size)`` float tensor
    :math:`(x / 255 - \\mu_c) / \\sigma_c` per channel :math:`c`.

    >>> from PIL import Image
    >>> t = default_transform(4, mean=(0.5,) * 3, std=(0.5,) * 3)
    >>> x = t(Image.new("RGB", (6, 3), (255, 0, 255)))
    >>> tuple(x.shape), x[:, 0, 0].tolist()
    ((3, 4, 4), [1.0, -1.0, 1.0])
    """
    from PIL import Image

    m = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    s = torch.tensor(std, dtype=torch.float32)[:, None, None]

    def transform(image):
        im = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        x = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return (x - m) / s

    return transform


def import_object(spec: str, argument: str):
    """``package.module:name`` (dots allowed after the colon) -> the object; a ``ValueError``
    naming ``argument`` when it cannot be found.

    >>> import_object("os.path:join", "dataset") is os.path.join
    True
    >>> import_object("os.path", "dataset")
    Traceback (most recent call last):
    ...
    ValueError: dataset must look like package.module:name, got 'os.path'
    """
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise ValueError(f"{argument} must look like package.module:name, got {spec!r}")
    mod_name, attr = spec.split(":")
    try:
        obj = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ValueError(f"{argument}: cannot import {mod_name!r}: {exc}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{argument}: {mod_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


# --- items ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unreadable:
    """What a data set returns for an image that cannot be decoded (the runner counts it).

    >>> Unreadable("birds/a/broken.jpg", "OSError: truncated")
    Unreadable(path='birds/a/broken.jpg', reason='OSError: truncated')
    """

    path: str
    reason: str


class Item(NamedTuple):
    """One readable item: a ``(C, H, W)`` image, its label, the object's region (a box
    ``(x0, y0, x1, y1)`` in pixels or an ``(H, W)`` mask; None without one) and its parts (part
    points or masks as the data set gives them; None without)."""

    image: torch.Tensor
    label: int
    region: Any = None
    parts: Any = None


def split_item(item, index: int) -> Item | Unreadable:
    """Any item form of the module docstring -> an :class:`Item` (an :class:`Unreadable` as is).

    >>> it = split_item((torch.zeros(3, 2, 2), 4, {"box": (0, 0, 1, 1), "parts": "p"}), 0)
    >>> it.label, it.region, it.parts
    (4, (0, 0, 1, 1), 'p')
    """
    if isinstance(item, Unreadable):
        return item
    if isinstance(item, dict):
        item = (item["image"], item["label"], item)
    if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
        raise TypeError(f"dataset[{index}] must be (image, label) or (image, label, box_or_mask), "
                        f"got {type(item).__name__}")
    x, y = item[0], item[1]
    region, parts = (item[2] if len(item) == 3 else None), None
    if isinstance(region, dict):  # e.g. (image, label, {"box": ..., "parts": ...})
        info = region
        region, parts = info.get("box", info.get("mask")), info.get("parts")
    if not isinstance(x, torch.Tensor) or x.ndim != 3:
        raise TypeError(f"dataset[{index}] image must be a (C, H, W) tensor, got "
                        f"{type(x).__name__} {tuple(getattr(x, 'shape', ()))}")
    return Item(x, int(y), region, parts)


def region_mask(region, h: int, w: int) -> np.ndarray:
    """A box ``(4,)`` or a mask ``(H, W)`` / ``(1, H, W)`` -> a boolean ``(h, w)`` mask.

    >>> region_mask((1, 0, 3, 1), 2, 4).astype(int).tolist()
    [[0, 1, 1, 0], [0, 0, 0, 0]]
    """
    r = np.asarray(region.detach().cpu() if isinstance(region, torch.Tensor) else region)
    if r.shape == (4,):
        return metrics.boxes_to_masks(r[None].astype(np.float64), (h, w))[0]
    r = r.reshape(r.shape[-2:]) if r.ndim == 3 and r.shape[0] == 1 else r
    if r.shape != (h, w):
        raise ValueError(f"a mask must be (H, W) = ({h}, {w}) like its image, got {r.shape}")
    return r != 0


# --- a folder of images --------------------------------------------------------------------------


class ImageFolder(torch.utils.data.Dataset):
    """``root/<class>/<image>``, read with Pillow; ``classes`` are the folder names, sorted.

    A folder's label is its index among the sorted folder names, unless ``class_names`` (the
    model's classes in output order) is given: then it is the index of its name there
    (:func:`match_classes`). Each item is ``(image, label)`` or, when ``root/boxes.csv`` exists
    (lines ``relative/path,x0,y0,x1,y1`` in the photo's pixels), ``(image, label, box)`` with
    the box carried into the transformed image: ``crop(width, height)`` gives the part of the
    photo the transform keeps (default: all of it, as a plain resize does). ``transform`` maps a
    PIL RGB image to a ``(3, H, W)`` tensor (default: :func:`default_transform`). A file that
    cannot be decoded gives an :class:`Unreadable` item instead of an exception.

    >>> import tempfile; from PIL import Image
    >>> root = Path(tempfile.mkdtemp())
    >>> for name in ("crow", "wren"):
    ...     (root / name).mkdir()
    ...     Image.new("RGB", (8, 6), (255, 255, 255)).save(root / name / "a.png")
    >>> (root / "wren" / "b.png").write_bytes(b"not a png")
    9
    >>> ds = ImageFolder(root, transform=default_transform(4, (0.0,) * 3, (1.0,) * 3))
    >>> ds.classes, len(ds)
    (['crow', 'wren'], 3)
    >>> x, label = ds[0]
    >>> tuple(x.shape), label, float(x.max())
    ((3, 4, 4), 0, 1.0)
    >>> type(ds[2]).__name__
    'Unreadable'
    >>> ImageFolder(root, class_names=["robin", "Wren", "crow"]).samples[0][1]   # crow
    2
    """

    def __init__(self, root, transform: Callable | None = None,
                 crop: Callable[[int, int], tuple] | None = None,
                 class_names: Sequence[str] | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"dataset directory {str(root)!r} does not exist")
        self.classes = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        if not self.classes:
            raise ValueError(f"dataset directory {str(root)!r} has no class subdirectories")
        ids = (range(len(self.classes)) if class_names is None
               else match_classes(self.classes, class_names))
        self.samples = [(str(p), c) for c, name in zip(ids, self.classes, strict=True)
                        for p in sorted((self.root / name).iterdir())
                        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
        self.transform = transform if transform is not None else default_transform()
        self.crop = crop
        self.boxes = _read_boxes(self.root / "boxes.csv")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        from PIL import Image, UnidentifiedImageError

        path, label = self.samples[index]
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")  # decodes fully: a truncated file fails here
                size = img.size
                x = self.transform(img)
        except (OSError, ValueError, SyntaxError, UnidentifiedImageError,
                Image.DecompressionBombError) as e:
            return Unreadable(path, f"{type(e).__name__}: {e}")
        rel = os.path.normpath(os.path.relpath(path, self.root))
        if rel in self.boxes:
            return x, label, self._carried_box(self.boxes[rel], size, x.shape[-2:])
        return x, label

    def _carried_box(self, box, photo_size, shape) -> torch.Tensor:
        """A box in the photo's pixels -> in the transformed image's (clipped to it)."""
        left, top, right, bottom = (self.crop(*photo_size) if self.crop is not None
                                    else (0, 0, *photo_size))
        h, w = int(shape[0]), int(shape[1])
        sx, sy = w / (right - left), h / (bottom - top)
        x0, y0, x1, y1 = box
        carried = (min(max((x0 - left) * sx, 0.0), w), min(max((y0 - top) * sy, 0.0), h),
                   min(max((x1 - left) * sx, 0.0), w), min(max((y1 - top) * sy, 0.0), h))
        return torch.tensor(carried, dtype=torch.float64)


def _read_boxes(path: Path) -> dict[str, tuple[float, ...]]:
    boxes: dict[str, tuple[float, ...]] = {}
    if path.is_file():
        with open(path, newline="") as f:
            for row in csv.reader(f):
                if row and not row[0].startswith("#"):
                    boxes[os.path.normpath(row[0])] = tuple(float(v) for v in row[1:5])
    return boxes


def match_classes(folders: Sequence[str], class_names: Sequence[str]) -> list[int]:
    """The model's class id of each folder name: exact, else ignoring case and ``_``/space; a
    folder found nowhere is a ``ValueError`` naming ``labels``.

    >>> match_classes(["Blue_Jay", "crow"], ["crow", "blue jay"])
    [1, 0]
    """
    def loose(name: str) -> str:
        return name.strip().lower().replace("_", " ")

    exact = {n: i for i, n in reversed(list(enumerate(class_names)))}
    relaxed = {loose(n): i for i, n in reversed(list(enumerate(class_names)))}
    ids = [exact.get(f, relaxed.get(loose(f))) for f in folders]
    missing = [f for f, i in zip(folders, ids, strict=True) if i is None]
    if missing:
        shown = ", ".join(repr(f) for f in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ValueError(f"labels: {len(missing)} of the {len(folders)} class folders are not "
                         f"among the {len(class_names)} class names: {shown}")
    return [int(i) for i in ids if i is not None]


# --- the dataset argument ------------------------------------------------------------------------


def _registered(value) -> tuple[str, str, str | None] | None:
    """``(name, root, split)`` when ``value`` is a ``name:ROOT[:split]`` of :data:`READERS`."""
    if not isinstance(value, str) or ":" not in value:
        return None
    name, rest = value.split(":", 1)
    if name not in READERS:
        return None
    root, _, split = rest.partition(":")
    return name, root, split or None


def reads_images(value) -> bool:
    """Whether ``value`` names images the runner decodes itself (a folder or a registered data
    set), so that a transform applies to it.

    >>> reads_images("."), reads_images("os.path:join")
    (True, False)
    """
    return (isinstance(value, (str, os.PathLike)) and os.path.isdir(value)) or \
        _registered(value) is not None


def _imported_dataset(value: str, argument: str):
    """The Dataset an import string names: a Dataset, or a class or factory called without
    arguments."""
    if ":" not in value:
        known = f" ({', '.join(sorted(READERS))})" if READERS else ""
        raise ValueError(f"{argument} must be a folder, a registered data set "
                         f"name:ROOT[:split]{known} or package.module:name, got {value!r}")
    obj = import_object(value, argument)
    is_dataset = not isinstance(obj, type) and hasattr(obj, "__getitem__") and hasattr(obj, "__len__")
    return obj if is_dataset else obj()


def resolve_data(value, *, transform: Callable | None = None, crop=None,
                 class_names: Sequence[str] | None = None, argument: str = "dataset"):
    """The ``Dataset`` a ``dataset`` / ``--data`` value names (see the module docstring).

    ``transform``, ``crop`` and ``class_names`` apply to images the runner decodes (a folder or
    a registered data set); a ``transform`` given with anything else is a ``ValueError``, as is a
    value that names nothing (the message names ``argument``).

    >>> resolve_data("no/such/folder", argument="--data")
    Traceback (most recent call last):
    ...
    ValueError: --data must be a folder, a registered data set name:ROOT[:split] (aircraft, birds525, cars, cub, fishvista) or package.module:name, got 'no/such/folder'
    """
    if value is None:
        raise ValueError(f"{argument} is required")
    if isinstance(value, (str, os.PathLike)) and os.path.isdir(value):
        return ImageFolder(value, transform=transform, crop=crop, class_names=class_names)
    spec = _registered(value)
    if spec is not None:
        name, root, split = spec
        reader = import_object(READERS[name], argument)
        return reader(root, split, transform=transform, crop=crop, class_names=class_names)
    if transform is not None:
        raise ValueError(f"{argument}: the preprocessing options apply to a folder of images or a "
                         "registered data set; a Dataset's items are used as they are")
    if isinstance(value, (str, os.PathLike)):
        value = _imported_dataset(str(value), argument)
    if not (hasattr(value, "__getitem__") and hasattr(value, "__len__")):
        raise TypeError(f"{argument} must be a Dataset (with __getitem__ and __len__) or a "
                        f"directory, got {type(value).__name__}")
    return value
