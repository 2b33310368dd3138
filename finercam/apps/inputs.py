"""What a command needs before it can explain anything: the model, its input convention, its
class names, and classes given by name.

One home for what ``finercam explain`` and ``finercam evaluate`` share:

* :func:`load_model` turns ``--model`` into a :class:`ModelInputs`: a built-in name
  (:data:`BUILTIN_MODELS`: ``cnn`` and ``vit``, the bird world's models, and ``imagenet``,
  EfficientNet-Lite0 with its ImageNet-1k weights, extra ``finercam[imagenet]``) or an import
  string ``package.module:factory`` (a factory called with no arguments, or an ``nn.Module``);
  with it come the default target layer, the preprocessing (size, mean, std, transform) and the
  class names (built-in; else ``model.class_names``; else a Hugging Face-style
  ``model.config.id2label``).
* :func:`add_model_arguments`, :func:`add_preprocessing_arguments` add ``--model/--layer/--labels``
  and ``--size/--mean/--std/--transform`` to a parser; :func:`inputs_from_args` reads them back.
* :func:`read_labels` reads ``--labels FILE`` (one name per line) and :func:`check_labels` refuses
  a count that differs from the model's classes, before any model call.
* :func:`resolve_class` / :func:`resolve_classes` read ``--target`` / ``--references`` given as
  names or ids.
* :func:`warn_if_probabilities`: Finer-CAM's objective ``y_c - gamma * mean_t y_t`` is defined on
  logits; on softmax outputs the differences are squeezed into [-1, 1] and the maps change.

Bad input raises :class:`UsageError` (a ``ValueError``) with one line naming the option.

>>> inputs = load_model("cnn")
>>> inputs.layer, inputs.size, inputs.class_names[:2], len(inputs.class_names)
('block3', 96, ('rosy finch', 'black-winged finch'), 16)
>>> resolve_classes("blue jay,3", inputs.class_names, 16, "--references")
[8, 3]
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Tuple

import numpy as np

from ..evaluation import data
from ..evaluation.data import DEFAULT_SIZE, IMAGENET_MEAN, IMAGENET_STD, default_transform
from ..evaluation.model import warn_if_probabilities

__all__ = [
    "BUILTIN_MODELS", "DEFAULT_SIZE", "IMAGENET_MEAN", "IMAGENET_STD", "ModelInputs", "UsageError",
    "add_model_arguments", "add_preprocessing_arguments", "center_crop_box", "check_labels",
    "check_preprocessing_args", "class_names_of", "default_transform", "import_object",
    "inputs_from_args", "load_model", "num_classes_of", "read_labels", "resolve_class",
    "resolve_classes", "warn_if_probabilities", "with_preprocessing",
]

#: Names ``--model`` accepts besides ``package.module:factory``.
BUILTIN_MODELS = ("cnn", "vit", "imagenet")


class UsageError(ValueError):
    """A bad argument or input: reported as one line, exit status 2.

    >>> isinstance(UsageError("--gamma must be a number in [0, 10]"), ValueError)
    True
    """


@dataclass(frozen=True)
class ModelInputs:
    """A classifier and what it takes to explain it.

    ``transform(pil_rgb) -> (3, H, W)`` float tensor; ``crop(width, height) -> (left, top,
    right, bottom)``: the part of a photo of that size the transform's input shows (the whole
    photo for a plain resize; the centre for ImageNet's centre crop; the whole photo is assumed
    for a user's ``--transform``), so a map can be laid back on the photo at its own size.
    ``class_names`` is None when neither the model nor ``--labels`` names its classes.

    >>> from PIL import Image
    >>> net = load_model("cnn")
    >>> x = net.transform(Image.new("RGB", (120, 80)))
    >>> tuple(x.shape), net.crop(120, 80), net.class_names[8]
    ((3, 96, 96), (0, 0, 120, 80), 'blue jay')
    """

    model: Any
    layer: Optional[str]
    transform: Callable
    crop: Callable[[int, int], Tuple[int, int, int, int]]
    size: int
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    class_names: Optional[Tuple[str, ...]]
    source: str


def import_object(spec: str, option: str):
    """``package.module:name`` (dots allowed after the colon) -> the object
    (:func:`finercam.evaluation.data.import_object`, its error a :class:`UsageError`).

    >>> import_object("os.path:join", "--model").__name__
    'join'
    >>> import_object("os.path", "--model")
    Traceback (most recent call last):
    ...
    finercam.apps.inputs.UsageError: --model must look like package.module:name, got 'os.path'
    """
    try:
        return data.import_object(spec, option)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _whole(width: int, height: int) -> Tuple[int, int, int, int]:
    return 0, 0, int(width), int(height)


def center_crop_box(size: int) -> Callable[[int, int], Tuple[int, int, int, int]]:
    """The photo region :func:`finercam.world.models.imagenet.center_crop_transform` keeps
    (:func:`~finercam.world.models.imagenet.center_crop_geometry`), in the photo's pixels.

    >>> center_crop_box(224)(512, 256)
    (144, 16, 368, 240)
    """
    from ..world.models.imagenet import center_crop_geometry

    def crop(width: int, height: int) -> Tuple[int, int, int, int]:
        new_w, new_h, left, top = center_crop_geometry(width, height, size)
        # Back to the photo's pixels: divide by the scale of each axis.
        sx, sy = new_w / width, new_h / height
        return (int(round(left / sx)), int(round(top / sy)),
                int(round((left + size) / sx)), int(round((top + size) / sy)))

    return crop


def class_names_of(model) -> Optional[Tuple[str, ...]]:
    """The class names a model carries: ``model.class_names``, or a Hugging Face-style
    ``model.config.id2label`` (keys ids, as ints or strings); None if it carries none.

    >>> from types import SimpleNamespace
    >>> class_names_of(SimpleNamespace(config=SimpleNamespace(id2label={"1": "dog", "0": "cat"})))
    ('cat', 'dog')
    """
    names = getattr(model, "class_names", None)
    if names is not None:
        return tuple(str(n) for n in names)
    id2label = getattr(getattr(model, "config", None), "id2label", None)
    if isinstance(id2label, dict) and id2label:
        try:
            by_id = {int(k): str(v) for k, v in id2label.items()}
        except (TypeError, ValueError):
            return None
        if sorted(by_id) == list(range(len(by_id))):
            return tuple(by_id[i] for i in range(len(by_id)))
    return None


def num_classes_of(model) -> Optional[int]:
    """The number of outputs, known without calling the model: its class names, a Hugging Face
    ``config.num_labels``, else the ``out_features`` of its last ``nn.Linear``; None if unknown.

    >>> from torch import nn
    >>> num_classes_of(nn.Sequential(nn.Flatten(), nn.Linear(12, 7)))
    7
    """
    names = class_names_of(model)
    if names is not None:
        return len(names)
    num_labels = getattr(getattr(model, "config", None), "num_labels", None)
    if isinstance(num_labels, int) and num_labels > 0:
        return num_labels
    from torch import nn

    linears = [m for m in model.modules() if isinstance(m, nn.Linear)] if isinstance(model, nn.Module) else []
    return int(linears[-1].out_features) if linears else None


def read_labels(path) -> Tuple[str, ...]:
    """``--labels FILE``: one class name per line, in output order (UTF-8; surrounding blanks
    stripped; a final empty line ignored; an empty line inside is an error).

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "labels.txt"
    >>> _ = p.write_text("cat\\n dog \\n", encoding="utf-8")
    >>> read_labels(p)
    ('cat', 'dog')
    """
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--labels: no such file {str(path)!r}")
    try:
        lines = p.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--labels: cannot read {str(path)!r}: {exc}") from None
    while lines and not lines[-1].strip():
        lines.pop()
    names = tuple(line.strip() for line in lines)
    if not names:
        raise UsageError(f"--labels: {str(path)!r} holds no class names")
    blank = [i + 1 for i, n in enumerate(names) if not n]
    if blank:
        raise UsageError(f"--labels: {str(path)!r} has an empty line (line {blank[0]})")
    return names


def check_labels(names: Sequence[str], num_classes: Optional[int], source: str = "--labels") -> None:
    """A UsageError when ``len(names)`` differs from the model's number of classes.

    >>> check_labels(("cat", "dog"), 3)
    Traceback (most recent call last):
    ...
    finercam.apps.inputs.UsageError: --labels holds 2 names but the model has 3 classes
    """
    if num_classes is not None and len(names) != num_classes:
        raise UsageError(f"{source} holds {len(names)} names but the model has {num_classes} classes")


def resolve_class(value, class_names: Optional[Sequence[str]], num_classes: Optional[int],
                  option: str) -> int:
    """A class given as an id (``"17"``) or a name (``"jay"``; case-insensitive; a unique prefix
    or substring also does) -> its id.

    >>> names = ("tench", "goldfish", "great white shark", "tiger shark")
    >>> resolve_class("GOLDFISH", names, 4, "--target"), resolve_class("3", names, 4, "--target")
    (1, 3)
    >>> resolve_class("shark", names, 4, "--target")
    Traceback (most recent call last):
    ...
    finercam.apps.inputs.UsageError: --target: 'shark' matches several classes: great white shark (2), tiger shark (3)
    """
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        k = int(text)
        if k < 0 or (num_classes is not None and k >= num_classes):
            raise UsageError(f"{option}: class id {k} is out of range [0, {num_classes})")
        return k
    if not class_names:
        raise UsageError(f"{option}: {text!r} is not a class id, and the model has no class names "
                         "(give --labels FILE)")
    low = [n.lower() for n in class_names]
    for match in (lambda n: n == text.lower(), lambda n: n.startswith(text.lower()),
                  lambda n: text.lower() in n):
        hits = [i for i, n in enumerate(low) if match(n)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            shown = ", ".join(f"{class_names[i]} ({i})" for i in hits[:6])
            more = f" and {len(hits) - 6} more" if len(hits) > 6 else ""
            raise UsageError(f"{option}: {text!r} matches several classes: {shown}{more}")
    raise UsageError(f"{option}: no class is named {text!r}")


def resolve_classes(value: str, class_names, num_classes, option: str) -> list:
    """A comma-separated list of names or ids (:func:`resolve_class` each) -> distinct ids.

    >>> resolve_classes("goldfish, 0", ("tench", "goldfish"), 2, "--references")
    [1, 0]
    """
    parts = [s for s in str(value).split(",") if s.strip()]
    if not parts:
        raise UsageError(f"{option}: give at least one class name or id")
    ids = [resolve_class(s, class_names, num_classes, option) for s in parts]
    if len(set(ids)) != len(ids):
        raise UsageError(f"{option}: a class is named twice in {value!r}")
    return ids


# --- built-in and user models --------------------------------------------------------------------


def _world_model(name: str) -> ModelInputs:
    from ..world import datasets, models

    model = models.load(name)
    # The bird world's models take [0, 1] pixels at their training size and normalise inside.
    size = int(getattr(model, "config", {}).get("image_size", 96))
    zero, one = (0.0,) * 3, (1.0,) * 3
    return ModelInputs(model, model.default_target_layer, default_transform(size, zero, one), _whole,
                       size, zero, one, tuple(datasets.CLASS_NAMES), name)


def _imagenet_model() -> ModelInputs:
    from ..world.models import imagenet

    try:
        net = imagenet.load_imagenet()
    except ImportError as exc:
        raise UsageError(f"--model imagenet: {exc}") from None
    return ModelInputs(net.model, net.target_layers[0], net.preprocess, center_crop_box(net.size),
                       net.size, tuple(net.mean), tuple(net.std), tuple(net.class_names), "imagenet")


def _user_model(spec) -> ModelInputs:
    from torch import nn

    if isinstance(spec, nn.Module):
        model, source = spec, type(spec).__name__
    else:
        obj = import_object(spec, "--model")
        if isinstance(obj, nn.Module):
            model = obj
        elif callable(obj):
            model = obj()
        else:
            raise UsageError(f"--model: {spec!r} is not callable (nor an nn.Module)")
        if not isinstance(model, nn.Module):
            raise UsageError(f"--model: {spec!r} returned {type(model).__name__}, not an nn.Module")
        source = spec
    return ModelInputs(model, getattr(model, "default_target_layer", None), default_transform(),
                       _whole, DEFAULT_SIZE, IMAGENET_MEAN, IMAGENET_STD, class_names_of(model), source)


def load_model(spec) -> ModelInputs:
    """``--model``: a name of :data:`BUILTIN_MODELS`, an import string ``package.module:factory``
    (called with no arguments unless it is an ``nn.Module``) or an ``nn.Module``.

    Import-string models get a 224 x 224 resize and the ImageNet mean/std (change them with
    :func:`with_preprocessing`) and the names they carry (:func:`class_names_of`).

    >>> load_model("vit").layer
    'blocks.3.norm1'
    >>> load_model("resnet")
    Traceback (most recent call last):
    ...
    finercam.apps.inputs.UsageError: --model must be one of cnn, vit, imagenet or package.module:factory, got 'resnet'
    """
    if isinstance(spec, str) and spec.startswith("probe:"):  # a file written by `finercam probe`
        from .probe_command import probe_inputs

        return probe_inputs(spec[len("probe:"):])
    if isinstance(spec, str) and ":" not in spec:
        if spec in ("cnn", "vit"):
            return _world_model(spec)
        if spec == "imagenet":
            return _imagenet_model()
        raise UsageError(f"--model must be one of {', '.join(BUILTIN_MODELS)} or "
                         f"package.module:factory, got {spec!r}")
    return _user_model(spec)


def with_preprocessing(inputs: ModelInputs, size=None, mean=None, std=None,
                       transform=None) -> ModelInputs:
    """``inputs`` with ``--size/--mean/--std`` (a resize of the whole photo and that
    normalisation) or ``--transform`` (an import string or a callable, PIL RGB -> tensor).

    >>> inputs = with_preprocessing(load_model("cnn"), size=64, mean=(0.5,) * 3, std=(0.25,) * 3)
    >>> inputs.size, inputs.mean, tuple(inputs.transform(__import__("PIL.Image").Image.new("RGB", (9, 9))).shape)
    (64, (0.5, 0.5, 0.5), (3, 64, 64))
    """
    if transform is not None:
        if size is not None or mean is not None or std is not None:
            raise UsageError("--transform does its own resizing and normalisation: "
                             "give it alone, without --size/--mean/--std")
        fn = import_object(transform, "--transform") if isinstance(transform, str) else transform
        if not callable(fn):
            raise UsageError(f"--transform: {transform!r} is not callable")
        return replace(inputs, transform=fn, crop=_whole)
    if size is None and mean is None and std is None:
        return inputs
    size = inputs.size if size is None else _check_size(size)
    mean = inputs.mean if mean is None else _check_triple(mean, "--mean", positive=False)
    std = inputs.std if std is None else _check_triple(std, "--std", positive=True)
    return replace(inputs, transform=default_transform(size, mean, std), crop=_whole,
                   size=size, mean=mean, std=std)


def _check_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 8 <= size <= 4096:
        raise UsageError(f"--size must be an integer in [8, 4096], got {size!r}")
    return int(size)


def _check_triple(values, option: str, positive: bool) -> Tuple[float, float, float]:
    vals = tuple(float(v) for v in values)
    if len(vals) == 1:
        vals = vals * 3
    if len(vals) != 3 or not all(np.isfinite(vals)) or (positive and min(vals) <= 0):
        need = "three positive numbers" if positive else "three finite numbers"
        raise UsageError(f"{option} must be {need} (or one for all channels), got {list(values)}")
    return vals  # type: ignore[return-value]


# --- command-line options ------------------------------------------------------------------------


def add_model_arguments(p: argparse.ArgumentParser, required: bool = False) -> None:
    """``--model``, ``--layer``, ``--labels``.

    >>> p = argparse.ArgumentParser(); add_model_arguments(p)
    >>> p.parse_args(["--model", "imagenet", "--labels", "l.txt"]).model
    'imagenet'
    """
    p.add_argument("--model", required=required, default=None, metavar="NAME|PKG.MOD:FACTORY",
                   help=f"a built-in model ({', '.join(BUILTIN_MODELS)}) or a factory returning "
                        "a classifier (an nn.Module returning logits)")
    p.add_argument("--layer", metavar="NAME", default=None,
                   help="dotted name of the target layer (default: the built-in model's own)")
    p.add_argument("--labels", metavar="FILE", default=None,
                   help="class names, one per line in output order (default: the model's own)")


def _numbers(text: str) -> list:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def add_preprocessing_arguments(p: argparse.ArgumentParser) -> None:
    """``--size``, ``--mean``, ``--std``, ``--transform``.

    >>> p = argparse.ArgumentParser(); add_preprocessing_arguments(p)
    >>> a = p.parse_args(["--size", "160", "--mean", "0.5,0.5,0.5"])
    >>> a.size, a.mean, a.std, a.transform
    (160, [0.5, 0.5, 0.5], None, None)
    """
    p.add_argument("--size", type=int, default=None, metavar="PIXELS",
                   help="resize the photo to PIXELS x PIXELS (default: the model's size, 224)")
    # One comma-separated word, not nargs="+": a list option before the images would swallow them.
    p.add_argument("--mean", type=_numbers, default=None, metavar="R,G,B",
                   help="per-channel mean of [0, 1] pixels, e.g. 0.5,0.5,0.5 (default: the model's; ImageNet's)")
    p.add_argument("--std", type=_numbers, default=None, metavar="R,G,B",
                   help="per-channel std of [0, 1] pixels (default: the model's; ImageNet's)")
    p.add_argument("--transform", metavar="PKG.MOD:FN", default=None,
                   help="PIL RGB image -> input tensor (replaces --size/--mean/--std)")


def check_preprocessing_args(args) -> None:
    """The checks of :func:`with_preprocessing` that need no model, for failing early.

    >>> check_preprocessing_args(argparse.Namespace(size=4, mean=None, std=None, transform=None))
    Traceback (most recent call last):
    ...
    finercam.apps.inputs.UsageError: --size must be an integer in [8, 4096], got 4
    """
    if args.transform is not None:
        if args.size is not None or args.mean is not None or args.std is not None:
            raise UsageError("--transform does its own resizing and normalisation: "
                             "give it alone, without --size/--mean/--std")
        if args.transform.count(":") != 1 or not all(args.transform.split(":")):
            raise UsageError(f"--transform must look like package.module:name, got {args.transform!r}")
    if args.size is not None:
        _check_size(args.size)
    if args.mean is not None:
        _check_triple(args.mean, "--mean", positive=False)
    if args.std is not None:
        _check_triple(args.std, "--std", positive=True)


def inputs_from_args(args, default_model: str = "cnn") -> ModelInputs:
    """The :class:`ModelInputs` of parsed ``--model/--layer/--labels`` and
    ``--size/--mean/--std/--transform``; ``--labels`` is checked against the model's number of
    classes here, before any model call.

    >>> args = argparse.Namespace(model=None, layer=None, labels=None, size=None, mean=None,
    ...                           std=None, transform=None)
    >>> inputs_from_args(args).source
    'cnn'
    """
    check_preprocessing_args(args)
    labels = read_labels(args.labels) if getattr(args, "labels", None) else None
    inputs = load_model(args.model or default_model)
    if args.layer:
        inputs = replace(inputs, layer=args.layer)
    if not inputs.layer:
        raise UsageError(f"--layer is required with --model {inputs.source} "
                         "(the dotted name of the target layer)")
    if labels is not None:
        known = len(inputs.class_names) if inputs.class_names else num_classes_of(inputs.model)
        check_labels(labels, known)
        inputs = replace(inputs, class_names=labels)
    return with_preprocessing(inputs, args.size, args.mean, args.std, args.transform)
