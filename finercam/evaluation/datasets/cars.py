"""Stanford Cars (Krause et al. 2013): 196 classes, 8,144 train and 8,041 test images, one box each.

Three layouts are read, the first found under ``ROOT`` winning:

1. **The devkit** (``car_devkit.tgz`` with ``cars_train.tgz``, ``cars_test.tgz`` and the test
   labels ``cars_test_annos_withlabels.mat``): ``devkit/cars_meta.mat`` (``class_names``, a cell
   array), ``devkit/cars_train_annos.mat`` and ``cars_test_annos_withlabels.mat`` (in ``devkit/``
   or ``ROOT``): a struct array ``annotations`` with ``bbox_x1``, ``bbox_y1``, ``bbox_x2``,
   ``bbox_y2``, ``class`` (1-based) and ``fname``; images in ``cars_train/`` and ``cars_test/``
   (also one level deeper, as mirrors unpack them).
2. **The all-in-one file** ``cars_annos.mat`` (``annotations`` with ``relative_im_path``, the box,
   ``class`` and ``test``; ``class_names``), images under ``car_ims/``.
3. **The CSV variant mirrors ship** (``anno_train.csv`` / ``anno_test.csv``: ``fname,x1,y1,x2,y2,class``
   without a header; ``names.csv``: one class name a line): images found by file name under
   ``car_data/car_data/<split>/``, ``car_data/<split>/``, ``cars_<split>/`` or ``<split>/``
   (class folders allowed).

The boxes are MATLAB's: 1-based pixel indices, both ends inclusive, so the pixel edges read are
``[x1 - 1, x2) x [y1 - 1, y2)``. A ``.mat`` record that is malformed is named by its index
(``cars_train_annos.mat:record 17: ...``); a CSV line by its line. Reading ``.mat`` needs SciPy
(``pip install finercam[datasets]``).
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .common import DataFormatError, OfficialDataset, Sample, View, check_images, parse_number

__all__ = ["Cars", "SPLITS"]

SPLITS = ("train", "test")
_TEST_ANNOS = "cars_test_annos_withlabels.mat"


def _loadmat(path: Path) -> Dict[str, Any]:
    try:
        from scipy.io import loadmat  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - scipy is in the datasets extra
        raise DataFormatError(path, None, "reading .mat files needs SciPy: pip install finercam[datasets]") from None
    try:
        return loadmat(str(path), squeeze_me=True, struct_as_record=True)
    except Exception as e:  # scipy raises several kinds for a broken file
        raise DataFormatError(path, None, f"not a readable .mat file: {type(e).__name__}: {e}") from None


def _records(path: Path, fields: Sequence[str]) -> List[Dict[str, Any]]:
    mat = _loadmat(path)
    if "annotations" not in mat:
        raise DataFormatError(path, None, "has no variable 'annotations'")
    arr = np.atleast_1d(mat["annotations"])
    names = arr.dtype.names or ()
    missing = [f for f in fields if f not in names]
    if missing:
        raise DataFormatError(path, None, f"annotations lack the fields {missing} (have {list(names)})")
    return [{f: arr[i][f] for f in names} for i in range(arr.shape[0])]


def _class_names(path: Path, key: str = "class_names") -> Tuple[str, ...]:
    mat = _loadmat(path)
    if key not in mat:
        raise DataFormatError(path, None, f"has no variable {key!r}")
    return tuple(str(n).strip() for n in np.atleast_1d(mat[key]))


def _number(path: Path, record: int, value: Any, name: str) -> float:
    try:
        out = float(np.asarray(value).reshape(()))
    except (TypeError, ValueError):
        raise DataFormatError(f"{path}:record {record}", None, f"{name} is not a number: {value!r}") from None
    return out


def _box(path: Any, where: Optional[int], x1: float, y1: float, x2: float, y2: float) -> Tuple[float, float, float, float]:
    if not (x2 >= x1 >= 1 and y2 >= y1 >= 1):
        raise DataFormatError(path, where, f"box ({x1}, {y1}, {x2}, {y2}) is not 1-based with x1 <= x2, y1 <= y2")
    return x1 - 1.0, y1 - 1.0, x2, y2


def _first(root: Path, *candidates: str) -> Optional[Path]:
    for c in candidates:
        if (root / c).is_file():
            return root / c
    return None


def _image_dir(root: Path, split: str) -> Path:
    for c in (f"cars_{split}/cars_{split}", f"cars_{split}"):
        if (root / c).is_dir():
            return root / c
    return root / f"cars_{split}"


def _index_by_name(root: Path, split: str) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for c in (f"car_data/car_data/{split}", f"car_data/{split}", f"cars_{split}/cars_{split}", f"cars_{split}", split):
        if (root / c).is_dir():
            for folder, _, files in os.walk(root / c):
                for name in files:
                    out.setdefault(name, os.path.join(folder, name))
            break
    return out


class Cars(OfficialDataset, name="cars", title="Cars", splits=SPLITS):
    """Stanford Cars, from the devkit ``.mat`` files or the CSV variant (see the module doc).

    ``info`` holds ``"box"``; ``layout`` says which of the three was read.
    """

    def __init__(self, root: Any, split: str = "test", view: Optional[View] = None,
                 unreadable: Optional[Callable[[str, str], Any]] = None, missing: str = "error") -> None:
        super().__init__(root, split, view, unreadable)
        root = self.root
        annos = (_first(root, "devkit/cars_train_annos.mat", "cars_train_annos.mat") if split == "train"
                 else _first(root, f"devkit/{_TEST_ANNOS}", _TEST_ANNOS))
        if annos is not None:
            self.layout = "devkit"
            samples, lines, listed = self._devkit(annos)
        elif (root / "cars_annos.mat").is_file():
            self.layout = "cars_annos.mat"
            samples, lines, listed = self._all_in_one(root / "cars_annos.mat")
        elif (root / f"anno_{split}.csv").is_file():
            self.layout = "csv"
            samples, lines, listed = self._csv(root / f"anno_{split}.csv")
        else:
            want = "devkit/cars_train_annos.mat" if split == "train" else f"devkit/{_TEST_ANNOS}"
            raise DataFormatError(root / want, None, f"missing (nor cars_annos.mat, nor anno_{split}.csv)")
        self.samples = check_images(samples, listed, lines, missing)

    def _check_label(self, path: Any, where: Optional[int], class_id: float) -> int:
        if class_id != int(class_id) or not 1 <= class_id <= len(self.class_names):
            raise DataFormatError(path, where, f"class {class_id} is not in 1..{len(self.class_names)}")
        return int(class_id) - 1

    def _devkit(self, annos: Path):
        meta = _first(self.root, "devkit/cars_meta.mat", "cars_meta.mat")
        if meta is None:
            raise DataFormatError(self.root / "devkit" / "cars_meta.mat", None, "missing (class names)")
        self.class_names = _class_names(meta)
        folder = _image_dir(self.root, self.split)
        samples, lines = [], {}
        for i, rec in enumerate(_records(annos, ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname")), 1):
            where = f"{annos}:record {i}"
            x1, y1, x2, y2, c = (_number(annos, i, rec[k], k) for k in ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class"))
            fname = str(rec["fname"])
            samples.append(Sample(str(folder / fname), self._check_label(where, None, c),
                                  _box(where, None, x1, y1, x2, y2), key=fname))
            lines[fname] = i
        return samples, lines, annos

    def _all_in_one(self, path: Path):
        self.class_names = _class_names(path)
        samples, lines = [], {}
        want = 1 if self.split == "test" else 0
        fields = ("relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test")
        for i, rec in enumerate(_records(path, fields), 1):
            where = f"{path}:record {i}"
            if int(_number(path, i, rec["test"], "test")) != want:
                continue
            x1, y1, x2, y2, c = (_number(path, i, rec[k], k) for k in ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class"))
            rel = str(rec["relative_im_path"])
            samples.append(Sample(str(self.root / rel), self._check_label(where, None, c),
                                  _box(where, None, x1, y1, x2, y2), key=rel))
            lines[rel] = i
        return samples, lines, path

    def _csv(self, path: Path):
        names = self.root / "names.csv"
        if not names.is_file():
            raise DataFormatError(names, None, "missing (class names, one a line)")
        self.class_names = tuple(line.strip() for line in names.read_text(encoding="utf-8").splitlines() if line.strip())
        found = _index_by_name(self.root, self.split)
        samples, lines = [], {}
        with open(path, newline="", encoding="utf-8") as f:
            for n, row in enumerate(csv.reader(f), 1):
                if not row or not "".join(row).strip():
                    continue
                if len(row) != 6:
                    raise DataFormatError(path, n, f"expected 6 fields (fname, x1, y1, x2, y2, class), got {len(row)}")
                x1, y1, x2, y2, c = (parse_number(path, n, v) for v in row[1:])
                fname = row[0].strip()
                samples.append(Sample(found.get(fname, str(self.root / f"cars_{self.split}" / fname)),
                                      self._check_label(path, n, c), _box(path, n, x1, y1, x2, y2), key=fname))
                lines[fname] = n
        return samples, lines, path
