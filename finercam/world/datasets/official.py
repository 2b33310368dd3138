"""Small trees in the published formats of the paper's five data sets, drawn from the bird world.

The bird world knows every label, box, part and attribute, so a reader of the real formats
(:mod:`finercam.evaluation.datasets`) can be checked against what was written. Each ``write_*``
function renders ``n_train`` and ``n_test`` images (``size`` pixels, padded to a wider photo so
that a centre crop differs from a resize), writes them with the annotation files of that format and
returns the truth: per split, a list of :class:`Written` in the order the reader yields items.

What each tree holds beyond the plain case (the tests read these): image 1 of the test split is
grayscale, image 2 CMYK (JPEG); CUB's files list the ids out of order and image 0's eye is
written invisible; ``missing=True`` deletes the last test image's file after writing.

>>> import tempfile
>>> truth = write_cub(tempfile.mkdtemp(), n_train=2, n_test=3, size=48)
>>> [w.label for w in truth["test"]], bool(truth["test"][0].visible[PART_NAMES.index("eye")])
([0, 1, 2], False)
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

from . import birds
from .spot import generate

__all__ = ["Written", "PART_NAMES", "PAD", "cub_attribute_names", "write_cub", "write_cars",
           "write_cars_csv", "write_aircraft", "write_birds525", "write_fishvista"]

#: The parts written as CUB parts / FishVista traits: the bird world's, in its order.
PART_NAMES: Tuple[str, ...] = birds.PARTS
#: Columns of background added to the right of each rendered image (a wider photo).
PAD = 16
BANNER = 20


@dataclass
class Written:
    """One image as written: its file, label, box (pixel edges ``x0, y0, x1, y1`` in the photo as
    the reader sees it), part points ``(P, 2)`` with visibility, and the part label image."""

    path: str
    label: int
    box: Tuple[float, float, float, float]
    points: np.ndarray
    visible: np.ndarray
    labels_image: np.ndarray  # (H, W) uint8: 0 background, i + 1 part i


def cub_attribute_names() -> Tuple[str, ...]:
    """The world's attributes named the CUB way: ``"wing:colour:black"`` -> ``"has_wing_color::black"``.

    >>> cub_attribute_names()[0]
    'has_tail_color::brown'
    """
    out = []
    for name in birds.ATTRIBUTE_NAMES:
        part, kind, value = name.split(":")
        out.append(f"has_{part}_{'color' if kind == 'colour' else kind}::{value}")
    return tuple(out)


def _render(n: int, split: str, size: int, seed: int) -> Tuple[List[np.ndarray], List[Written]]:
    """Photos (H, W + PAD, 3) uint8 and their truth (paths filled in later)."""
    b = generate(n, seed=seed, split=split, size=size, dtype=np.uint8)
    photos, truth = [], []
    for i in range(n):
        img = b.images[i].transpose(1, 2, 0)
        fill = np.broadcast_to(img[:, -1:, :], (size, PAD, 3))  # the last column, repeated
        photos.append(np.ascontiguousarray(np.concatenate([img, fill], axis=1)))
        parts = b.parts[i]
        labels_image = np.zeros((size, size + PAD), np.uint8)
        points = np.zeros((len(PART_NAMES), 2))
        visible = np.zeros(len(PART_NAMES), bool)
        for p in range(len(PART_NAMES)):
            ys, xs = np.nonzero(parts[p])
            labels_image[:, :size][parts[p]] = p + 1
            if len(xs):
                points[p] = (xs.mean() + 0.5, ys.mean() + 0.5)  # the centroid, in pixel edges
                visible[p] = True
        x0, y0, x1, y1 = (float(v) for v in b.boxes[i])
        truth.append(Written("", int(b.labels[i]), (x0, y0, x1, y1), points, visible, labels_image))
    return photos, truth


def _save(photo: np.ndarray, path: Path, index: int, special: bool) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(photo)
    if special and index == 1:
        img = img.convert("L")
    elif special and index == 2:
        img = img.convert("CMYK")
    img.save(path, quality=95)


def _splits(n_train: int, n_test: int, size: int, seed: int) -> Dict[str, Tuple[List[np.ndarray], List[Written]]]:
    return {"train": _render(n_train, "train", size, seed), "test": _render(n_test, "test", size, seed)}


def _class_folder(c: int) -> str:
    return f"{c + 1:03d}.{birds.CLASS_NAMES[c].replace(' ', '_')}"


def write_cub(root: Any, n_train: int = 16, n_test: int = 16, size: int = 64, seed: int = 0,
              missing: bool = False) -> Dict[str, List[Written]]:
    """``root/CUB_200_2011`` with every file :class:`~finercam.evaluation.datasets.CUB` reads, and
    ``root/attributes.txt`` as the tarball has it. Returns the truth per split (ascending id)."""
    base = Path(root) / "CUB_200_2011"
    rng = np.random.default_rng(seed)
    data = _splits(n_train, n_test, size, seed)
    rows: Dict[str, List[str]] = {k: [] for k in ("images", "labels", "split", "boxes", "parts")}
    out: Dict[str, List[Written]] = {}
    image_id = 0
    for split, (photos, truth) in data.items():
        for i, (photo, w) in enumerate(zip(photos, truth, strict=True)):
            image_id += 1
            rel = f"{_class_folder(w.label)}/{birds.CLASS_NAMES[w.label].title().replace(' ', '_')}_{image_id:04d}.jpg"
            w.path = str(base / "images" / rel)
            _save(photo, base / "images" / rel, i, split == "test")
            if split == "test" and i == 0:
                w.visible[PART_NAMES.index("eye")] = False
            x0, y0, x1, y1 = w.box
            rows["images"].append(f"{image_id} {rel}")
            rows["labels"].append(f"{image_id} {w.label + 1}")
            rows["split"].append(f"{image_id} {int(split == 'train')}")
            rows["boxes"].append(f"{image_id} {x0:.1f} {y0:.1f} {x1 - x0:.1f} {y1 - y0:.1f}")
            for p in range(len(PART_NAMES)):
                x, y = w.points[p] if w.visible[p] else (0.0, 0.0)
                rows["parts"].append(f"{image_id} {p + 1} {x:.3f} {y:.3f} {int(w.visible[p])}")
        out[split] = truth
    for key, name in (("images", "images.txt"), ("labels", "image_class_labels.txt"),
                      ("split", "train_test_split.txt"), ("boxes", "bounding_boxes.txt")):
        lines = rows[key][:]
        rng.shuffle(lines)  # ids out of order: the reader sorts them
        (base / name).write_text("\n".join(lines) + "\n")
    (base / "classes.txt").write_text("".join(f"{c + 1} {_class_folder(c)}\n" for c in range(birds.NUM_CLASSES)))
    (base / "parts").mkdir(parents=True, exist_ok=True)
    (base / "parts" / "parts.txt").write_text("".join(f"{p + 1} {n}\n" for p, n in enumerate(PART_NAMES)))
    part_lines = rows["parts"][:]
    rng.shuffle(part_lines)
    (base / "parts" / "part_locs.txt").write_text("\n".join(part_lines) + "\n")
    (base / "attributes").mkdir(exist_ok=True)
    (Path(root) / "attributes.txt").write_text("".join(f"{a + 1} {n}\n" for a, n in enumerate(cub_attribute_names())))
    percent = birds.ATTRIBUTES.astype(np.float64) * 100.0
    (base / "attributes" / "class_attribute_labels_continuous.txt").write_text(
        "".join(" ".join(f"{v:.10f}" for v in row) + "\n" for row in percent))
    if missing:
        Path(out["test"][-1].path).unlink()
    return out


def _matlab_box(box: Tuple[float, float, float, float]) -> Tuple[int, int, int, int]:
    """Pixel edges -> 1-based inclusive pixel indices."""
    x0, y0, x1, y1 = box
    return int(x0) + 1, int(y0) + 1, int(x1), int(y1)


def write_cars(root: Any, n_train: int = 16, n_test: int = 16, size: int = 64, seed: int = 0,
               missing: bool = False) -> Dict[str, List[Written]]:
    """The Stanford Cars devkit layout: ``devkit/cars_meta.mat``, ``devkit/cars_train_annos.mat``,
    ``devkit/cars_test_annos_withlabels.mat``, ``cars_train/``, ``cars_test/``."""
    from scipy.io import savemat  # type: ignore[import-untyped]

    base = Path(root)
    (base / "devkit").mkdir(parents=True, exist_ok=True)
    names = np.empty((1, birds.NUM_CLASSES), dtype=object)
    names[0] = list(birds.CLASS_NAMES)
    savemat(str(base / "devkit" / "cars_meta.mat"), {"class_names": names})
    out = {}
    fields = [(k, "O") for k in ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname")]
    for split, (photos, truth) in _splits(n_train, n_test, size, seed).items():
        annos = np.zeros((1, len(truth)), dtype=fields)
        for i, (photo, w) in enumerate(zip(photos, truth, strict=True)):
            fname = f"{i + 1:05d}.jpg"
            w.path = str(base / f"cars_{split}" / fname)
            _save(photo, Path(w.path), i, split == "test")
            x1, y1, x2, y2 = _matlab_box(w.box)
            annos[0, i] = tuple(np.array([[v]], np.uint16) for v in (x1, y1, x2, y2, w.label + 1)) + (np.array([fname]),)
        name = "cars_train_annos.mat" if split == "train" else "cars_test_annos_withlabels.mat"
        savemat(str(base / "devkit" / name), {"annotations": annos})
        out[split] = truth
    if missing:
        Path(out["test"][-1].path).unlink()
    return out


def write_cars_csv(root: Any, n_train: int = 16, n_test: int = 16, size: int = 64, seed: int = 0) -> Dict[str, List[Written]]:
    """The CSV variant mirrors ship: ``anno_<split>.csv`` (``fname,x1,y1,x2,y2,class``, no header),
    ``names.csv``, images under ``car_data/car_data/<split>/<class name>/``."""
    base = Path(root)
    base.mkdir(parents=True, exist_ok=True)
    (base / "names.csv").write_text("".join(n + "\n" for n in birds.CLASS_NAMES))
    out = {}
    for split, (photos, truth) in _splits(n_train, n_test, size, seed).items():
        lines = []
        for i, (photo, w) in enumerate(zip(photos, truth, strict=True)):
            fname = f"{i + 1:05d}.jpg"
            w.path = str(base / "car_data" / "car_data" / split / birds.CLASS_NAMES[w.label] / fname)
            _save(photo, Path(w.path), i, split == "test")
            lines.append(",".join(str(v) for v in (fname, *_matlab_box(w.box), w.label + 1)))
        (base / f"anno_{split}.csv").write_text("\n".join(lines) + "\n")
        out[split] = truth
    return out


def write_aircraft(root: Any, n_train: int = 16, n_test: int = 16, size: int = 64, seed: int = 0,
                   missing: bool = False) -> Dict[str, List[Written]]:
    """``root/data`` of FGVC-Aircraft: ``variants.txt``, ``images_variant_{train,val,test}.txt``,
    ``images_box.txt`` and ``images/`` with a 20-pixel banner under each photo (val = the first
    half of the train images)."""
    base = Path(root) / "data"
    (base / "images").mkdir(parents=True, exist_ok=True)
    (base / "variants.txt").write_text("".join(n + "\n" for n in birds.CLASS_NAMES))
    boxes, out, image_no = [], {}, 1000000
    for split, (photos, truth) in _splits(n_train, n_test, size, seed).items():
        lines = []
        for i, (photo, w) in enumerate(zip(photos, truth, strict=True)):
            image_no += 7
            name = f"{image_no:07d}"
            banner = np.full((BANNER, photo.shape[1], 3), 255, np.uint8)
            banner[5:15, 4:-4] = 0  # "copyright" text
            w.path = str(base / "images" / f"{name}.jpg")
            _save(np.concatenate([photo, banner], axis=0), Path(w.path), i, split == "test")
            x1, y1, x2, y2 = _matlab_box(w.box)
            if i == 0:
                y2 = size + BANNER  # a box reaching into the banner is clipped to the photo
            boxes.append(f"{name} {x1} {y1} {x2} {y2}")
            lines.append(f"{name} {birds.CLASS_NAMES[w.label]}")
        (base / f"images_variant_{split}.txt").write_text("\n".join(lines) + "\n")
        if split == "train":
            (base / "images_variant_val.txt").write_text("\n".join(lines[: len(lines) // 2]) + "\n")
        out[split] = truth
    out["test"][0].box = out["test"][0].box[:3] + (float(size),)
    out["train"][0].box = out["train"][0].box[:3] + (float(size),)
    (base / "images_box.txt").write_text("\n".join(boxes) + "\n")
    if missing:
        Path(out["test"][-1].path).unlink()
    return out


def write_birds525(root: Any, n_train: int = 16, n_test: int = 16, size: int = 64, seed: int = 0) -> Dict[str, List[Written]]:
    """``train/``, ``valid/``, ``test/`` with one upper-case folder per species (valid = test)."""
    base = Path(root)
    out = {}
    for split, (photos, truth) in _splits(n_train, n_test, size, seed).items():
        for folder in ((split,) if split == "train" else ("test", "valid")):
            for i, (photo, w) in enumerate(zip(photos, truth, strict=True)):
                path = base / folder / birds.CLASS_NAMES[w.label].upper() / f"{i + 1}.jpg"
                w.path = str(path) if folder != "valid" else w.path
                _save(photo, path, i, split == "test")
        # the reader lists a class folder's files in name order, classes in name order
        order = sorted(range(len(truth)), key=lambda i: (birds.CLASS_NAMES[truth[i].label].upper(), f"{i + 1}.jpg"))
        out[split] = [truth[i] for i in order]
    return out


def write_fishvista(root: Any, n_train: int = 16, n_test: int = 16, size: int = 64, seed: int = 0,
                    missing: bool = False) -> Dict[str, List[Written]]:
    """``classification_{train,val,test}.csv``, ``segmentation_test.csv`` (the test images), the
    images under ``Images/chunk_1``, the trait masks ``segmentation_masks/images/<stem>.png``
    (pixel value = part index + 1) and ``seg_id_trait_map.json``."""
    from PIL import Image

    base = Path(root)
    (base / "Images" / "chunk_1").mkdir(parents=True, exist_ok=True)
    (base / "segmentation_masks" / "images").mkdir(parents=True, exist_ok=True)
    trait_map = {"0": "background", **{str(p + 1): n for p, n in enumerate(PART_NAMES)}}
    (base / "segmentation_masks" / "seg_id_trait_map.json").write_text(json.dumps(trait_map))
    out = {}
    header = ["filename", "family", "source", "standardized_species", "file_name"]
    for split, (photos, truth) in _splits(n_train, n_test, size, seed).items():
        rows = []
        for i, (photo, w) in enumerate(zip(photos, truth, strict=True)):
            filename = f"{split}_{i:03d}.jpg"
            w.path = str(base / "Images" / "chunk_1" / filename)
            _save(photo, Path(w.path), i, split == "test")
            if split == "test":
                Image.fromarray(w.labels_image).save(base / "segmentation_masks" / "images" / f"{split}_{i:03d}.png")
            rows.append([filename, birds.FAMILIES[birds.CLASS_FAMILY[w.label]], "world",
                         birds.CLASS_NAMES[w.label], f"Images/chunk_1/{filename}"])
        names = [f"classification_{split}.csv"] + (["classification_val.csv", "segmentation_test.csv"] if split == "test" else [])
        for name in names:
            with open(base / name, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(header)
                writer.writerows(rows)
        out[split] = truth
    if missing:
        Path(out["test"][-1].path).unlink()
    return out
