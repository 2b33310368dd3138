"""``finercam explain``: baseline and Finer-CAM overlays for image files, for any model.

    finercam explain photo.jpg other.png --model mypkg.models:build --layer layer4 --out maps/

Images of any size and mode (JPEG, PNG, .jfif, grey, palette, RGBA, EXIF-rotated) are read with
Pillow. ``--model`` names a factory ``package.module:function`` called with no arguments that
returns a classifier (an ``nn.Module`` mapping (N, 3, H, W) to logits). ``--transform`` names a
function taking a PIL RGB image and returning a (3, H, W) or (1, 3, H, W) tensor; without it, the
image is resized to 224 x 224 and normalised with the ImageNet mean and standard deviation, the
input convention of torchvision-style classifiers. Without ``--model`` the embedded CNN of
``finercam.world.models`` explains the image with its own input size and layer.

For every image, ``<stem>_baseline.png``, ``<stem>_finer.png`` (overlays at the image's own size)
and ``<stem>_panel.png`` (side by side, with class names) are written to ``--out``. Bad arguments
and unreadable images give one line on stderr and exit status 2, before anything is written.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from ..methods import METHODS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class UsageError(ValueError):
    """A bad argument or input: reported as one line, exit status 2.

    >>> isinstance(UsageError("--gamma must be a number in [0, 10]"), ValueError)
    True
    """


def one_line_errors(p: argparse.ArgumentParser) -> None:
    """argparse prints its usage before an error; a bad argument here gets one line, exit 2.

    >>> p = argparse.ArgumentParser(prog="finercam explain")
    >>> one_line_errors(p)
    >>> p.error("--gamma: bad value")
    Traceback (most recent call last):
    ...
    SystemExit: 2
    """

    def error(message: str):
        print(f"{p.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)

    p.error = error  # type: ignore[method-assign]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``finercam explain`` options to ``p`` (a bad one is reported as one line, exit 2).

    >>> p = argparse.ArgumentParser(prog="finercam explain")
    >>> add_arguments(p)
    >>> args = p.parse_args(["bird.png", "--gamma", "0.8"])
    >>> args.images, args.gamma, args.model
    (['bird.png'], 0.8, None)
    """
    one_line_errors(p)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (any format Pillow reads)")
    p.add_argument("--model", metavar="PKG.MOD:FACTORY",
                   help="factory returning the classifier (default: the embedded CNN)")
    p.add_argument("--layer", metavar="NAME",
                   help="dotted name of the target layer (required with --model)")
    p.add_argument("--method", default="gradcam", help=f"base CAM method, one of {', '.join(METHODS)}")
    p.add_argument("--gamma", type=float, default=0.6, help="comparison strength (default 0.6)")
    p.add_argument("--references", type=int, default=3, metavar="T",
                   help="number of most similar classes to compare with (default 3)")
    p.add_argument("--transform", metavar="PKG.MOD:FN",
                   help="PIL image -> input tensor (default: resize 224, ImageNet normalisation)")
    p.add_argument("--out", default="finercam-explain", metavar="DIR", help="output folder")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity (default 0.5)")


def read_image(path: str | os.PathLike):
    """A file as a PIL RGB image, EXIF orientation applied; UsageError naming the file otherwise.

    Transparent pixels are put on white.

    >>> import tempfile; from PIL import Image
    >>> path = Path(tempfile.mkdtemp()) / "dot.png"
    >>> Image.new("RGBA", (3, 2), (255, 0, 0, 0)).save(path)
    >>> im = read_image(path)
    >>> im.mode, im.size, im.getpixel((0, 0))
    ('RGB', (3, 2), (255, 255, 255))
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"cannot read image {str(path)!r}: no such file")
    try:
        with Image.open(p) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                # Transparent pixels are shown on white, not on whatever colour they happen to hold.
                rgba = im.convert("RGBA")
                flat = Image.new("RGB", rgba.size, (255, 255, 255))
                flat.paste(rgba, mask=rgba.getchannel("A"))
                return flat
            return im.convert("RGB")
    except UnidentifiedImageError:
        raise UsageError(f"cannot read image {str(path)!r}: not an image format Pillow knows") from None
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt files
        raise UsageError(f"cannot read image {str(path)!r}: {exc}") from None


def import_object(spec: str, option: str):
    """``package.module:name`` (dots allowed after the colon) -> the object.

    >>> import_object("os.path:join", "--model") is os.path.join
    True
    >>> import_object("os.path", "--model")
    Traceback (most recent call last):
    ...
    finercam.apps.explain.UsageError: --model must look like package.module:name, got 'os.path'
    """
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise UsageError(f"{option} must look like package.module:name, got {spec!r}")
    mod_name, attr = spec.split(":")
    if not mod_name or not attr:
        raise UsageError(f"{option} must look like package.module:name, got {spec!r}")
    try:
        obj = importlib.import_module(mod_name)
    except ImportError as exc:
        raise UsageError(f"{option}: cannot import {mod_name!r}: {exc}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UsageError(f"{option}: {mod_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def default_transform(size: int = 224, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> Callable:
    """Resize (bilinear, aspect not kept, so the map lies on the whole photo) and normalise.

    The transform maps a PIL RGB image to a ``(3, size, size)`` float tensor
    :math:`(x / 255 - \\mu_c) / \\sigma_c` per channel :math:`c`.

    >>> from PIL import Image
    >>> t = default_transform(4, mean=(0.5,) * 3, std=(0.5,) * 3)
    >>> x = t(Image.new("RGB", (6, 3), (255, 0, 255)))
    >>> tuple(x.shape), x[:, 0, 0].tolist()
    ((3, 4, 4), [1.0, -1.0, 1.0])
    """
    import torch
    from PIL import Image

    m = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    s = torch.tensor(std, dtype=torch.float32)[:, None, None]

    def transform(image):
        im = image.resize((size, size), Image.BILINEAR)
        x = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return (x - m) / s

    return transform


def _as_batch(x, option: str):
    import torch

    if not isinstance(x, torch.Tensor):
        raise UsageError(f"{option} must return a torch tensor, got {type(x).__name__}")
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[0] != 1:
        raise UsageError(f"{option} must return a (C, H, W) or (1, C, H, W) tensor, "
                         f"got shape {tuple(x.shape)}")
    return x.float()


def _check(args) -> None:
    if args.method not in METHODS:
        raise UsageError(f"--method must be one of {', '.join(METHODS)}, got {args.method!r}")
    if not 0.0 <= args.gamma <= 10.0 or not np.isfinite(args.gamma):
        raise UsageError(f"--gamma must be a number in [0, 10], got {args.gamma}")
    if args.references < 1:
        raise UsageError(f"--references must be >= 1, got {args.references}")
    if not 0.0 <= args.alpha <= 1.0:
        raise UsageError(f"--alpha must be in [0, 1], got {args.alpha}")
    for option, spec in (("--model", args.model), ("--transform", args.transform)):
        if spec is not None and (spec.count(":") != 1 or not all(spec.split(":"))):
            raise UsageError(f"{option} must look like package.module:name, got {spec!r}")
    if args.model and not args.layer:
        raise UsageError("--layer is required with --model (the dotted name of the target layer)")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out exists and is not a folder: {args.out}")


def _load(args):
    """(model, layer, transform, class names, whether the overlay goes on the transformed input)."""
    from torch import nn

    if args.model:
        factory = import_object(args.model, "--model")
        if not callable(factory):
            raise UsageError(f"--model: {args.model!r} is not callable")
        model = factory()
        if not isinstance(model, nn.Module):
            raise UsageError(f"--model: {args.model!r} returned {type(model).__name__}, not an nn.Module")
        names = getattr(model, "class_names", None)
        transform, on_input = default_transform(), False
        layer = args.layer
    else:
        from ..world import datasets, models

        model = models.load("cnn")
        names = list(datasets.CLASS_NAMES)
        # Our models take [0, 1] pixels at their training size and normalise inside.
        size = int(getattr(model, "config", {}).get("image_size", 96))
        transform, on_input = default_transform(size, mean=(0.0,) * 3, std=(1.0,) * 3), False
        layer = args.layer or model.default_target_layer
    if args.transform:
        transform = import_object(args.transform, "--transform")
        if not callable(transform):
            raise UsageError(f"--transform: {args.transform!r} is not callable")
        on_input = True  # a crop or pad would misplace a map drawn on the original photo
    return model, layer, transform, names, on_input


def _name(names, k: int) -> str:
    if names is not None and 0 <= k < len(names):
        return f"{names[k]} ({k})"
    return f"class {k}"


def run(args) -> int:
    """Write the overlays of ``args.images`` (options of :func:`add_arguments`); returns 0.

    Every option and every image is checked before any work; a bad one raises
    :class:`UsageError`, which :func:`main` and the ``finercam`` CLI report as one line.

    >>> p = argparse.ArgumentParser(prog="finercam explain")
    >>> add_arguments(p)
    >>> run(p.parse_args(["no-such-file.png"]))
    Traceback (most recent call last):
    ...
    finercam.apps.explain.UsageError: cannot read image 'no-such-file.png': no such file
    """
    _check(args)
    photos = [read_image(p) for p in args.images]  # fail before any work if one is unreadable
    model, layer, transform, names, on_input = _load(args)

    from .. import kernels
    from . import viz
    from ..finer import FinerCAM
    from .report import save_png

    try:
        cam = FinerCAM(model, layer, method=args.method, gamma=args.gamma,
                       num_references=args.references)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    for path, photo in zip(args.images, photos):
        x = _as_batch(transform(photo), "--transform" if args.transform else "the transform")
        try:
            exp = cam(x)
        except (TypeError, ValueError) as exc:
            raise UsageError(str(exc)) from None
        target = int(exp.targets[0])
        refs = [int(r) for r in np.asarray(exp.references[0]).ravel()]
        canvas = viz.to_image(x[0]) if on_input else np.asarray(photo)
        # From the layer's grid straight to the canvas: one bilinear resize, not two.
        size = canvas.shape[:2]
        finer = kernels.postprocess(exp.raw_maps[:1], size)[0]
        base = kernels.postprocess(exp.baseline().raw_maps[:1], size)[0]
        stem = Path(path).stem or "image"
        unique, i = stem, 1
        while unique in used:
            i += 1
            unique = f"{stem}-{i}"
        used.add(unique)
        b_path, f_path, p_path = (out / f"{unique}_{k}.png" for k in ("baseline", "finer", "panel"))
        save_png(viz.overlay(canvas, base, alpha=args.alpha), b_path)
        save_png(viz.overlay(canvas, finer, alpha=args.alpha), f_path)
        fig = viz.compare(canvas, {f"{args.method}": base,
                                   f"Finer (\u03b3={args.gamma:g}, T={len(refs)})": finer},
                          alpha=args.alpha,
                          title=f"{_name(names, target)} vs " + ", ".join(_name(names, r) for r in refs))
        save_png(fig, p_path)
        print(f"{path}: {_name(names, target)}; compared with "
              f"{', '.join(_name(names, r) for r in refs)}")
        for p in (b_path, f_path, p_path):
            print(f"  wrote {p}")
    return 0


def main(argv=None) -> int:
    """Stand-alone entry (the ``finercam`` CLI dispatches to :func:`run`); returns the exit status.

    A :class:`UsageError` is printed as one line on stderr and gives exit status 2:

    >>> main(["no-such-file.png"])
    2
    """
    p = argparse.ArgumentParser(prog="finercam explain", description=__doc__.split("\n")[0])
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        return run(args)
    except UsageError as exc:
        print(f"finercam explain: error: {exc}", file=sys.stderr)
        return 2
