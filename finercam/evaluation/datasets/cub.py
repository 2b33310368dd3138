"""CUB-200-2011 (Wah et al. 2011) as distributed in ``CUB_200_2011.tgz``.

``ROOT`` is the ``CUB_200_2011`` folder (or the folder holding it). Files read, all
whitespace-separated with 1-based ids:

* ``images.txt``: ``<image_id> <image_name>`` (the path under ``images/``);
* ``image_class_labels.txt``: ``<image_id> <class_id>``;
* ``classes.txt``: ``<class_id> <class_name>`` (``001.Black_footed_Albatross``; the class name
  shown is ``Black footed Albatross``: the number and the underscores dropped);
* ``train_test_split.txt``: ``<image_id> <is_training_image>`` (1 train, 0 test);
* ``bounding_boxes.txt``: ``<image_id> <x> <y> <width> <height>`` in pixels, read as the box
  with edges ``[x, x + width) x [y, y + height)``;
* ``parts/parts.txt``: ``<part_id> <part_name>`` (15 parts, names with spaces: ``left eye``);
* ``parts/part_locs.txt``: ``<image_id> <part_id> <x> <y> <visible>``, the points in the same pixel
  frame as the boxes;
* for the faithfulness examination (:func:`class_attributes`):
  ``attributes/class_attribute_labels_continuous.txt`` (one row of 312 percentages per class, in
  class-id order) and the attribute names ``<attribute_id> <name>`` from ``attributes.txt`` (the
  tarball puts it beside ``CUB_200_2011/``; ``attributes/attributes.txt`` is read as well).

Items come in ascending image id, whatever order the files list them in; labels are class
indices ``0 .. 199`` in ascending class id. A missing or malformed file, a duplicate id, an
image without a label, split, box or a listed image file that does not exist is a
:class:`~.common.DataFormatError` naming the file and the line.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from .common import DataFormatError, OfficialDataset, Sample, View, check_images, parse_number, read_rows

__all__ = ["CUB", "SPLITS", "class_attributes", "find_root", "pretty_class_name"]

SPLITS = ("train", "test")


def find_root(root: Any) -> Path:
    """``root`` itself if it holds ``images.txt``, else ``root/CUB_200_2011``."""
    path = Path(root)
    if (path / "images.txt").is_file() or not (path / "CUB_200_2011" / "images.txt").is_file():
        return path
    return path / "CUB_200_2011"


def pretty_class_name(raw: str) -> str:
    """``"001.Black_footed_Albatross"`` -> ``"Black footed Albatross"``.

    >>> pretty_class_name("200.Common_Yellowthroat")
    'Common Yellowthroat'
    """
    name = raw.split(".", 1)[1] if "." in raw and raw.split(".", 1)[0].isdigit() else raw
    return name.replace("_", " ")


def _id_table(path: Path, fields: int, what: str, split_max: Optional[int] = None,
              kind: Optional[type] = None) -> Tuple[Dict[int, List[Any]], Dict[int, int]]:
    """``{id: the other fields}`` (as ``kind`` when given, every line checked) and ``{id: line}``;
    a duplicate id is an error."""
    table: Dict[int, List[Any]] = {}
    lines: Dict[int, int] = {}
    for n, parts in read_rows(path, fields, what, split_max):
        key = parse_number(path, n, parts[0], int)
        if key in table:
            raise DataFormatError(path, n, f"id {key} listed again (first on line {lines[key]})")
        table[key] = parts[1:] if kind is None else [parse_number(path, n, v, kind) for v in parts[1:]]
        lines[key] = n
    return table, lines


def _field(table: Tuple[Dict[int, List[Any]], Dict[int, int]], key: int, path: Path,
           where: Tuple[Path, int], i: int = 0) -> Any:
    """Field ``i`` of id ``key`` in ``table`` (read from ``path``); an id that the table lacks is
    an error naming the file and line ``where`` lists the image."""
    rows, _ = table
    if key not in rows:
        raise DataFormatError(where[0], where[1], f"image id {key} has no entry in {path.name}")
    return rows[key][i]


class CUB(OfficialDataset, name="cub", title="CUB", splits=SPLITS):
    """CUB-200-2011: 200 classes, 5,994 train and 5,794 test images, boxes and 15 part points.

    ``info`` holds ``"box"``, ``"points"`` ``(15, 2)`` and ``"visible"`` ``(15,)`` (see
    :mod:`~finercam.evaluation.datasets.common`); ``part_names`` are the names of ``parts.txt``.
    """

    def __init__(self, root: Any, split: str = "test", view: Optional[View] = None,
                 unreadable: Optional[Callable[[str, str], Any]] = None, missing: str = "error") -> None:
        super().__init__(find_root(root), split, view, unreadable)
        base = self.root
        images, image_lines = _id_table(base / "images.txt", 2, "image id, image name")
        labels = _id_table(base / "image_class_labels.txt", 2, "image id, class id", kind=int)
        classes, _ = _id_table(base / "classes.txt", 2, "class id, class name", split_max=1)
        splits = _id_table(base / "train_test_split.txt", 2, "image id, is_training_image", kind=int)
        boxes = _id_table(base / "bounding_boxes.txt", 5, "image id, x, y, width, height", kind=float)
        class_ids = sorted(classes)
        self.class_folders = tuple(classes[c][0] for c in class_ids)
        self.class_names = tuple(pretty_class_name(n) for n in self.class_folders)
        index_of = {c: i for i, c in enumerate(class_ids)}
        parts_dir = base / "parts"
        part_table, _ = _id_table(parts_dir / "parts.txt", 2, "part id, part name", split_max=1)
        part_ids = sorted(part_table)
        self.part_names = tuple(part_table[p][0] for p in part_ids)
        points = self._part_locations(parts_dir / "part_locs.txt", part_ids)
        want = 1 if split == "train" else 0
        listed = base / "images.txt"
        samples = []
        for image_id in sorted(images):
            where = (listed, image_lines[image_id])
            flag = _field(splits, image_id, base / "train_test_split.txt", where)
            if flag not in (0, 1):
                raise DataFormatError(base / "train_test_split.txt", splits[1][image_id],
                                      f"is_training_image must be 0 or 1, got {flag}")
            if flag != want:
                continue
            class_id = _field(labels, image_id, base / "image_class_labels.txt", where)
            if class_id not in index_of:
                raise DataFormatError(base / "image_class_labels.txt", labels[1][image_id],
                                      f"class id {class_id} is not in classes.txt")
            x, y, w, h = (_field(boxes, image_id, base / "bounding_boxes.txt", where, i) for i in range(4))
            if w <= 0 or h <= 0:
                raise DataFormatError(base / "bounding_boxes.txt", boxes[1][image_id], f"empty box {w} x {h}")
            pts, vis = points.get(image_id, (np.zeros((len(part_ids), 2)), np.zeros(len(part_ids), bool)))
            samples.append(Sample(str(base / "images" / images[image_id][0]), index_of[class_id],
                                  (x, y, x + w, y + h), pts, vis, key=str(image_id)))
        self.samples = check_images(samples, listed, {str(k): v for k, v in image_lines.items()}, missing)
        #: The CUB image id of each item, in item order.
        self.image_ids = tuple(int(s.key) for s in self.samples)

    @staticmethod
    def _part_locations(path: Path, part_ids: List[int]) -> Dict[int, Tuple[np.ndarray, np.ndarray]]:
        slot = {p: i for i, p in enumerate(part_ids)}
        out: Dict[int, Tuple[np.ndarray, np.ndarray]] = {}
        for n, parts in read_rows(path, 5, "image id, part id, x, y, visible"):
            image_id, part_id = parse_number(path, n, parts[0], int), parse_number(path, n, parts[1], int)
            if part_id not in slot:
                raise DataFormatError(path, n, f"part id {part_id} is not in parts.txt")
            x, y = parse_number(path, n, parts[2]), parse_number(path, n, parts[3])
            visible = parse_number(path, n, parts[4], int)
            if visible not in (0, 1):
                raise DataFormatError(path, n, f"visible must be 0 or 1, got {visible}")
            pts, vis = out.setdefault(image_id, (np.zeros((len(part_ids), 2)), np.zeros(len(part_ids), bool)))
            pts[slot[part_id]] = (x, y)
            vis[slot[part_id]] = bool(visible)
        return out


def _attribute_names(base: Path) -> List[str]:
    for path in (base / "attributes" / "attributes.txt", base / "attributes.txt", base.parent / "attributes.txt"):
        if path.is_file():
            table, _ = _id_table(path, 2, "attribute id, attribute name", split_max=1)
            return [table[k][0] for k in sorted(table)]
    raise DataFormatError(base.parent / "attributes.txt", None,
                          "missing (attribute names; also looked in attributes/attributes.txt and the root)")


def class_attributes(root: Any) -> Tuple[Tuple[str, ...], np.ndarray]:
    """The attribute names (312, e.g. ``has_crown_color::blue``) and the class-attribute matrix
    ``(200, 312)`` float64 of ``attributes/class_attribute_labels_continuous.txt``: the percentage
    of the class's images in which each attribute was seen, one row per class in class-id order.

    A row with another count than the names, or a non-number, is an error naming file and line.
    """
    base = find_root(root)
    names = _attribute_names(base)
    path = base / "attributes" / "class_attribute_labels_continuous.txt"
    rows = read_rows(path, len(names), f"{len(names)} attribute percentages")
    matrix = np.array([[parse_number(path, n, v) for v in parts] for n, parts in rows], dtype=np.float64)
    classes, _ = _id_table(base / "classes.txt", 2, "class id, class name", split_max=1)
    if matrix.shape[0] != len(classes):
        raise DataFormatError(path, None, f"{matrix.shape[0]} rows for {len(classes)} classes in classes.txt")
    return tuple(names), matrix
