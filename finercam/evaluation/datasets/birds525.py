"""Birds-525 ("BIRDS 525 SPECIES - IMAGE CLASSIFICATION", Piosenka): 525 species, 224 x 224 photos.

``ROOT`` holds ``train/``, ``valid/`` and ``test/``, each with one folder per species
(``ABBOTTS BABBLER/1.jpg``). The classes are the sorted folder names of ``train/`` (of the split
itself when ``train/`` is absent), shown as they are; a species folder of ``valid/`` or ``test/``
that ``train/`` lacks is an error naming it. The data set has no boxes nor parts: items carry an
empty ``info``. Split ``val`` reads ``valid/``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from .common import DataFormatError, OfficialDataset, Sample, View

__all__ = ["Birds525", "SPLITS", "IMAGE_SUFFIXES"]

SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_FOLDER = {"train": "train", "val": "valid", "test": "test"}


def _class_folders(path: Path) -> list:
    return sorted(p.name for p in path.iterdir() if p.is_dir())


class Birds525(OfficialDataset, name="birds525", title="Birds-525", splits=SPLITS):
    """Birds-525 from its ``train/valid/test`` class folders (see the module doc)."""

    def __init__(self, root: Any, split: str = "test", view: Optional[View] = None,
                 unreadable: Optional[Callable[[str, str], Any]] = None) -> None:
        super().__init__(root, split, view, unreadable)
        folder = self.root / _FOLDER[split]
        if not folder.is_dir():
            raise DataFormatError(folder, None, f"missing (the {split} split's class folders)")
        train = self.root / "train"
        self.class_names = tuple(_class_folders(train if train.is_dir() else folder))
        index_of = {n: i for i, n in enumerate(self.class_names)}
        for name in _class_folders(folder):
            if name not in index_of:
                raise DataFormatError(folder / name, None, "a species folder that train/ does not have")
        self.samples = [Sample(str(p), index_of[name], key=str(p.relative_to(self.root)))
                        for name in _class_folders(folder)
                        for p in sorted((folder / name).iterdir())
                        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
