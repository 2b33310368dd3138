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

import contextlib
import csv
import glob
import itertools
import json
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .. import metrics
from .._checks import check_int
from .progress import progress_bar
from ..explanation import check_aggregate, check_gamma

__all__ = ["evaluate", "EvalResult", "ImageFolder", "Unreadable", "METHOD_NAMES", "load_object"]

METHOD_NAMES = {"gradcam": "Grad-CAM", "layercam": "Layer-CAM", "scorecam": "Score-CAM",
                "gradcam++": "Grad-CAM++", "xgradcam": "XGrad-CAM", "hirescam": "HiResCAM",
                "cam": "CAM"}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".jfif",
                    ".ppm", ".pgm")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
    """``root/<class>/<image>``, classes in sorted order, read with Pillow.

    Each item is ``(image, label)`` or, when ``root/boxes.csv`` exists (lines
    ``relative/path,x0,y0,x1,y1`` in the original pixels), ``(image, label, box)`` with the box
    scaled to the transformed image (which assumes the transform resizes, as the default does).
    The default transform resizes to ``image_size`` squared (bilinear), scales to [0, 1] and, with
    ``normalize`` (default), standardises with the ImageNet mean and std. A file that cannot be
    decoded gives an :class:`Unreadable` item instead of an exception: the runner counts and
    reports it.

    >>> import tempfile; from PIL import Image
    >>> root = Path(tempfile.mkdtemp())
    >>> for name in ("crow", "wren"):
    ...     (root / name).mkdir()
    ...     Image.new("RGB", (8, 6), (255, 255, 255)).save(root / name / "a.png")
    >>> (root / "wren" / "b.png").write_bytes(b"not a png")
    9
    >>> ds = ImageFolder(root, image_size=4, normalize=False)
    >>> ds.classes, len(ds)
    (['crow', 'wren'], 3)
    >>> x, label = ds[0]
    >>> tuple(x.shape), label, float(x.max())
    ((3, 4, 4), 0, 1.0)
    >>> type(ds[2]).__name__
    'Unreadable'
    """

    def __init__(self, root, transform: Callable | None = None, image_size: int = 224,
                 normalize: bool = True):
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"dataset directory {str(root)!r} does not exist")
        self.classes = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        if not self.classes:
            raise ValueError(f"dataset directory {str(root)!r} has no class subdirectories")
        self.samples = [(str(p), c) for c, name in enumerate(self.classes)
                        for p in sorted((self.root / name).iterdir())
                        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
        self.transform = transform
        self.image_size = int(image_size)
        self.normalize = bool(normalize)
        self.boxes: dict[str, tuple[float, ...]] = {}
        box_file = self.root / "boxes.csv"
        if box_file.is_file():
            with open(box_file, newline="") as f:
                for row in csv.reader(f):
                    if row and not row[0].startswith("#"):
                        self.boxes[os.path.normpath(row[0])] = tuple(float(v) for v in row[1:5])

    def __len__(self) -> int:
        return len(self.samples)

    def _default_transform(self, img) -> torch.Tensor:
        from PIL import Image

        img = img.resize((self.image_size, self.image_size), Image.BILINEAR)
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
        if self.normalize:
            x = (x - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
        return x.contiguous()

    def __getitem__(self, index: int):
        from PIL import Image, UnidentifiedImageError

        path, label = self.samples[index]
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")  # decodes fully: a truncated file fails here
                size = img.size
                x = (self.transform or self._default_transform)(img)
        except (OSError, ValueError, SyntaxError, UnidentifiedImageError,
                Image.DecompressionBombError) as e:
            return Unreadable(path, f"{type(e).__name__}: {e}")
        rel = os.path.normpath(os.path.relpath(path, self.root))
        if rel in self.boxes:
            sx, sy = x.shape[-1] / size[0], x.shape[-2] / size[1]
            x0, y0, x1, y1 = self.boxes[rel]
            box = (x0 * sx, y0 * sy, min(x1 * sx, x.shape[-1]), min(y1 * sy, x.shape[-2]))
            return x, label, torch.tensor(box, dtype=torch.float64)
        return x, label


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
        self.methods = list(self.methods)
        if not self.methods:
            raise ValueError("methods must name at least one CAM method")
        if self.target not in ("label", "predicted"):
            raise ValueError(f'target must be "label" or "predicted", got {self.target!r}')
        self.finer = bool(self.finer)
        self.fractions = [metrics._check_fraction(f, "fractions") for f in self.fractions]
        self.aggregations = [check_aggregate(a) for a in self.aggregations]
        if isinstance(self.baseline, (str, bool, np.bool_, int, float)):  # arrays: per batch
            metrics._baseline(self.baseline, np.zeros((1, 1, 1, 1), np.float32))
        self.steps = metrics._check_steps(self.steps)
        self.batch_size = metrics._check_batch_size(self.batch_size)
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


def load_object(spec: str):
    """``"package.module:attr"`` -> that attribute, called if callable and not a Module/Dataset.

    >>> load_object("collections:OrderedDict")()
    OrderedDict()
    """
    import importlib

    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(f"expected an import string 'package.module:factory', got {spec!r}")
    mod, _, attr = spec.partition(":")
    try:
        obj = importlib.import_module(mod)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot load {spec!r}: {e}") from None
    return obj


def _resolve_model(model):
    if isinstance(model, torch.nn.Module):
        return model, getattr(model, "default_target_layer", None)
    if isinstance(model, str):
        if ":" in model:
            obj = load_object(model)
            m = obj if isinstance(obj, torch.nn.Module) else obj()
        else:
            try:
                from ..world import models  # our own models, loaded offline
            except ImportError:
                raise ValueError(f"model {model!r} is not an import string 'package.module:factory' "
                                 "and finercam.world.models is not available") from None
            m = models.load(model)
        if not isinstance(m, torch.nn.Module):
            raise TypeError(f"model {model!r} did not give a torch.nn.Module, got {type(m).__name__}")
        return m, getattr(m, "default_target_layer", None)
    raise TypeError(f"model must be a torch.nn.Module or a string, got {type(model).__name__}")


def _resolve_dataset(dataset, transform, image_size, normalize):
    if isinstance(dataset, (str, os.PathLike)):
        if os.path.isdir(dataset):
            return ImageFolder(dataset, transform=transform, image_size=image_size,
                               normalize=normalize)
        obj = load_object(str(dataset))
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
    with torch.no_grad():
        logits = metrics._logits(job.net(images)).double().cpu().numpy()
    targets = labels if cfg.target == "label" else logits.argmax(1)
    compare = metrics.nearest_logit_class(logits, targets)
    has_region = np.array([r is not None for r in regions])
    masks = (np.stack([_region_mask(r, h, w) for r in regions if r is not None])
             if has_region.any() else None)
    records = [{"index": int(i), "label": int(labels[j]), "target": int(targets[j]),
                "compare_to": int(compare[j]), "metrics": {}} for j, i in enumerate(indices)]
    explained = {m: job.cams[m](images, targets=targets) for m in cfg.methods}
    for name, method, kw in job.settings:
        maps = _setting_maps(explained[method], kw)
        res = metrics.evaluate_maps(job.net, images, maps, targets, compare,
                                    fractions=cfg.fractions, steps=cfg.steps,
                                    baseline=cfg.baseline, batch_size=max(cfg.batch_size, 1) * 4)
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
             methods: Sequence[str] = ("gradcam", "layercam", "scorecam"), finer: bool = True,
             gamma: float = 0.6, num_references: int = 3, reference_rule: str = "nearest_logit",
             aggregate: str = "mean", gammas: Sequence[float] = (),
             reference_ranks: Sequence[int] = (), aggregations: Sequence[str] = (),
             fractions: Sequence[float] = (0.05, 0.1), steps: int = 20, baseline=0.0,
             target: str = "label", batch_size: int = 16, out_dir=None, transform=None,
             image_size: int = 224, normalize: bool | None = None,
             limit: int | None = None, device=None,
             progress: bool = True, verbose: bool = True,
             after_batch: Callable[[int], None] | None = None) -> EvalResult:
    """Evaluate CAM methods with and without Finer on a data set; see the module docstring.

    model: an ``nn.Module``, an import string ``"package.module:factory"`` or one of our models
    (``"cnn"``, ``"vit"``); target_layer: a module or dotted name (default: the model's
    ``default_target_layer``); dataset: a torch ``Dataset`` yielding ``(image, label)`` or
    ``(image, label, box_or_mask)`` (box ``(x0, y0, x1, y1)`` in pixels; a dict with ``"box"`` or
    ``"mask"`` also works), a directory read as an
    :class:`ImageFolder`, or an import string. ``gammas``, ``reference_ranks`` (1 = the most
    similar class) and ``aggregations`` add the ablation rows. ``out_dir`` makes the run
    resumable and receives the outputs. The model is put in eval mode for the run and restored.
    A folder's images are resized to ``image_size`` and, with ``normalize`` (default: True, but
    False for our own models, which normalise inside), standardised with the ImageNet statistics.
    ``after_batch(n)``, if given, is called after each batch is recorded with the number of
    images this process has recorded so far.

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
    net, default_layer = _resolve_model(model)
    layer = target_layer if target_layer is not None else default_layer
    if layer is None:
        raise ValueError("target_layer is required (the model has no default_target_layer)")
    if dataset is None:
        raise ValueError("dataset is required")
    if normalize is None:  # our own models normalise inside; others expect ImageNet statistics
        normalize = not (isinstance(model, str) and ":" not in model)
    data = _resolve_dataset(dataset, transform, image_size, bool(normalize))
    cfg = _Config(methods, finer, gamma, num_references, reference_rule, aggregate, gammas,
                  reference_ranks, aggregations, fractions, steps, baseline, target, batch_size,
                  _image_count(data, limit))
    with _joined_group(device) as group, _placed(net, device, group) as model_device:
        job = _Job(net, model_device, _cams(net, layer, cfg), _settings(cfg), cfg, data)
        result = _run(job, out_dir, group, progress and group.rank == 0, after_batch)
    if verbose and group.rank == 0:
        _print_result(result)
    return result


def _cams(net, layer, cfg: _Config) -> dict:
    from ..finer import FinerCAM

    candidates = max(cfg.reference_ranks) if cfg.reference_ranks else None
    return {m: FinerCAM(net, layer, method=m, gamma=cfg.gamma, num_references=cfg.num_references,
                        reference_rule=cfg.reference_rule, aggregate=cfg.aggregate,
                        candidates=candidates)
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
    fresh = _evaluate_batches(job, todo[group.rank::group.world], journal, show, after_batch)
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
