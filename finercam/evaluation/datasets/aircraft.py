"""FGVC-Aircraft 2013b (Maji et al. 2013): 100 variants, 3,334 train, 3,333 val, 3,333 test images.

``ROOT`` is the unpacked ``fgvc-aircraft-2013b`` folder or its ``data`` folder. Files read:

* ``variants.txt``: the 100 variant names, one a line (names with spaces and slashes:
  ``Boeing 737-700``, ``F/A-18``); a label is the line's index;
* ``images_variant_<split>.txt`` for ``train``, ``val``, ``test`` (and ``trainval``):
  ``<image name> <variant name>``, the name to the end of the line;
* ``images_box.txt``: ``<image name> <xmin> <ymin> <xmax> <ymax>``, 1-based with the top-left pixel
  at (1, 1), both ends inclusive, read as the pixel edges ``[xmin - 1, xmax) x [ymin - 1, ymax)``;
* ``images/<image name>.jpg``.

**The banner.** Every photo carries a copyright banner 20 pixels high at the bottom; as the
data set's README asks and as is customary, the reader crops it (:attr:`Aircraft.bottom_banner`)
before any other preprocessing, so the image is the photo's top ``height - 20`` rows and a box is
clipped to them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Optional

from .common import DataFormatError, OfficialDataset, Sample, View, check_images, parse_number, read_rows

__all__ = ["Aircraft", "SPLITS", "BANNER_PIXELS"]

SPLITS = ("train", "val", "test", "trainval")
#: Height of the copyright banner at the bottom of every photo.
BANNER_PIXELS = 20


def _data_dir(root: Any) -> Path:
    path = Path(root)
    if (path / "variants.txt").is_file() or not (path / "data").is_dir():
        return path
    return path / "data"


class Aircraft(OfficialDataset, name="aircraft", title="Aircraft", splits=SPLITS):
    """FGVC-Aircraft at the variant level, the banner cropped (see the module doc).

    ``info`` holds ``"box"``.
    """

    bottom_banner = BANNER_PIXELS

    def __init__(self, root: Any, split: str = "test", view: Optional[View] = None,
                 unreadable: Optional[Callable[[str, str], Any]] = None, missing: str = "error") -> None:
        super().__init__(_data_dir(root), split, view, unreadable)
        base = self.root
        variants = base / "variants.txt"
        if not variants.is_file():
            raise DataFormatError(variants, None, "missing (the variant names, one a line)")
        self.class_names = tuple(v.strip() for v in variants.read_text(encoding="utf-8").splitlines() if v.strip())
        index_of = {name: i for i, name in enumerate(self.class_names)}
        boxes: Dict[str, tuple] = {}
        box_file = base / "images_box.txt"
        for n, parts in read_rows(box_file, 5, "image name, xmin, ymin, xmax, ymax"):
            x1, y1, x2, y2 = (parse_number(box_file, n, v) for v in parts[1:])
            if not (x2 >= x1 >= 1 and y2 >= y1 >= 1):
                raise DataFormatError(box_file, n, f"box ({x1}, {y1}, {x2}, {y2}) is not 1-based with xmin <= xmax, ymin <= ymax")
            boxes[parts[0]] = (x1 - 1.0, y1 - 1.0, x2, y2)
        listed = base / f"images_variant_{split}.txt"
        samples, lines = [], {}
        for n, parts in read_rows(listed, 2, "image name, variant name", split_max=1):
            name, variant = parts[0], parts[1].strip()
            if variant not in index_of:
                raise DataFormatError(listed, n, f"variant {variant!r} is not in variants.txt")
            if name not in boxes:
                raise DataFormatError(listed, n, f"image {name} has no box in images_box.txt")
            samples.append(Sample(str(base / "images" / f"{name}.jpg"), index_of[variant], boxes[name], key=name))
            lines[name] = n
        self.samples = check_images(samples, listed, lines, missing)
