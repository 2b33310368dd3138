"""What a command needs before it can explain anything: the model, its input convention and its
class names.

One home for what ``finercam explain`` and ``finercam evaluate`` share:

* :func:`load_model` turns ``--model`` into a :class:`ModelInputs`: a built-in name
  (:data:`BUILTIN_MODELS`: ``cnn`` and ``vit``, the bird world's models, and ``imagenet``,
  EfficientNet-Lite0 with its ImageNet-1k weights, extra ``finercam[imagenet]``) or an import
  string ``package.module:factory`` (a factory called with no arguments, or an ``nn.Module``);
  with it come the model's own target layer (built-in, or ``model.default_target_layer``), the
  preprocessing (size, mean, std, transform) and the class names (built-in; else
  ``model.class_names``; else a Hugging Face-style ``model.config.id2label``).
* :func:`with_layer`: ``--layer NAME`` (given once or more), else ``--layer auto`` or, for a model
  without a layer of its own, the first of :func:`finercam.suggest_layers` at the size of the
  inputs the preprocessing gives (:func:`input_shape`), printed on stderr.
* :func:`add_model_arguments`, :func:`add_preprocessing_arguments` add ``--model/--layer/--labels``
  and ``--size/--mean/--std/--transform`` to a parser; :func:`inputs_from_args` reads them back.
* ``--labels FILE`` is read and checked against the model's number of classes by
  :mod:`finercam.apps.classes`, which also reads ``--target`` / ``--references`` given as names.
* :func:`warn_if_probabilities`: Finer-CAM's objective ``y_c - gamma * mean_t y_t`` is defined on
  logits; on softmax outputs the differences are squeezed into [-1, 1] and the maps change.

Bad input raises :class:`~finercam.apps.common.UsageError` with one line naming the option.

>>> inputs = load_model("cnn")
>>> inputs.layer, inputs.size, inputs.class_names[:2], len(inputs.class_names)
('block3', 96, ('rosy finch', 'black-winged finch'), 16)
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional, Sequence, TextIO, Tuple

import numpy as np

from ..evaluation import data
from ..evaluation.data import DEFAULT_SIZE, IMAGENET_MEAN, IMAGENET_STD, default_transform
from ..evaluation.model import warn_if_probabilities
from .classes import check_labels, class_names_of, num_classes_of, read_labels
from .common import UsageError

__all__ = [
    "AUTO_LAYER", "BUILTIN_MODELS", "DEFAULT_SIZE", "IMAGENET_MEAN", "IMAGENET_STD", "ModelInputs",
    "add_model_arguments", "add_preprocessing_arguments", "center_crop_box",
    "check_preprocessing_args", "default_transform", "import_object", "input_shape",
    "inputs_from_args", "load_model", "preprocessed_inputs", "warn_if_probabilities", "with_layer",
    "with_preprocessing",
]

#: Names ``--model`` accepts besides ``package.module:factory``.
BUILTIN_MODELS = ("cnn", "vit", "imagenet")
#: The ``--layer`` that asks for the first of :func:`finercam.suggest_layers` (as
#: ``target_layer="auto"`` does), unless the model has a submodule of that name.
AUTO_LAYER = "auto"


@dataclass(frozen=True)
class ModelInputs:
    """A classifier and what it takes to explain it.

    ``transform(pil_rgb) -> (3, H, W)`` float tensor; ``crop(width, height) -> (left, top,
    right, bottom)``: the part of a photo of that size the transform's input shows (the whole
    photo for a plain resize; the centre for ImageNet's centre crop; the whole photo is assumed
    for a user's ``--transform``), so a map can be laid back on the photo at its own size.
    ``class_names`` is None when neither the model nor ``--labels`` names its classes. ``layer``
    is None for a model without a layer of its own (an import string's without
    ``default_target_layer``, a Hugging Face folder's) until :func:`with_layer` chooses one.

    >>> from PIL import Image
    >>> net = load_model("cnn")
    >>> x = net.transform(Image.new("RGB", (120, 80)))
    >>> tuple(x.shape), net.crop(120, 80), net.class_names[8]
    ((3, 96, 96), (0, 0, 120, 80), 'blue jay')
    """

    model: Any
    layer: Optional[str | list[str]]   # a list: several target layers (explain --layer twice)
    transform: Callable
    crop: Callable[[int, int], Tuple[int, int, int, int]]
    size: int
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    class_names: Optional[Tuple[str, ...]]
    source: str


def import_object(spec: str, option: str):
    """``package.module:name`` (dots allowed after the colon) -> the object
    (:func:`finercam.evaluation.data.import_object`, its error a
    :class:`~finercam.apps.common.UsageError`).

    >>> import_object("os.path:join", "--model").__name__
    'join'
    >>> import_object("os.path", "--model")
    Traceback (most recent call last):
    ...
    finercam.apps.common.UsageError: --model must look like package.module:name, got 'os.path'
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


# --- built-in and user models --------------------------------------------------------------------


def _world_model(name: str) -> ModelInputs:
    from ..world import datasets, models

    model = models.load(name)
    # The bird world's models take [0, 1] pixels at their training size and normalise inside.
    size = int(getattr(model, "config", {}).get("image_size", 96))
    zero, one = (0.0,) * 3, (1.0,) * 3
    return ModelInputs(model, str(model.default_target_layer), default_transform(size, zero, one), _whole,
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
    (called with no arguments unless it is an ``nn.Module``), ``hf:DIR`` (a Hugging Face
    ``save_pretrained`` folder, :mod:`finercam.apps.hf`) or an ``nn.Module``.

    Import-string models get a 224 x 224 resize and the ImageNet mean/std (change them with
    :func:`with_preprocessing`) and the names they carry (:func:`class_names_of`).

    >>> load_model("vit").layer
    'blocks.3.norm1'
    >>> load_model("resnet")
    Traceback (most recent call last):
    ...
    finercam.apps.common.UsageError: --model must be one of cnn, vit, imagenet or package.module:factory, got 'resnet'
    """
    if isinstance(spec, str) and spec.startswith("hf:"):     # a local Hugging Face folder
        from .hf import load_hf_model

        return load_hf_model(spec)
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
    return vals


# --- command-line options ------------------------------------------------------------------------


def add_model_arguments(p: argparse.ArgumentParser, required: bool = False, many_layers: bool = False) -> None:
    """``--model``, ``--layer``, ``--labels``; ``many_layers``: ``--layer`` may be given more than
    once (``finercam explain``: the view offers each layer and their fusion).

    >>> p = argparse.ArgumentParser(); add_model_arguments(p)
    >>> p.parse_args(["--model", "imagenet", "--labels", "l.txt"]).model
    'imagenet'
    """
    p.add_argument("--model", required=required, default=None, metavar="NAME|PKG.MOD:FACTORY|hf:DIR",
                   help=f"a built-in model ({', '.join(BUILTIN_MODELS)}), a factory returning "
                        "a classifier (an nn.Module returning logits) or hf:DIR, a Hugging Face "
                        "save_pretrained folder (extra finercam[hf])")
    p.add_argument("--layer", metavar="NAME|auto", default=None, action="append" if many_layers else "store",
                   help="dotted name of the target layer, or auto: the first layer `finercam layers` "
                        "suggests at the input size (default: the built-in model's own layer, else auto)"
                        + ("; give it twice for two layers" if many_layers else ""))
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
    finercam.apps.common.UsageError: --size must be an integer in [8, 4096], got 4
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


def preprocessed_inputs(args, default_model: str = "cnn") -> ModelInputs:
    """The :class:`ModelInputs` of parsed ``--model/--labels`` and
    ``--size/--mean/--std/--transform``, its layer still the model's own (None where it has
    none); ``--labels`` is checked against the model's number of classes here, before any model
    call. :func:`inputs_from_args` adds ``--layer``.
    """
    check_preprocessing_args(args)
    labels = read_labels(args.labels) if getattr(args, "labels", None) else None
    inputs = load_model(args.model or default_model)
    if labels is not None:
        known = len(inputs.class_names) if inputs.class_names else num_classes_of(inputs.model)
        check_labels(labels, known)
        inputs = replace(inputs, class_names=labels)
    return with_preprocessing(inputs, args.size, args.mean, args.std, args.transform)


def inputs_from_args(args, default_model: str = "cnn") -> ModelInputs:
    """The :class:`ModelInputs` of parsed ``--model/--layer/--labels`` and
    ``--size/--mean/--std/--transform``: :func:`preprocessed_inputs`, then :func:`with_layer`.

    >>> args = argparse.Namespace(model=None, layer=None, labels=None, size=None, mean=None,
    ...                           std=None, transform=None)
    >>> inputs_from_args(args).source
    'cnn'
    """
    return with_layer(preprocessed_inputs(args, default_model), args.layer)


def input_shape(inputs: ModelInputs) -> Tuple[int, ...]:
    """``(C, H, W)`` of the model's inputs: the preprocessing's output for a blank photo of the
    model's size (a ``--transform`` may crop or resize to anything), else ``(H, W)`` = its size.

    >>> input_shape(with_preprocessing(load_model("cnn"), size=64))
    (3, 64, 64)
    """
    from PIL import Image

    x = inputs.transform(Image.new("RGB", (inputs.size, inputs.size)))
    shape = tuple(int(v) for v in getattr(x, "shape", ()))
    return shape[-3:] if len(shape) in (3, 4) else (inputs.size, inputs.size)


def with_layer(inputs: ModelInputs, given: str | Sequence[str] | None = None,
               shape: Sequence[int] | None = None, stream: TextIO | None = None) -> ModelInputs:
    """``inputs`` with the target layer of ``--layer`` (``given``: a name, or the names of a
    repeated ``--layer``). :data:`AUTO_LAYER` (``auto``), and no ``--layer`` for a model without
    a layer of its own, is the first of :func:`finercam.suggest_layers` at ``shape`` ((C, H, W)
    or (H, W) of the inputs the command feeds; default: :func:`input_shape`), said on ``stream``
    (stderr) so that the person running the command sees it. A model none of whose layers gives
    a feature map or patch tokens at that size is a :class:`~finercam.apps.common.UsageError`.

    >>> import io
    >>> said = io.StringIO()
    >>> with_layer(load_model("cnn"), "auto", stream=said).layer
    'block3'
    >>> print(said.getvalue().strip())
    --layer auto: block3, the first layer suggested for cnn at 96 x 96 (grid 12 x 12, 96 channels; `finercam layers --model cnn` lists the others)
    """
    names = [] if not given else [given] if isinstance(given, str) else list(given)
    if not names and inputs.layer:
        return inputs
    names = names or [AUTO_LAYER]
    if AUTO_LAYER in names and AUTO_LAYER not in dict(inputs.model.named_modules()):
        suggested = _suggested_layer(inputs, input_shape(inputs) if shape is None else tuple(shape),
                                     sys.stderr if stream is None else stream)
        names = [suggested if n == AUTO_LAYER else n for n in names]
    return replace(inputs, layer=names[0] if len(names) == 1 else names)


def _suggested_layer(inputs: ModelInputs, shape: Tuple[int, ...], stream: TextIO) -> str:
    from ..suggest import suggest_layers

    try:
        first = suggest_layers(inputs.model, shape)[0]
    except ValueError as exc:
        raise UsageError(f"--layer auto: {exc} (name a layer with --layer NAME)") from None
    h, w = shape[-2:]
    print(f"--layer auto: {first.name}, the first layer suggested for {inputs.source} at {h} x {w} "
          f"(grid {first.grid[0]} x {first.grid[1]}, {first.channels} channels; "
          f"`finercam layers --model {inputs.source}` lists the others)", file=stream)
    return first.name
