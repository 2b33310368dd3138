"""What every reader of a published data set shares: the item, the geometry, the one-line error.

An item is ``(image, label, info)``: the image a ``(3, H, W)`` float tensor as the transform made
it, the label an ``int`` (an index into ``dataset.class_names``), and ``info`` a dict of tensors
in the transformed image's pixels, with the keys the data set has:

* ``"box"``: float64 ``(4,)`` ``(x0, y0, x1, y1)``, pixel edges (0 is the left edge of the first
  column, ``W`` the right edge of the last), the photo's box carried through the crop and resize
  and clipped to the image;
* ``"parts"``: the parts, either ``{"points": float64 (P, 2) (x, y), "visible": bool (P,)}``
  (CUB's part locations; a point that the crop leaves out of the image is made invisible) or
  ``{"masks": bool (T, H, W)}``, one mask per named trait (FishVista); ``dataset.part_names``
  names them. :mod:`finercam.evaluation.parts` turns either into the region the part scores read.

The geometry is stated, not guessed: a transform comes with ``crop(width, height) -> (left, top,
right, bottom)``, the part of the photo it shows (the whole photo for a plain resize, the centre
for a resize-and-centre-crop; :func:`resize_view`, :func:`center_crop_view`). A photo coordinate
``x`` lands at ``(x - left) * W / (right - left)`` in the image (``y`` likewise), so every
annotation follows the crop and the resize exactly.

A malformed or missing annotation file raises :class:`DataFormatError`, one line naming the file
and the line (``images.txt:17: ...``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

__all__ = ["DataFormatError", "Sample", "View", "OfficialDataset", "resize_view", "center_crop_view",
           "carry_box", "carry_points", "read_rows", "IMAGENET_MEAN", "IMAGENET_STD", "DEFAULT_SIZE"]

#: torchvision's ImageNet normalisation, the default of a reader used without a model.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The image side of a reader used without a model.
DEFAULT_SIZE = 224

Region = Tuple[int, int, int, int]


class DataFormatError(ValueError):
    """A data set file that is missing or does not read as its format says: one line that names the
    file and, where there is one, the line (1-based) or record.

    >>> str(DataFormatError("/data/CUB_200_2011/images.txt", 3, "expected 2 fields, got 1"))
    '/data/CUB_200_2011/images.txt:3: expected 2 fields, got 1'
    """

    def __init__(self, path: Any, line: Optional[int], message: str) -> None:
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")
        self.path, self.line = str(path), line


def read_rows(path: Path, fields: int, what: str, split_max: Optional[int] = None) -> List[Tuple[int, List[str]]]:
    """The non-empty lines of a whitespace-separated file as ``(line number, fields)``.

    ``fields`` is the number each line must have; with ``split_max`` the line is split at most that
    many times (so the last field keeps its spaces: class names with spaces). A missing file or a
    line with another count raises :class:`DataFormatError` naming ``what`` the file holds.
    """
    if not path.is_file():
        raise DataFormatError(path, None, f"missing ({what})")
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            text = line.strip()
            if not text:
                continue
            parts = text.split(None, split_max) if split_max is not None else text.split()
            if len(parts) != fields:
                raise DataFormatError(path, n, f"expected {fields} fields ({what}), got {len(parts)}: {text[:60]!r}")
            rows.append((n, parts))
    return rows


def parse_number(path: Path, line: int, text: str, kind: type = float) -> Any:
    """``kind(text)`` or a :class:`DataFormatError` naming the file and line."""
    try:
        value = kind(text)
    except ValueError:
        raise DataFormatError(path, line, f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if kind is float and not np.isfinite(value):
        raise DataFormatError(path, line, f"{text!r} is not a finite number")
    return value


# --- the geometry of a transform ----------------------------------------------------------------


@dataclass(frozen=True)
class View:
    """A transform and the photo region it shows: ``transform(pil_rgb) -> (3, H, W)`` tensor and
    ``crop(width, height) -> (left, top, right, bottom)`` in the photo's pixels."""

    transform: Callable[[Any], torch.Tensor]
    crop: Callable[[int, int], Region]


def _normalise(mean: Sequence[float], std: Sequence[float]) -> Callable[[Any], torch.Tensor]:
    m = torch.tensor(tuple(mean), dtype=torch.float32)[:, None, None]
    s = torch.tensor(tuple(std), dtype=torch.float32)[:, None, None]

    def to_tensor(image) -> torch.Tensor:
        x = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)
        return (x - m) / s

    return to_tensor


def _whole(width: int, height: int) -> Region:
    return 0, 0, int(width), int(height)


def resize_view(size: int = DEFAULT_SIZE, mean: Sequence[float] = IMAGENET_MEAN,
                std: Sequence[float] = IMAGENET_STD) -> View:
    """A plain bilinear resize of the whole photo to ``size x size`` and ``(x / 255 - mean) / std``.

    >>> from PIL import Image
    >>> v = resize_view(4, (0.0,) * 3, (1.0,) * 3)
    >>> tuple(v.transform(Image.new("RGB", (8, 6), (255, 0, 0))).shape), v.crop(8, 6)
    ((3, 4, 4), (0, 0, 8, 6))
    """
    from PIL import Image

    to_tensor = _normalise(mean, std)
    return View(lambda image: to_tensor(image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)), _whole)


def center_crop_view(size: int = DEFAULT_SIZE, ratio: float = 0.875, mean: Sequence[float] = IMAGENET_MEAN,
                     std: Sequence[float] = IMAGENET_STD) -> View:
    """Shorter side to ``round(size / ratio)`` (256 for 224), centre crop ``size x size``, normalise.

    The region it shows is computed in the resized photo, in integers, then mapped back to the
    photo's pixels: ``crop`` returns it exactly as the transform cuts it.

    >>> v = center_crop_view(224)
    >>> v.crop(512, 256)
    (144, 16, 368, 240)
    """
    from PIL import Image

    to_tensor = _normalise(mean, std)
    short = int(round(size / ratio))

    def geometry(width: int, height: int) -> Tuple[int, int, int, int]:
        scale = short / min(width, height)
        new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
        return new_w, new_h, (new_w - size) // 2, (new_h - size) // 2

    def transform(image) -> torch.Tensor:
        new_w, new_h, left, top = geometry(*image.size)
        resized = image.convert("RGB").resize((new_w, new_h), Image.Resampling.BILINEAR)
        return to_tensor(resized.crop((left, top, left + size, top + size)))

    def crop(width: int, height: int) -> Region:
        new_w, new_h, left, top = geometry(width, height)
        sx, sy = new_w / width, new_h / height
        return (int(round(left / sx)), int(round(top / sy)),
                int(round((left + size) / sx)), int(round((top + size) / sy)))

    return View(transform, crop)


def carry_box(box: Sequence[float], region: Sequence[float], shape: Tuple[int, int]) -> torch.Tensor:
    """A box ``(x0, y0, x1, y1)`` in the photo's pixel edges -> in the image's, clipped to it:
    :math:`x' = \\min(\\max((x - \\mathrm{left}) \\cdot W / (\\mathrm{right} - \\mathrm{left}), 0), W)`.

    >>> carry_box((10, 20, 50, 60), (0, 0, 100, 200), (100, 50)).tolist()
    [5.0, 10.0, 25.0, 30.0]
    """
    left, top, right, bottom = (float(v) for v in region)
    h, w = int(shape[0]), int(shape[1])
    sx, sy = w / (right - left), h / (bottom - top)
    x0, y0, x1, y1 = (float(v) for v in box)
    out = (min(max((x0 - left) * sx, 0.0), w), min(max((y0 - top) * sy, 0.0), h),
           min(max((x1 - left) * sx, 0.0), w), min(max((y1 - top) * sy, 0.0), h))
    return torch.tensor(out, dtype=torch.float64)


def carry_points(points: np.ndarray, visible: np.ndarray, region: Sequence[float],
                 shape: Tuple[int, int]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Points ``(P, 2)`` in the photo's pixel frame -> in the image's; a point the crop leaves out
    (outside ``[0, W) x [0, H)``) is made invisible.

    >>> p, v = carry_points(np.array([[10.0, 20.0], [1.0, 1.0]]), np.array([True, True]), (5, 0, 105, 100), (50, 50))
    >>> p.tolist(), v.tolist()
    ([[2.5, 10.0], [-2.0, 0.5]], [True, False])
    """
    left, top, right, bottom = (float(v) for v in region)
    h, w = int(shape[0]), int(shape[1])
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    out = np.stack([(pts[:, 0] - left) * (w / (right - left)), (pts[:, 1] - top) * (h / (bottom - top))], 1)
    inside = (out[:, 0] >= 0) & (out[:, 0] < w) & (out[:, 1] >= 0) & (out[:, 1] < h)
    return torch.from_numpy(out), torch.from_numpy(np.asarray(visible, bool) & inside)


# --- the data set -------------------------------------------------------------------------------


@dataclass
class Sample:
    """One image as the annotation files describe it, in the photo's pixels (before any crop).

    ``box`` pixel edges ``(x0, y0, x1, y1)``; ``points`` ``(P, 2)`` with ``visible`` ``(P,)``;
    ``mask`` the path of a trait-label image (pixel value = trait id).
    """

    path: str
    label: int
    box: Optional[Tuple[float, float, float, float]] = None
    points: Optional[np.ndarray] = None
    visible: Optional[np.ndarray] = None
    mask: Optional[str] = None
    key: str = ""
    extra: Dict[str, Any] = field(default_factory=dict)


class OfficialDataset(torch.utils.data.Dataset):
    """The base of the readers: samples, class names, and the item as the module doc says.

    ``view`` (a :class:`View`; default :func:`resize_view`) turns a photo into the image and states
    the region it shows. ``unreadable(path, reason)``, if given, is returned for an image file that
    cannot be decoded (the evaluation runner counts and skips such items); without it the error is
    raised. Subclasses fill ``samples``, ``class_names`` and, where the data set has them,
    ``part_names`` (CUB's 15 parts, FishVista's traits) and ``trait_ids``.
    """

    #: Short name used in specs (``cub:ROOT``).
    name = ""
    #: The data set's name in messages, and its official splits.
    title = ""
    splits: Tuple[str, ...] = ()
    #: Pixels removed at the bottom of each photo before anything else (Aircraft's banner).
    bottom_banner = 0

    def __init_subclass__(cls, name: str = "", title: str = "", splits: Tuple[str, ...] = (), **kwargs: Any) -> None:
        # A reader names itself in its class statement: ``class CUB(OfficialDataset, name="cub", ...)``.
        super().__init_subclass__(**kwargs)
        cls.name, cls.title, cls.splits = name or cls.name, title or cls.title, tuple(splits) or cls.splits

    def __init__(self, root, split: str, view: Optional[View] = None,
                 unreadable: Optional[Callable[[str, str], Any]] = None) -> None:
        if split not in self.splits:
            raise ValueError(f"split must be one of {self.splits} for {self.title}, got {split!r}")
        self.root = Path(root)
        self.split = split
        self.view = view if view is not None else resize_view()
        self.unreadable = unreadable
        self.samples: List[Sample] = []
        self.class_names: Tuple[str, ...] = ()
        self.part_names: Tuple[str, ...] = ()
        self.trait_ids: Tuple[int, ...] = ()

    @property
    def classes(self) -> Tuple[str, ...]:
        return self.class_names

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.samples)

    def relabel(self, class_names: Sequence[str]) -> None:
        """Map every label to the index of its class in ``class_names`` (a model's classes in
        output order): by exact name, else ignoring case, ``_`` versus space and CUB's ``001.``
        number; a class of the data set that the list lacks is a ``ValueError`` naming it."""
        def loose(name: str) -> str:
            head, _, tail = name.partition(".")
            name = tail if head.isdigit() and tail else name
            return " ".join(name.replace("_", " ").lower().split())

        exact = {n: i for i, n in reversed(list(enumerate(class_names)))}
        relaxed = {loose(n): i for i, n in reversed(list(enumerate(class_names)))}
        ids = [exact.get(n, relaxed.get(loose(n))) for n in self.class_names]
        missing = [n for n, i in zip(self.class_names, ids, strict=True) if i is None]
        if missing:
            shown = ", ".join(repr(n) for n in missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise ValueError(f"labels: {len(missing)} of the {len(ids)} classes of {self.name} are not among "
                             f"the {len(class_names)} class names: {shown}")
        for s in self.samples:
            s.label = int(ids[s.label])  # type: ignore[arg-type]
        self.class_names = tuple(class_names)

    def labels(self) -> np.ndarray:
        """Every item's label, without reading an image."""
        return np.array([s.label for s in self.samples], dtype=np.int64)

    def _photo(self, path: str):
        from PIL import Image

        with Image.open(path) as img:
            img.load()  # decodes fully: a truncated file fails here
            photo = img.convert("RGB")  # grayscale, CMYK, palette -> RGB
        if self.bottom_banner:
            w, h = photo.size
            photo = photo.crop((0, 0, w, max(1, h - self.bottom_banner)))
        return photo

    def __getitem__(self, index: int):
        from PIL import Image, UnidentifiedImageError

        s = self.samples[index]
        try:
            photo = self._photo(s.path)
            x = self.view.transform(photo)
        except (OSError, ValueError, SyntaxError, UnidentifiedImageError, Image.DecompressionBombError) as e:
            if self.unreadable is None:
                raise DataFormatError(s.path, None, f"cannot decode the image: {type(e).__name__}: {e}") from None
            return self.unreadable(s.path, f"{type(e).__name__}: {e}")
        region = self.view.crop(*photo.size)
        shape = (int(x.shape[-2]), int(x.shape[-1]))
        info: Dict[str, Any] = {}
        if s.box is not None:
            w, h = photo.size
            x0, y0, x1, y1 = s.box
            info["box"] = carry_box((min(max(x0, 0), w), min(max(y0, 0), h), min(max(x1, 0), w),
                                     min(max(y1, 0), h)), region, shape)
        if s.points is not None and s.visible is not None:
            points, visible = carry_points(s.points, s.visible, region, shape)
            info["parts"] = {"points": points, "visible": visible}
        if self.trait_ids:
            info["parts"] = {"masks": self._trait_masks(s.mask, region, shape, photo.size)}
        return x, s.label, info

    def _trait_masks(self, mask_path: Optional[str], region: Region, shape: Tuple[int, int],
                     photo_size: Tuple[int, int]) -> torch.Tensor:
        """``(T, H, W)`` bool: the label image cut like the photo, resized by nearest neighbour."""
        from PIL import Image

        out = np.zeros((len(self.trait_ids), shape[0], shape[1]), dtype=bool)
        if mask_path is None:
            return torch.from_numpy(out)
        with Image.open(mask_path) as m:
            labels = m.convert("L") if m.mode not in ("L", "P", "I", "I;16") else m.copy()
        if labels.size != photo_size:
            raise DataFormatError(mask_path, None, f"mask is {labels.size[0]}x{labels.size[1]}, its image "
                                                   f"{photo_size[0]}x{photo_size[1]}")
        cut = labels.crop(tuple(region)).resize((shape[1], shape[0]), Image.Resampling.NEAREST)
        arr = np.asarray(cut)
        for t, tid in enumerate(self.trait_ids):
            out[t] = arr == tid
        return torch.from_numpy(out)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
                f"images={len(self)}, classes={self.num_classes})")


def check_images(samples: List[Sample], listed_in: Path, lines: Dict[str, int], missing: str) -> List[Sample]:
    """Samples whose image file exists; a missing one raises :class:`DataFormatError` naming the
    file that lists it and the line (``missing="error"``) or is dropped (``missing="skip"``)."""
    if missing not in ("error", "skip"):
        raise ValueError(f'missing must be "error" or "skip", got {missing!r}')
    kept = []
    for s in samples:
        if os.path.isfile(s.path):
            kept.append(s)
        elif missing == "error":
            raise DataFormatError(listed_in, lines.get(s.key), f"image file {s.path} not found")
    return kept
