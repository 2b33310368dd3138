"""``finercam probe``: the paper's linear probe on a frozen backbone, trained on a data set.

``finercam probe --data cub:ROOT --backbone imagenet --out probe.pt`` reads the train split of the
data set (``--train-split``, default ``train``), extracts the pooled features of ``--layer``
(cached under ``--cache``; an interrupted run resumes), fits a linear head with the paper's
optimiser (Adam, lr 3e-4, 100 epochs; Table 4), prints the accuracy on ``--eval-split`` (default
``test``) and writes ``--out`` (the probe) and ``--out`` + ``.json`` (the record). The file loads
as one module with ``--model probe:FILE`` in ``explain``, ``evaluate``, ``layers`` and ``app``.

Backbones (``--backbone``): ``imagenet`` (EfficientNet-Lite0, extra ``finercam[imagenet]``;
its centre crop at 224 and mean/std 0.5; default layer ``_bn1``), ``cnn`` / ``vit`` (the bird
world's, [0, 1] pixels at 96), ``PKG.MOD:FACTORY`` (a factory returning an ``nn.Module``; a 224
resize and ImageNet's mean/std unless ``--size/--mean/--std``; ``--layer`` required unless it
has ``default_target_layer``), or ``hf:DIR`` (a Hugging Face model folder; needs the loader of
``--model hf:DIR``).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

from torch import nn

__all__ = ["add_arguments", "run", "resolve_backbone", "probe_inputs", "Backbone"]


@dataclass(frozen=True)
class Backbone:
    """A backbone and its input convention: ``mode`` ``"resize"`` or ``"center_crop"``."""

    module: nn.Module
    layer: Optional[str]
    size: int
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    mode: str


def resolve_backbone(spec: str) -> Backbone:
    """``--backbone`` -> the module (eval mode) and its preprocessing (see the module doc)."""
    from .common import UsageError
    from .inputs import DEFAULT_SIZE, IMAGENET_MEAN, IMAGENET_STD, import_object

    if spec == "imagenet":
        from ..world.models import imagenet

        try:
            net = imagenet.load_imagenet()
        except ImportError as exc:
            raise UsageError(f"--backbone imagenet: {exc}") from None
        return Backbone(net.model.eval(), net.target_layers[0], net.size, tuple(net.mean), tuple(net.std),  # type: ignore[arg-type]
                        "center_crop")
    if spec in ("cnn", "vit"):
        from ..world import models

        model = models.load(spec)
        size = int(getattr(model, "config", {}).get("image_size", 96))
        return Backbone(model, model.default_target_layer, size, (0.0,) * 3, (1.0,) * 3, "resize")  # type: ignore[arg-type]
    if spec.startswith("hf:"):
        import importlib

        try:  # the loader of `--model hf:DIR` (finercam/apps/hf.py, from the arch branch)
            loader = importlib.import_module("finercam.apps.hf").load_hf_model
        except (ImportError, AttributeError):
            raise UsageError("--backbone hf:DIR needs the Hugging Face loader of --model hf:DIR, "
                             "which this installation lacks") from None
        from .inputs import with_layer

        found = with_layer(loader(spec))  # a folder has no layer of its own: the first suggested
        return Backbone(found.model, found.layer, found.size, tuple(found.mean), tuple(found.std), "resize")  # type: ignore[arg-type]
    obj = import_object(spec, "--backbone")
    made = obj if isinstance(obj, nn.Module) else obj() if callable(obj) else None
    if not isinstance(made, nn.Module):
        raise UsageError(f"--backbone: {spec!r} gives {type(made).__name__}, not an nn.Module")
    return Backbone(made.eval(), getattr(made, "default_target_layer", None), DEFAULT_SIZE,
                    IMAGENET_MEAN, IMAGENET_STD, "resize")


def probe_inputs(path: str):
    """``--model probe:FILE`` -> a :class:`~finercam.apps.inputs.ModelInputs`: the probe as one
    module (backbone + head), its target layer, preprocessing and class names."""
    from ..probe import ProbeModel, load_checkpoint, preprocessing_view
    from .common import UsageError
    from .inputs import ModelInputs

    try:
        ckpt = load_checkpoint(path)
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(f"--model probe:{path}: {e}") from None
    backbone = resolve_backbone(ckpt["backbone"])
    model = ProbeModel.from_checkpoint(ckpt, backbone.module)
    pre = ckpt["preprocessing"]
    view = preprocessing_view(pre)
    names = tuple(ckpt["class_names"]) or None
    return ModelInputs(model, model.default_target_layer, view.transform, view.crop, pre["size"],
                       tuple(pre["mean"]), tuple(pre["std"]), names, f"probe:{path}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``finercam probe`` options.

    >>> p = argparse.ArgumentParser(); add_arguments(p)
    >>> a = p.parse_args(["--data", "cub:/d", "--backbone", "cnn"])
    >>> a.epochs, a.lr, a.pooling, a.train_split, a.eval_split
    (100, 0.0003, 'auto', 'train', 'test')
    """
    from ..probe import PAPER_OPTIMISER, POOLINGS

    p.add_argument("--data", required=True, metavar="NAME:ROOT",
                   help="a data set: cub:ROOT, cars:ROOT, aircraft:ROOT, birds525:ROOT or fishvista:ROOT")
    p.add_argument("--backbone", default="imagenet", metavar="imagenet|cnn|vit|PKG:FACTORY|hf:DIR",
                   help="the frozen backbone (default imagenet)")
    p.add_argument("--layer", default=None, help="the feature layer (default: the backbone's target layer)")
    p.add_argument("--pooling", default="auto", choices=POOLINGS,
                   help="auto: the mean of a map, token 0 of a sequence; avgmax: mean and max concatenated; "
                        "grid2: the means of a 2 x 2 grid of a map")
    p.add_argument("--train-split", default="train")
    p.add_argument("--eval-split", default="test")
    p.add_argument("--epochs", type=int, default=PAPER_OPTIMISER["epochs"])
    p.add_argument("--lr", type=float, default=PAPER_OPTIMISER["lr"])
    p.add_argument("--batch-size", type=int, default=PAPER_OPTIMISER["batch_size"], help="features per Adam step")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=None, help="input side (default: the backbone's)")
    crop = p.add_mutually_exclusive_group()
    crop.add_argument("--center-crop", action="store_true", help="resize the shorter side to size/0.875 and crop the centre")
    crop.add_argument("--resize", action="store_true",
                      help="resize the whole image to size x size, no crop (the default for all but imagenet)")
    p.add_argument("--cache", default="out/probe_features", help="feature cache folder (resumable)")
    p.add_argument("--out", default="probe.pt", help="the probe file (and FILE.json, the record)")
    p.add_argument("--device", default=None)
    p.add_argument("--no-progress", dest="progress", action="store_false")


def run(args: argparse.Namespace) -> int:
    """Train, print the accuracy, write the probe and its record; returns 0."""
    from ..evaluation.datasets import DataFormatError, open_dataset, parse_spec
    from ..probe import ProbeModel, preprocessing_view, save_probe, train_probe
    from .common import UsageError

    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if not args.lr > 0:
        raise UsageError(f"--lr must be positive, got {args.lr}")
    try:
        name, root, _ = parse_spec(args.data)  # the splits come from --train-split / --eval-split
    except ValueError as e:
        raise UsageError(f"--data: {e}") from None
    backbone = resolve_backbone(args.backbone)
    layer = args.layer or backbone.layer
    if layer is None:
        raise UsageError(f"--layer is required with --backbone {args.backbone}")
    mode = "center_crop" if args.center_crop else "resize" if getattr(args, "resize", False) else backbone.mode
    pre = {"mode": mode, "size": args.size or backbone.size,
           "mean": list(backbone.mean), "std": list(backbone.std)}
    view = preprocessing_view(pre)
    try:
        train = open_dataset(f"{name}:{root}:{args.train_split}", view=view)
        test = open_dataset(f"{name}:{root}:{args.eval_split}", view=view)
    except DataFormatError as e:
        raise UsageError(f"--data: {e}") from None
    if train.class_names != test.class_names:
        raise UsageError(f"--data: the {args.train_split} and {args.eval_split} splits name different classes")
    model = ProbeModel(backbone.module, layer, args.pooling, nn.Linear(1, train.num_classes), train.class_names)
    if args.device:
        model.to(args.device)
    identity = {"backbone": args.backbone, "layer": layer, "pooling": args.pooling, "data": f"{name}:{root}",
                "preprocessing": pre, "train_split": args.train_split, "eval_split": args.eval_split}
    print(f"probe: {args.backbone} layer {layer} ({args.pooling} pooling) on {name} "
          f"{args.train_split} ({len(train)} images, {train.num_classes} classes); "
          f"Adam lr {args.lr:g}, {args.epochs} epochs, batch {args.batch_size}")
    record = train_probe(model, train, test, identity=identity, cache=Path(args.cache) if args.cache else None,
                         lr=args.lr, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                         device=args.device, progress=args.progress)
    record.update({"data": args.data, "backbone": args.backbone, "layer": layer, "pooling": args.pooling,
                   "eval_split": args.eval_split})
    model.cpu()
    out = save_probe(args.out, model, backbone=args.backbone, preprocessing=pre, record=record)
    Path(str(out) + ".json").write_text(json.dumps(record, indent=2))
    print(f"accuracy on {name} {args.eval_split}: {100 * record['accuracy']:.1f} % of {record['eval_images']} "
          f"images (train {100 * record['train_accuracy']:.1f} % of {record['train_images']})")
    print(f"wrote {out} and {out}.json; explain it with --model probe:{out}")
    return 0

