"""Fish-Vista (Mehrab et al. 2024/2025) as published on Hugging Face (``imageomics/fish-vista``).

``ROOT`` is the data set's folder. Files read (columns per the data set card):

* ``classification_<split>.csv`` (``train``, ``val``, ``test``; FV-419): ``filename`` (the
  image), ``standardized_species`` (the class) and ``file_name`` (the image's path under
  ``ROOT``, ``Images/chunk_<k>/<filename>``; without it ``Images/<filename>`` is read). The
  classes are the sorted species of ``classification_train.csv``;
* ``segmentation_<split>.csv`` (FV-1200, the same columns) for the splits ``seg_train``,
  ``seg_val``, ``seg_test``, and their trait masks ``segmentation_masks/images/<stem>.png``:
  one label image per photo, pixel value = trait id, the ids named by
  ``segmentation_masks/seg_id_trait_map.json`` (``{"0": "background", "1": "Head", ...}``).

Items carry ``info["parts"]["masks"]``, ``(T, H, W)`` bool, one mask per trait of the map (background
left out; ``dataset.part_names``), carried through the crop and resize by nearest neighbour;
an image without a mask file gets empty masks. Segmentation images whose species is not among the
classification classes have no label a probe trained on FV-419 knows: they are left out and
counted in ``dataset.dropped``. No boxes.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from .common import DataFormatError, OfficialDataset, Sample, View, check_images

__all__ = ["FishVista", "SPLITS", "read_trait_map"]

SPLITS = ("train", "val", "test", "seg_train", "seg_val", "seg_test")
_MASKS = Path("segmentation_masks") / "images"
_TRAIT_MAP = Path("segmentation_masks") / "seg_id_trait_map.json"


def _rows(path: Path) -> List[Tuple[int, Dict[str, str]]]:
    if not path.is_file():
        raise DataFormatError(path, None, "missing")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        for need in ("filename", "standardized_species"):
            if need not in fields:
                raise DataFormatError(path, 1, f"no column {need!r} (columns: {', '.join(fields)})")
        rows = []
        for row in reader:
            n = reader.line_num
            if not (row.get("filename") or "").strip() or not (row.get("standardized_species") or "").strip():
                raise DataFormatError(path, n, "empty filename or standardized_species")
            rows.append((n, row))
    return rows


def read_trait_map(root: Any) -> Dict[int, str]:
    """``{trait id: name}`` of ``segmentation_masks/seg_id_trait_map.json``, background (id 0) left out."""
    path = Path(root) / _TRAIT_MAP
    if not path.is_file():
        raise DataFormatError(path, None, "missing (the trait names of the mask ids)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        table = {int(k): str(v) for k, v in raw.items()}
    except (ValueError, AttributeError) as e:
        raise DataFormatError(path, None, f"not a JSON object of id -> trait name: {e}") from None
    return {k: v for k, v in sorted(table.items()) if k != 0}


class FishVista(OfficialDataset, name="fishvista", title="FishVista", splits=SPLITS):
    """Fish-Vista's classification splits and its segmentation splits with trait masks."""

    def __init__(self, root: Any, split: str = "test", view: Optional[View] = None,
                 unreadable: Optional[Callable[[str, str], Any]] = None, missing: str = "error") -> None:
        super().__init__(root, split, view, unreadable)
        train = _rows(self.root / "classification_train.csv")
        self.class_names = tuple(sorted({row["standardized_species"].strip() for _, row in train}))
        index_of = {n: i for i, n in enumerate(self.class_names)}
        traits = read_trait_map(self.root)
        self.trait_ids = tuple(traits)
        self.part_names = tuple(traits.values())
        listed = self.root / (f"segmentation_{split[4:]}.csv" if split.startswith("seg_") else f"classification_{split}.csv")
        rows = train if listed.name == "classification_train.csv" else _rows(listed)
        samples, lines, self.dropped = [], {}, 0
        for n, row in rows:
            species, filename = row["standardized_species"].strip(), row["filename"].strip()
            if species not in index_of:
                if split.startswith("seg_"):
                    self.dropped += 1
                    continue
                raise DataFormatError(listed, n, f"species {species!r} is not in classification_train.csv")
            rel = (row.get("file_name") or "").strip() or str(Path("Images") / filename)
            mask = self.root / _MASKS / (Path(filename).stem + ".png")
            samples.append(Sample(str(self.root / rel), index_of[species],
                                  mask=str(mask) if mask.is_file() else None, key=filename))
            lines[filename] = n
        self.samples = check_images(samples, listed, lines, missing)
