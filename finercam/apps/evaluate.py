"""The dataset evaluation runner: the paper's Table 1 (and its ablations) on your model and data.

``evaluate(model, target_layer, dataset, ...)`` explains every image with each CAM method, with
and without Finer, scores every map with :func:`finercam.metrics.evaluate_maps` (deletion AUC,
RD@0.05, RD@0.1, the target's confidence drop, and, where the data set has boxes or masks, the
energy pointing game "Loc." and the pointing game), and averages over the data set.

Resumable. With ``out_dir``, each batch's per-image results are appended to
``out_dir/per_image.jsonl`` (one JSON object per image, written and flushed batch by batch). A run
that is killed and started again with the same arguments skips every batch already recorded, so
the final table equals that of an uninterrupted run: batches are a fixed grid over the data set
indices (``batch_size`` consecutive indices), a batch is either recorded whole or computed again
whole, duplicates are dropped by index, and means are taken in index order.

Distributed. Under ``torchrun --nproc-per-node N`` (``WORLD_SIZE`` > 1) the process group is
initialised (gloo on CPU, nccl on GPU) unless it already is; rank r evaluates every N-th batch of
those not yet recorded (the ranks agree on that set) and appends to ``per_image.rank{r}.jsonl``;
the ranks then exchange their records (so ``out_dir`` need not be shared between machines) and
rank 0 writes the table. The batch grid does not depend on N, so the merged table equals
the single-process one.

Classes. A folder's label is its index among the sorted folder names, unless ``labels`` (a
file with one class name per line in the model's output order, or a list of names) maps each
folder name to the model's class of that name. With ``target="label"``, a run whose labels are
among the model's top-5 classes for less than 5 % of the first batch stops, naming the likely
causes (class order, preprocessing) and the options (``labels``, ``target="predicted"``).

Preprocessing of a folder's images: the model's own (the built-in models' sizes and statistics;
for others a 224 x 224 resize and the ImageNet mean and std), or ``size``, ``mean``, ``std``, or
``transform`` (PIL RGB image -> tensor, or an import string naming one), all read by
:mod:`finercam.apps.inputs`. Outputs that look like probabilities give a ``UserWarning``.

Before anything is written. Every argument is checked and the first batch is forwarded (timed,
with the target layer's shape captured): a model with one output, a layer without a feature map
or a label outside the model's classes stops the run with nothing written to ``out_dir``.

Cost. ``methods`` defaults to Grad-CAM and Layer-CAM, plus Score-CAM when its one forward per
channel of the target layer is at most 4x the forwards the metrics make for its rows (the
embedded CNN's 96 channels: yes; EfficientNet-Lite0's 1,280: no). Masked images and Score-CAM's
inputs are forwarded ``chunk_size`` at a time. The default is the fastest size of a short
calibration (:func:`finercam.apps.progress.best_chunk_size`) when it costs at most 2 % of the
run's forwards, else a rule (:func:`finercam.apps.progress.rule_chunk_size`: the largest power of
two up to 64 whose inputs fit in 8 MiB on CPU; larger chunks of large images spend their time in
page faults). With ``verbose`` the plan (maps and forwards per
image) and an estimate from the timed forward are printed before the first batch; ``progress``
shows a bar counting images, with an ETA.

Outputs in ``out_dir``: ``table.md`` (also printed), ``table.csv``, ``table.json`` (the rows, the
configuration, the image count and every unreadable image).

Rows: per method, ``"Grad-CAM"`` (gamma = 0, the base method) and ``"Grad-CAM + Finer"`` (the
configured gamma, references and aggregation), then the ablations: ``"... gamma=0.2"`` (Fig. 6b),
``"... ref=2"`` (compared with the 2nd most similar class only, Table 2) and ``"... agg=max"``
(Table 3). Targets are the data set labels (``target="label"``) or the predictions.

``finercam.apps.evaluate.evaluate`` is the function; the module's other names import as
``from finercam.apps.evaluate import ImageFolder``.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import glob
import itertools
import json
import math
import os
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .. import metrics
from .._checks import check_fraction, check_int
from ..capture import extract_logits
from . import inputs
from .inputs import ModelInputs, default_transform
from .progress import RunCost, best_chunk_size, progress_bar, rule_chunk_size, timed_forward
from ..explanation import check_aggregate, check_gamma
from ..methods import METHOD_LABELS

__all__ = ["evaluate", "EvalResult", "ImageFolder", "Unreadable", "METHOD_NAMES", "add_arguments", "run"]

METHOD_NAMES = METHOD_LABELS
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".jfif",
                    ".ppm", ".pgm")


# --- data ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unreadable:
    """What a folder data set returns for an image that cannot be decoded.

    >>> Unreadable("birds/a/broken.jpg", "OSError: truncated")
    Unreadable(path='birds/a/broken.jpg', reason='OSError: truncated')
    """

    path: str
    reason: str


class ImageFolder(torch.utils.data.Dataset):
    """``root/<class>/<image>``, read with Pillow; ``classes`` are the folder names, sorted.

    A folder's label is its index among the sorted folder names, unless ``class_names`` (the
    model's classes in output order, e.g. from ``--labels``) is given: then it is the index of
    its name there (matched exactly, else ignoring case and ``_`` vs space), and a folder whose
    name is not found is an error.

    Each item is ``(image, label)`` or, when ``root/boxes.csv`` exists (lines
    ``relative/path,x0,y0,x1,y1`` in the photo's pixels), ``(image, label, box)`` with the box
    carried into the transformed image: ``crop(width, height)`` gives the part of the photo the
    transform keeps (default: all of it, as a plain resize does). ``transform`` maps a PIL RGB
    image to a ``(3, H, W)`` tensor (default: a 224 x 224 resize and the ImageNet mean and std).
    A file that cannot be decoded gives an :class:`Unreadable` item instead of an exception: the
    runner counts and reports it.

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
               else _class_ids(self.classes, class_names))
        self.samples = [(str(p), c) for c, name in zip(ids, self.classes)
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


def _class_ids(folders: Sequence[str], class_names: Sequence[str]) -> list[int]:
    """The model's class id of each folder name: exact, else ignoring case and ``_``/space."""
    def loose(name: str) -> str:
        return name.strip().lower().replace("_", " ")

    exact = {n: i for i, n in reversed(list(enumerate(class_names)))}
    relaxed = {loose(n): i for i, n in reversed(list(enumerate(class_names)))}
    ids = [exact.get(f, relaxed.get(loose(f))) for f in folders]
    missing = [f for f, i in zip(folders, ids) if i is None]
    if missing:
        shown = ", ".join(repr(f) for f in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ValueError(f"labels: {len(missing)} of the {len(folders)} class folders are not "
                         f"among the {len(class_names)} class names: {shown}")
    return ids


# --- configuration and records --------------------------------------------------------------


@dataclass
class _Config:
    """What a run computes. Checked when built (a bad value raises naming its argument) and
    recorded as the header of every per-image file: a resumed run must match it."""

    methods: list
    finer: bool
    gamma: float
    num_references: int
    reference_rule: str
    aggregate: str
    gammas: list
    reference_ranks: list
    aggregations: list
    fractions: list
    steps: int
    baseline: Any
    target: str
    batch_size: int
    n_images: int

    def __post_init__(self) -> None:
        if self.methods is not None:  # None: the default methods, chosen at the first batch
            self.methods = list(self.methods)
            if not self.methods:
                raise ValueError("methods must name at least one CAM method")
        if self.target not in ("label", "predicted"):
            raise ValueError(f'target must be "label" or "predicted", got {self.target!r}')
        self.finer = bool(self.finer)
        self.fractions = [check_fraction(f, "fractions") for f in self.fractions]
        self.aggregations = [check_aggregate(a) for a in self.aggregations]
        if isinstance(self.baseline, (str, bool, np.bool_, int, float)):  # arrays: per batch
            metrics.baseline_values(self.baseline, np.zeros((1, 1, 1, 1), np.float32))
        self.steps = check_int(self.steps, "steps")
        self.batch_size = check_int(self.batch_size, "batch_size")
        self.reference_ranks = [check_int(r, "reference_ranks") for r in self.reference_ranks]
        self.gamma = check_gamma(self.gamma)
        self.gammas = [check_gamma(g) for g in self.gammas]
        self.num_references = check_int(self.num_references, "num_references")

    def record(self) -> dict:
        """The configuration as JSON stores it (an array baseline is recorded as "custom")."""
        rec = asdict(replace(self, baseline=0.0))
        rec["baseline"] = self.baseline if isinstance(self.baseline, (str, int, float)) else "custom"
        return json.loads(json.dumps(rec))

    def batch_indices(self, b: int) -> range:
        """The data set indices of batch ``b`` of the fixed grid."""
        return range(b * self.batch_size, min(self.n_images, (b + 1) * self.batch_size))


@dataclass
class EvalResult:
    """The merged table. ``rows``: one dict per setting with the means; ``markdown()`` renders
    the Table-1-style view.

    A row's value for a metric is the mean over the images where it is defined,
    :math:`\\frac{1}{|D|} \\sum_{i \\in D} m_i` (``math.fsum``, in index order), so the pointing
    column is the hit rate; an image whose value is NaN (the energy share of an all-zero map) is
    left out of :math:`D` and counted in ``<metric>_nan``; ``n`` counts the images of the row.

    >>> r = EvalResult(rows=[{"setting": "gradcam", "deletion": 0.25}], n_images=8)
    >>> print(r.markdown())
    | Method | Del. ↓ |
    |---|---:|
    | gradcam | 0.250 |
    <BLANKLINE>
    8 images
    """

    rows: list
    n_images: int
    skipped: list = field(default_factory=list)
    config: dict = field(default_factory=dict)
    out_dir: str | None = None

    def markdown(self) -> str:
        cols = [c for c in _columns(self.config.get("fractions", (0.05, 0.1)))
                if any(c[0] in r for r in self.rows)]
        head = "| Method | " + " | ".join(c[1] for c in cols) + " |"
        rule = "|---|" + "|".join("---:" for _ in cols) + "|"
        lines = [head, rule]
        for r in self.rows:
            cells = []
            for key, _ in cols:
                v = r.get(key)
                cells.append("" if v is None else "nan" if math.isnan(v) else f"{v:.3f}")
            lines.append(f"| {r['setting']} | " + " | ".join(cells) + " |")
        tail = f"\n{self.n_images} images"
        if self.skipped:
            tail += f"; {len(self.skipped)} unreadable image(s) skipped"
        return "\n".join(lines) + tail


def _columns(fractions):
    cols = [("deletion", "Del. ↓")]
    cols += [(f"rd@{f:g}", f"RD@{f:g} ↑") for f in fractions]
    cols += [(f"drop@{f:g}", f"Drop@{f:g} ↑") for f in fractions]
    cols += [("energy", "Loc. ↑"), ("pointing", "Point. ↑")]
    return cols



def _settings(cfg: _Config) -> list[tuple[str, str, dict | None]]:
    """(row name, method, recombine kwargs or None for the base method)."""
    out = []
    for m in cfg.methods:
        name = METHOD_NAMES.get(m, m)
        out.append((name, m, None))
        if cfg.finer:
            out.append((f"{name} + Finer", m, {}))
        for g in cfg.gammas:
            out.append((f"{name} + Finer gamma={g:g}", m, {"gamma": float(g)}))
        for r in cfg.reference_ranks:
            out.append((f"{name} + Finer ref={r}", m, {"rank": int(r)}))
        for a in cfg.aggregations:
            out.append((f"{name} + Finer agg={a}", m, {"aggregate": a}))
    return out


def _rank_files(out_dir: Path) -> list[Path]:
    return sorted(Path(p) for p in glob.glob(str(out_dir / "per_image*.jsonl")))


def _read_records(path: Path) -> tuple[dict | None, list[dict], int]:
    """(header, records, byte length of the complete lines) of one JSONL file; a torn last line
    (the process was killed mid-write) is ignored."""
    header, records, good = None, [], 0
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while True:
        end = data.find(b"\n", pos)
        if end < 0:
            break
        line = data[pos:end]
        pos = end + 1
        try:
            obj = json.loads(line)
        except ValueError:
            break  # a torn line: nothing after it was written by a live process
        if "config" in obj:
            header = obj
        else:
            records.append(obj)
        good = pos
    return header, records, good


class _Journal:
    """The per-image JSONL files of a run in ``out``: this rank appends to its own file, which
    (with ``out`` itself) is created at the first write, so a run that fails before its first
    batch is recorded leaves nothing behind."""

    def __init__(self, out: Path, rank: int, config: dict):
        self.out, self.config = out, config
        self.own = out / ("per_image.jsonl" if rank == 0 else f"per_image.rank{rank}.jsonl")
        self._good = 0       # byte length of the complete lines of this rank's file
        self._opened = False

    def read(self) -> list[dict]:
        """The records of every rank's file; a file of another configuration is refused."""
        records = []
        for path in _rank_files(self.out):
            header, recs, good = _read_records(path)
            if header is not None and header["config"] != self.config:
                raise ValueError(f"out_dir {str(self.out)!r} holds a run with another "
                                 f"configuration ({path.name}); use a new out_dir or remove it")
            records += recs
            if path == self.own:
                self._good = good
        return records

    def append(self, records: list[dict]) -> None:
        """One write per batch, on disk before the next batch starts."""
        if not self._opened:
            self.out.mkdir(parents=True, exist_ok=True)
            if self.own.exists():
                os.truncate(self.own, self._good)  # drop a torn last line
            if self._good == 0:
                self.own.write_text(json.dumps({"config": self.config}) + "\n")
            self._opened = True
        with open(self.own, "a") as f:
            f.write("".join(json.dumps(r) + "\n" for r in records))
            f.flush()
            os.fsync(f.fileno())

    def own_records(self) -> list[dict]:
        return _read_records(self.own)[1] if self.own.exists() else []

    def all_records(self) -> list[dict]:
        return [r for path in _rank_files(self.out) for r in _read_records(path)[1]]


# --- the model, data and process group --------------------------------------------------------


def _model_inputs(model, target_layer, preprocessing: dict, labels) -> ModelInputs:
    """The model with its layer, preprocessing and (with ``labels``) class names, all checked
    before any model call (a labels file must name as many classes as the model has)."""
    if not isinstance(model, (torch.nn.Module, str)):
        raise TypeError(f"model must be a torch.nn.Module or a string, got {type(model).__name__}")
    found = inputs.load_model(model)
    if target_layer is not None:
        found = replace(found, layer=target_layer)
    if found.layer is None:
        raise ValueError("target_layer is required (the model has no default_target_layer)")
    if labels is not None:
        names = (inputs.read_labels(labels) if isinstance(labels, (str, os.PathLike))
                 else tuple(str(n) for n in labels))
        inputs.check_labels(names, len(found.class_names) if found.class_names
                            else inputs.num_classes_of(found.model), "labels")
        found = replace(found, class_names=names)
    return inputs.with_preprocessing(found, **preprocessing)


def _resolve_dataset(dataset, found: ModelInputs, preprocessing: dict, labels):
    """A folder is read with the model's preprocessing (and, with ``labels``, its class
    names); a Dataset, or an import string giving one, is used as it is."""
    if dataset is None:
        raise ValueError("dataset is required")
    if isinstance(dataset, (str, os.PathLike)) and os.path.isdir(dataset):
        return ImageFolder(dataset, transform=found.transform, crop=found.crop,
                           class_names=found.class_names if labels is not None else None)
    given = [k for k, v in preprocessing.items() if v is not None]
    if given:
        raise ValueError(f"{', '.join(given)}: the preprocessing options apply to a folder of "
                         "images; a Dataset's items are used as they are")
    if isinstance(dataset, (str, os.PathLike)):
        obj = inputs.import_object(str(dataset), "dataset")
        is_dataset = not isinstance(obj, type) and hasattr(obj, "__getitem__") and hasattr(obj, "__len__")
        dataset = obj if is_dataset else obj()  # a class or a factory is called without arguments
    if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
        raise TypeError(f"dataset must be a Dataset (with __getitem__ and __len__) or a directory, "
                        f"got {type(dataset).__name__}")
    return dataset


@dataclass
class _Group:
    """The process group of a run: ``dist`` is None for a single process."""

    dist: Any = None
    rank: int = 0
    world: int = 1

    def barrier(self) -> None:
        if self.dist is not None:
            self.dist.barrier()

    def gather(self, value) -> list:
        """Every rank's ``value``, in rank order."""
        if self.dist is None:
            return [value]
        out = [None] * self.world
        self.dist.all_gather_object(out, value)
        return out

    def union(self, values: list) -> list:
        return [v for part in self.gather(values) for v in part]


@contextlib.contextmanager
def _joined_group(device):
    """The process group: the caller's, a new one under torchrun (``WORLD_SIZE`` > 1; gloo on
    CPU, nccl on GPU; destroyed on exit) or none."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        yield _Group(dist, dist.get_rank(), dist.get_world_size())
        return
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        yield _Group()
        return
    use_nccl = torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda")
    if use_nccl:  # nccl's collectives (all_gather_object included) use the current device
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if use_nccl else "gloo")
    try:
        yield _Group(dist, dist.get_rank(), dist.get_world_size())
    finally:
        dist.destroy_process_group()


@contextlib.contextmanager
def _placed(net, device, group: _Group):
    """The model in eval mode on ``device`` (under nccl: this rank's GPU) for the run; yields
    the device of its parameters. Its modes and its device are restored afterwards."""
    place = device
    if place is None and group.dist is not None and torch.cuda.is_available() \
            and group.dist.get_backend() == "nccl":
        place = f"cuda:{int(os.environ.get('LOCAL_RANK', group.rank))}"
    modes = {m: m.training for m in net.modules()}
    home = None
    try:
        home = _home_device(net, place is not None)
        if place is not None:
            net.to(place)
        net.eval()
        yield next(iter(net.parameters()), torch.zeros(0)).device
    finally:
        for m, flag in modes.items():
            m.training = flag
        if place is not None and home is not None:
            net.to(home)  # the caller's model goes back where it was


def _home_device(net, moving: bool):
    """The one device holding the model's parameters and buffers (None for a model without any);
    a model spread over several devices is not moved."""
    devices = {t.device for t in itertools.chain(net.parameters(), net.buffers())}
    if moving and len(devices) > 1:
        raise ValueError(f"device: the model is spread over {sorted(map(str, devices))}; place it "
                         "yourself and leave device=None")
    return next(iter(devices)) if len(devices) == 1 else None


def _split_item(item, index):
    if isinstance(item, Unreadable):
        return item
    if isinstance(item, dict):
        item = (item["image"], item["label"], item.get("box", item.get("mask")))
    if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
        raise TypeError(f"dataset[{index}] must be (image, label) or (image, label, box_or_mask), "
                        f"got {type(item).__name__}")
    x, y = item[0], item[1]
    region = item[2] if len(item) == 3 else None
    if isinstance(region, dict):  # e.g. (image, label, {"box": ..., "parts": ...})
        region = region.get("box", region.get("mask"))
    if not isinstance(x, torch.Tensor) or x.ndim != 3:
        raise TypeError(f"dataset[{index}] image must be a (C, H, W) tensor, got "
                        f"{type(x).__name__} {tuple(getattr(x, 'shape', ()))}")
    return x, int(y), region


def _region_mask(region, h, w):
    r = np.asarray(region.detach().cpu() if isinstance(region, torch.Tensor) else region)
    if r.shape == (4,):
        return metrics.boxes_to_masks(r[None].astype(np.float64), (h, w))[0]
    r = r.reshape(r.shape[-2:]) if r.ndim == 3 and r.shape[0] == 1 else r
    if r.shape != (h, w):
        raise ValueError(f"a mask must be (H, W) = ({h}, {w}) like its image, got {r.shape}")
    return r != 0


# --- before the run: the first batch, the chunk size, the plan --------------------------------

#: Score-CAM joins the default methods when its forwards per image (one per channel of the
#: target layer) are at most this many times the forwards the metrics make for its rows.
SCORECAM_COST_FACTOR = 4
#: The least share of the first batch whose label is among the model's top-5 classes.
MIN_LABEL_AGREEMENT = 0.05


@dataclass(frozen=True)
class _FirstLook:
    """What the first batch shows before anything is written."""

    seconds_per_image: float   # its forward, timed
    channels: int              # of the target layer(s): Score-CAM's forwards per image
    example: torch.Tensor      # one input, for the chunk calibration


def _first_batch(data, cfg: _Config) -> tuple[torch.Tensor, np.ndarray]:
    """The readable items among the first ``batch_size`` indices (or the first readable one)."""
    items = []
    for i in range(cfg.n_images):
        split = _split_item(data[i], i)
        if not isinstance(split, Unreadable):
            items.append(split)
        if items and (len(items) == cfg.batch_size or i + 1 >= cfg.batch_size):
            break
    if not items:
        raise ValueError(f"dataset: none of its {cfg.n_images} images can be read")
    return torch.stack([x for x, _, _ in items]), np.array([y for _, y, _ in items], np.int64)


def _layer_channels(out, name) -> int:
    out = out[0] if isinstance(out, (tuple, list)) else out
    shape = tuple(getattr(out, "shape", ()))
    if len(shape) not in (3, 4):
        raise ValueError(f"target_layer {name!r} gives outputs of shape {shape}: a CAM needs a "
                         "feature map (N, K, h, w) or tokens (N, T, D)")
    return int(shape[1] if len(shape) == 4 else shape[-1])


def _check_logits(logits: np.ndarray, labels: np.ndarray, cfg: _Config) -> None:
    """The model's first outputs: logits of at least two classes that cover the labels and,
    for ``target="label"``, agree with the labels often enough to be in the same class order."""
    if logits.ndim != 2:
        raise ValueError(f"model: must return (N, classes) logits, got shape {logits.shape}")
    n, classes = logits.shape
    if classes < 2:
        raise ValueError(f"model: returns {classes} output per image; Finer-CAM compares the "
                         "target with other classes and needs logits for at least 2")
    inputs.warn_if_probabilities(logits, "the model")
    if cfg.target != "label":
        return
    if labels.min() < 0 or labels.max() >= classes:
        raise ValueError(f"labels: the data set has label {int(labels.max())} but the model has "
                         f"{classes} classes (give labels naming the model's classes, or "
                         "target='predicted')")
    top = np.argsort(-logits, axis=1)[:, :5]
    hits = int((top == labels[:, None]).any(axis=1).sum())
    if hits < MIN_LABEL_AGREEMENT * n:
        raise ValueError(
            f"labels: the data set's labels are among the model's top-5 classes for {hits} of "
            f"the first {n} images (less than {MIN_LABEL_AGREEMENT:.0%}). Likely causes: the "
            "label ids do not follow the model's class order (a folder's label is its index "
            "among the sorted folder names), or the images are not preprocessed as the model "
            "expects (size, mean, std, transform). Options: labels (--labels FILE, the model's "
            "class names in output order, matched to the folder names) or target='predicted' "
            "(--target predicted) to explain the model's own prediction")


def _first_look(net, device, layer, data, cfg: _Config) -> _FirstLook:
    """Forward the first batch (timed), with the target layer's shape captured; check it."""
    from ..layers import resolve_layers

    images, labels = _first_batch(data, cfg)
    images = images.to(device)
    channels: dict = {}

    def keep_channels(name):
        def hook(module, args, out) -> None:  # returns None: the output is left as it is
            channels.setdefault(name, _layer_channels(out, name))
        return hook

    handles = [module.register_forward_hook(keep_channels(name))
               for name, module in resolve_layers(net, layer)]
    try:
        out, seconds = timed_forward(net, images)
    finally:
        for h in handles:
            h.remove()
    _check_logits(extract_logits(out, len(images)).detach().double().cpu().numpy(), labels, cfg)
    return _FirstLook(seconds, sum(channels.values()), images[0])


def _masked_counts(cfg: _Config, pixels: int) -> int:
    """Distinct masked-pixel counts a map costs (RD fractions and deletion steps share)."""
    counts = {metrics.top_count(f, pixels) for f in cfg.fractions}
    counts |= {int(c) for c in metrics.deletion_counts(cfg.steps, pixels)}
    return len(counts - {0})


def _rows_per_method(cfg: _Config) -> int:
    return 1 + cfg.finer + len(cfg.gammas) + len(cfg.reference_ranks) + len(cfg.aggregations)


def _default_methods(cfg: _Config, look: _FirstLook) -> list[str]:
    """Grad-CAM and Layer-CAM, and Score-CAM when its cost is comparable to theirs."""
    pixels = int(look.example.shape[-1] * look.example.shape[-2])
    metric_forwards = _rows_per_method(cfg) * (1 + _masked_counts(cfg, pixels))
    cheap = look.channels <= SCORECAM_COST_FACTOR * metric_forwards
    return ["gradcam", "layercam"] + (["scorecam"] if cheap else [])


#: The share of a run's forwards a calibration of the chunk size may take.
CALIBRATION_SHARE = 0.02


def _chunk_size(net, look: _FirstLook, chunk_size, cost: RunCost) -> int:
    """Images per forward: ``chunk_size`` if given; else a calibration when the run is long
    enough that it costs at most 2 % of its forwards; else :func:`rule_chunk_size`."""
    if chunk_size is not None:
        return chunk_size
    on_gpu = look.example.is_cuda
    budget = int(CALIBRATION_SHARE * cost.images * cost.forwards_per_image)
    if budget < 4 + 4 + 8 + 16:  # the warm-up and three sizes: too short a run to calibrate
        return rule_chunk_size(look.example, max_bytes=2**28 if on_gpu else 2**23,
                               max_chunk=256 if on_gpu else 64)
    chunk, _ = best_chunk_size(net, look.example, max_bytes=2**31 if on_gpu else 2**28,
                               max_chunk=1024 if on_gpu else 256, max_images=budget)
    return chunk


def _run_cost(cfg: _Config, look: _FirstLook, images: int) -> RunCost:
    pixels = int(look.example.shape[-1] * look.example.shape[-2])
    rows = len(_settings(cfg))
    per_row = 1 + _masked_counts(cfg, pixels)  # the unmasked image and each masked count
    forwards = {f"RD and deletion ({rows} rows x {per_row})": rows * per_row}
    if "scorecam" in cfg.methods:
        forwards[f"Score-CAM ({look.channels} channels)"] = look.channels
    return RunCost(images, len(cfg.methods), forwards, look.seconds_per_image)


def _announce(cfg: _Config, look: _FirstLook, chunk: int, methods_given: bool) -> None:
    names = ", ".join(METHOD_NAMES.get(m, m) for m in cfg.methods)
    print(f"evaluate: {cfg.n_images} images, {len(_settings(cfg))} rows ({names}), "
          f"{chunk} images per forward", file=sys.stderr)
    if not methods_given and "scorecam" not in cfg.methods:
        print(f"Score-CAM left out of the default methods: {look.channels} forwards per image "
              "(one per channel) is more than "
              f"{SCORECAM_COST_FACTOR}x what the metrics cost; add it with --methods",
              file=sys.stderr)


# --- the run ------------------------------------------------------------------------------------


@dataclass
class _Job:
    """Everything one batch needs: the placed model, one FinerCAM per method, the rows."""

    net: torch.nn.Module
    device: torch.device
    cams: dict
    settings: list
    cfg: _Config
    data: Any
    chunk: int                 # images per forward of masked inputs
    cost: RunCost | None       # announced before the first batch (None: silent)


def _setting_maps(exp, kw: dict | None) -> np.ndarray:
    """The maps of one row from its method's explanation (no model call)."""
    if kw is None:
        return exp.baseline().maps
    if "rank" in kw:
        return exp.recombine(references=exp.candidates[:, kw["rank"]].reshape(-1, 1).tolist()).maps
    return exp.recombine(**kw).maps


def _region_scores(maps, masks, has_region) -> dict:
    """Loc. (the energy share inside the box or mask) and the pointing game; NaN / False for
    the images without a region."""
    n, sel = len(maps), np.nonzero(has_region)[0]
    energy, pointing = np.full(n, np.nan), np.zeros(n, bool)
    energy[sel] = metrics.energy_in_mask(np.maximum(maps[sel], 0), masks)
    pointing[sel] = metrics.pointing_game(maps[sel], masks)
    return {"energy": energy, "pointing": pointing}


def _evaluate_batch(job: _Job, batch, indices) -> list[dict]:
    """The per-image records of one batch of readable items: every row's metrics."""
    cfg = job.cfg
    xs, labels, regions = zip(*batch)
    images = torch.stack(xs).to(job.device)
    labels = np.array(labels, dtype=np.int64)
    n, _, h, w = images.shape
    # the first method's forward gives the logits (and, for target="predicted", the targets)
    first, *others = cfg.methods
    explained = {first: job.cams[first](images, targets=labels if cfg.target == "label" else None)}
    logits = np.asarray(explained[first].logits, dtype=np.float64)
    targets = labels if cfg.target == "label" else np.asarray(explained[first].targets)
    explained.update({m: job.cams[m](images, targets=targets) for m in others})
    compare = metrics.nearest_logit_class(logits, targets)
    has_region = np.array([r is not None for r in regions])
    masks = (np.stack([_region_mask(r, h, w) for r in regions if r is not None])
             if has_region.any() else None)
    records = [{"index": int(i), "label": int(labels[j]), "target": int(targets[j]),
                "compare_to": int(compare[j]), "metrics": {}} for j, i in enumerate(indices)]
    for name, method, kw in job.settings:
        maps = _setting_maps(explained[method], kw)
        res = metrics.evaluate_maps(job.net, images, maps, targets, compare,
                                    fractions=cfg.fractions, steps=cfg.steps,
                                    baseline=cfg.baseline, batch_size=job.chunk)
        if masks is not None:
            res.update(_region_scores(maps, masks, has_region))
        for j in range(n):
            records[j]["metrics"][name] = {
                key: bool(v[j]) if key == "pointing" else float(v[j]) for key, v in res.items()
                if key not in ("target", "compare_to")
                and (has_region[j] or key not in ("energy", "pointing"))}
    return records


def _batch_records(job: _Job, indices: range) -> list[dict]:
    """The records of one batch of the grid, unreadable items included, in index order."""
    batch, kept, recs = [], [], []
    for i in indices:
        split = _split_item(job.data[i], i)
        if isinstance(split, Unreadable):
            recs.append({"index": i, "skipped": split.reason, "path": split.path})
        else:
            batch.append(split)
            kept.append(i)
    if batch:
        recs += _evaluate_batch(job, batch, kept)
    return sorted(recs, key=lambda r: r["index"])


def _table(records: list[dict], settings, cfg: _Config) -> list[dict]:
    rows = []
    keys = [c[0] for c in _columns(cfg.fractions)] + ["deletion_ref"]
    for name, _, _ in settings:
        row: dict[str, Any] = {"setting": name}
        for key in keys:
            vals = [float(r["metrics"][name][key]) for r in records
                    if name in r["metrics"] and key in r["metrics"][name]]
            finite = [v for v in vals if not math.isnan(v)]
            if vals:
                row[key] = math.fsum(finite) / len(finite) if finite else float("nan")
                if len(finite) != len(vals):
                    row[f"{key}_nan"] = len(vals) - len(finite)
        row["n"] = sum(1 for r in records if name in r["metrics"])
        rows.append(row)
    return rows


def _image_count(data, limit) -> int:
    n = len(data)
    return n if limit is None else min(n, check_int(limit, "limit"))


def evaluate(model, target_layer=None, dataset=None, *,
             methods: Sequence[str] | None = None, finer: bool = True,
             gamma: float = 0.6, num_references: int = 3, reference_rule: str = "nearest_logit",
             aggregate: str = "mean", gammas: Sequence[float] = (),
             reference_ranks: Sequence[int] = (), aggregations: Sequence[str] = (),
             fractions: Sequence[float] = (0.05, 0.1), steps: int = 20, baseline=0.0,
             target: str = "label", batch_size: int = 16, out_dir=None, labels=None,
             size: int | None = None, mean: Sequence[float] | None = None,
             std: Sequence[float] | None = None, transform=None, chunk_size: int | None = None,
             limit: int | None = None, device=None, progress: bool = True, verbose: bool = True,
             after_batch: Callable[[int], None] | None = None) -> EvalResult:
    """Evaluate CAM methods with and without Finer on a data set; see the module docstring.

    model: an ``nn.Module``, an import string ``"package.module:factory"`` or a built-in model
    (``"cnn"``, ``"vit"``, ``"imagenet"``); target_layer: a module or dotted name (default: the
    model's own); dataset: a torch ``Dataset`` yielding ``(image, label)`` or
    ``(image, label, box_or_mask)`` (box ``(x0, y0, x1, y1)`` in pixels; a dict with ``"box"`` or
    ``"mask"`` also works), a directory read as an :class:`ImageFolder`, or an import string.
    ``gammas``, ``reference_ranks`` (1 = the most similar class) and ``aggregations`` add the
    ablation rows. ``out_dir`` makes the run resumable and receives the outputs; nothing is
    written before every argument is checked and the model has answered the first batch.

    ``after_batch(n)``, if given, is called after each batch is recorded with the number of
    images this process has recorded so far. Classes, preprocessing (``labels``, ``size``,
    ``mean``, ``std``, ``transform``) and cost (``methods=None``, ``chunk_size``): see the module
    docstring. The model is put in eval mode for the run and restored.

    Eight images of the bird world with the embedded CNN, Grad-CAM only, a 4-step deletion curve:

    >>> import tempfile
    >>> from finercam.world.datasets import SpotTheDifference
    >>> out = tempfile.mkdtemp()
    >>> res = evaluate("cnn", None, SpotTheDifference(split="test", n=8), methods=("gradcam",),
    ...                steps=4, batch_size=8, out_dir=out, progress=False, verbose=False)
    >>> [r["setting"] for r in res.rows], res.n_images, sorted(os.listdir(out))
    (['Grad-CAM', 'Grad-CAM + Finer'], 8, ['per_image.jsonl', 'table.csv', 'table.json', 'table.md'])
    >>> print(res.markdown().splitlines()[0])
    | Method | Del. ↓ | RD@0.05 ↑ | RD@0.1 ↑ | Drop@0.05 ↑ | Drop@0.1 ↑ | Loc. ↑ | Point. ↑ |
    >>> all(-1 <= r["rd@0.05"] <= 1 and 0 <= r["deletion"] <= 1 and 0 <= r["pointing"] <= 1
    ...     for r in res.rows)
    True
    """
    preprocessing = {"size": size, "mean": mean, "std": std, "transform": transform}
    found = _model_inputs(model, target_layer, preprocessing, labels)
    data = _resolve_dataset(dataset, found, preprocessing, labels)
    cfg = _Config(methods, finer, gamma, num_references, reference_rule, aggregate, gammas,
                  reference_ranks, aggregations, fractions, steps, baseline, target, batch_size,
                  _image_count(data, limit))
    if chunk_size is not None:
        chunk_size = check_int(chunk_size, "chunk_size")
    net = found.model
    with _joined_group(device) as group, _placed(net, device, group) as model_device:
        look = _first_look(net, model_device, found.layer, data, cfg)
        cfg = cfg if cfg.methods else replace(cfg, methods=_default_methods(cfg, look))
        cost = _run_cost(cfg, look, cfg.n_images)
        chunk = _chunk_size(net, look, chunk_size, cost)
        if verbose and group.rank == 0:
            _announce(cfg, look, chunk, methods is not None)
        job = _Job(net, model_device, _cams(net, found.layer, cfg, look, chunk), _settings(cfg),
                   cfg, data, chunk, cost if verbose else None)
        result = _run(job, out_dir, group, progress and group.rank == 0, after_batch)
    if verbose and group.rank == 0:
        _print_result(result)
    return result


def _cams(net, layer, cfg: _Config, look: _FirstLook, chunk: int) -> dict:
    from ..finer import FinerCAM

    candidates = max(cfg.reference_ranks) if cfg.reference_ranks else None
    # Score-CAM's chunk is a budget in MiB of masked inputs: `chunk` images of this size
    budget = chunk * look.example.numel() * max(look.example.element_size(), 4) / 2**20
    return {m: FinerCAM(net, layer, method=m, gamma=cfg.gamma, num_references=cfg.num_references,
                        reference_rule=cfg.reference_rule, aggregate=cfg.aggregate,
                        candidates=candidates, score_budget_mb=budget)
            for m in cfg.methods}


def _print_result(result: EvalResult) -> None:
    print(result.markdown())
    if result.skipped:
        print(f"{len(result.skipped)} unreadable image(s):")
        for s in result.skipped:
            print(f"  [{s['index']}] {s['path']}: {s['skipped']}")


def _run(job: _Job, out_dir, group: _Group, show: bool, after_batch) -> EvalResult:
    """Resume from ``out_dir``, evaluate this rank's share of the missing batches, merge."""
    cfg = job.cfg
    journal = None if out_dir is None else _Journal(Path(out_dir), group.rank, cfg.record())
    previous = journal.read() if journal is not None else []
    group.barrier()  # everyone has read the same state before anyone writes
    # ranks on machines without a shared out_dir see different files: agree on the union
    done = set(group.union(sorted({r["index"] for r in previous})))
    n_batches = (cfg.n_images + cfg.batch_size - 1) // cfg.batch_size
    todo = [b for b in range(n_batches) if not set(cfg.batch_indices(b)) <= done]
    mine = todo[group.rank::group.world]
    if job.cost is not None and group.rank == 0:
        images = sum(len(cfg.batch_indices(b)) for b in mine)
        print(replace(job.cost, images=images).describe(), file=sys.stderr)
    fresh = _evaluate_batches(job, mine, journal, show, after_batch)
    merged = _merge(journal, fresh, group)
    skipped = [r for r in merged if "skipped" in r]
    evaluated = [r for r in merged if "metrics" in r]
    result = EvalResult(_table(evaluated, job.settings, cfg), len(evaluated), skipped,
                        cfg.record(), None if out_dir is None else str(out_dir))
    if out_dir is not None and group.rank == 0:
        _write_outputs(result, Path(out_dir), cfg)
    return result


def _evaluate_batches(job: _Job, batches: list[int], journal, show: bool, after_batch) -> list:
    """Evaluate ``batches`` in order, recording each as soon as it is done."""
    total = sum(len(job.cfg.batch_indices(b)) for b in batches)
    fresh: list[dict] = []
    with progress_bar(show=show, total=total, unit="img", desc="evaluate") as bar:
        for b in batches:
            recs = _batch_records(job, job.cfg.batch_indices(b))
            fresh += recs
            if journal is not None:
                journal.append(recs)
            bar.update(len(recs))
            if after_batch is not None:
                after_batch(len(fresh))
    return fresh


def _merge(journal, fresh: list[dict], group: _Group) -> list[dict]:
    """Every record of the run, one per index, in index order."""
    if journal is not None:
        mine = journal.own_records()  # this rank's records of every attempt
        local = journal.all_records()
    else:
        mine, local = fresh, []
    if group.dist is not None:
        # merged from what every rank sends, so that out_dir need not be shared between machines
        records = local + [r for part in group.gather(mine) for r in part]
    else:
        records = local or mine
    by_index = {r["index"]: r for r in records}  # a batch computed twice gives equal records
    return [by_index[i] for i in sorted(by_index)]


def _write_outputs(result: EvalResult, out: Path, cfg: _Config) -> None:
    out.mkdir(parents=True, exist_ok=True)  # a run with nothing left to evaluate
    keys = [c[0] for c in _columns(cfg.fractions)] + ["deletion_ref"]
    keys = [k for k in keys if any(k in r for r in result.rows)]
    with open(out / "table.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["setting", *keys, "n"])
        for r in result.rows:
            w.writerow([r["setting"], *[repr(r[k]) if k in r else "" for k in keys], r["n"]])

    def strict(v):  # NaN (a mean over no defined value) is null in standard JSON
        return None if isinstance(v, float) and math.isnan(v) else v

    rows = [{k: strict(v) for k, v in r.items()} for r in result.rows]
    with open(out / "table.json", "w") as f:
        json.dump({"rows": rows, "n_images": result.n_images, "skipped": result.skipped,
                   "config": result.config}, f, indent=1, allow_nan=False)
    with open(out / "table.md", "w") as f:
        f.write(result.markdown() + "\n")


# --- the command line (finercam evaluate) ---------------------------------------------------------


def _float_or_word(value: str):
    try:
        return float(value)
    except ValueError:
        return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``finercam evaluate`` options to ``p``."""
    from .inputs import add_model_arguments, add_preprocessing_arguments

    add_model_arguments(p, required=True)
    p.add_argument("--data", required=True,
                   help="an ImageFolder-style directory (root/<class>/<image>, optional "
                        "boxes.csv) or an import string 'package.module:dataset_factory'")
    _set_help(p, "--labels",
              "the model's class names, one per line in output order: each class folder of "
              "--data is mapped to the class of its name. Without it a folder's label is its "
              "index among the sorted folder names (0 = the first alphabetically); if the "
              "labels agree with the model's top-5 for less than "
              f"{100 * MIN_LABEL_AGREEMENT:g} %% of the first batch the run stops (give "
              "--labels or --target predicted)")
    add_preprocessing_arguments(p)
    p.add_argument("--methods", nargs="+", default=None,
                   help="CAM methods (default: gradcam layercam, plus scorecam when its one "
                        "forward per channel of the layer costs at most "
                        f"{SCORECAM_COST_FACTOR}x the metrics' forwards for its rows: yes for "
                        "the embedded cnn (96 channels) and vit (64), no for imagenet (1,280))")
    p.add_argument("--no-finer", dest="finer", action="store_false",
                   help="only the base methods, no Finer rows")
    p.add_argument("--gamma", type=float, default=0.6)
    p.add_argument("--num-references", type=int, default=3)
    p.add_argument("--reference-rule", default="nearest_logit")
    p.add_argument("--aggregate", default="mean")
    p.add_argument("--gammas", type=float, nargs="*", default=[],
                   help="gamma sweep rows (Fig. 6b)")
    p.add_argument("--reference-ranks", type=int, nargs="*", default=[],
                   help="compare with only the r-th most similar class (Table 2)")
    p.add_argument("--aggregations", nargs="*", default=[],
                   help="aggregation rows: mean, max, mean_after_relu (Table 3)")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.05, 0.1])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--baseline", type=_float_or_word, default=0.0,
                   help='masked pixels become this number, "mean" or "blur"')
    p.add_argument("--target", choices=["label", "predicted"], default="label",
                   help="explain the data set's label (default) or the model's prediction")
    p.add_argument("--batch-size", type=int, default=16,
                   help="images per map computation and per resumable record (default 16)")
    p.add_argument("--chunk-size", type=int, default=None,
                   help="images per forward of masked images and Score-CAM inputs (default: the "
                        "fastest of a short calibration, printed at the start)")
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N images only")
    p.add_argument("--device", default=None)
    p.add_argument("--out", default=None,
                   help="output directory: per-image JSONL (resumable), table.md/.csv/.json; "
                        "created once the model has answered the first batch")
    p.add_argument("--no-progress", dest="progress", action="store_false")


def _set_help(p: argparse.ArgumentParser, option: str, text: str) -> None:
    """Give a shared option (added by apps.inputs) this command's own help."""
    for action in p._actions:
        if option in action.option_strings:
            action.help = text


def run(args: argparse.Namespace) -> int:
    """Run ``finercam evaluate`` with the options of :func:`add_arguments`; returns 0."""
    evaluate(args.model, args.layer, args.data, methods=args.methods, finer=args.finer,
             gamma=args.gamma, num_references=args.num_references,
             reference_rule=args.reference_rule, aggregate=args.aggregate, gammas=args.gammas,
             reference_ranks=args.reference_ranks, aggregations=args.aggregations,
             fractions=args.fractions, steps=args.steps, baseline=args.baseline,
             target=args.target, batch_size=args.batch_size, out_dir=args.out,
             labels=args.labels, size=args.size, mean=args.mean, std=args.std,
             transform=args.transform, chunk_size=args.chunk_size, limit=args.limit,
             device=args.device, progress=args.progress)
    return 0
