"""``finercam explain``: the base map and Finer-CAM's comparisons for image files, with names.

    finercam explain --model imagenet photo.jpg other.png --out maps/
    finercam explain --model mypkg.models:build --layer layer4 --labels classes.txt photo.jpg

``--model`` is a built-in name (``cnn``, ``vit``: the bird world; ``imagenet``: EfficientNet-Lite0,
extra ``finercam[imagenet]``) or ``package.module:factory``; see :mod:`finercam.apps.inputs` for
``--labels``, ``--size/--mean/--std/--transform`` and classes given by name.

Per image, ONE model call (:class:`finercam.FinerCAM`) and then only recombinations
(:meth:`finercam.Explanation.recombine`) give, in ``<stem>_panel.png``:

* row 1: the photo, the base map (gamma = 0), the paper's default Finer map (``--gamma``, the
  ``--num-references`` nearest classes averaged, Eq. 8) and the Finer map against each reference
  alone at ``--reference-gamma`` (default 1.0), which shows what tells the class from that one;
* row 2: a gamma strip (0, 0.3, 0.6, 1.0, 1.5) against the nearest reference (paper Fig. 8).

Under each map: its Pearson correlation ``r`` with the base map and the share of the base map's
energy that moved, ``moved = 1/2 sum_ij |p_ij - q_ij|`` with ``p, q`` the two maps divided by
their sums (0: same distribution, 1: disjoint support), both on the layer's grid before resizing.
Maps are laid back on the photo at its own size (a centre crop on the part it shows, outlined).
``<stem>_baseline.png`` and ``<stem>_finer.png`` hold the two overlays alone and ``index.html``
every panel with the top-5 predictions and the references.

Bad arguments give one line on stderr and exit status 2 before anything is written; an image that
cannot be read gives one line naming it, the others are still explained, and the exit status is 1
(2 when no image could be read).
No file or folder is written before the model has produced its first logits.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..methods import METHODS
from .inputs import (UsageError, add_model_arguments, add_preprocessing_arguments,
                     check_preprocessing_args, inputs_from_args, resolve_class, resolve_classes,
                     warn_if_probabilities)

__all__ = ["GAMMA_STRIP", "add_arguments", "map_change", "name_of", "one_line_errors", "read_image", "run", "main"]

#: The comparison strengths of the strip against the nearest reference (paper Fig. 8).
GAMMA_STRIP = (0.0, 0.3, 0.6, 1.0, 1.5)
TOP_K = 5


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
    >>> args = p.parse_args(["bird.png", "--model", "imagenet", "--references", "jay,17"])
    >>> args.images, args.gamma, args.model, args.references, args.num_references
    (['bird.png'], 0.6, 'imagenet', 'jay,17', 3)
    """
    one_line_errors(p)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (any format Pillow reads)")
    add_model_arguments(p)
    add_preprocessing_arguments(p)
    p.add_argument("--method", default="gradcam", help=f"base CAM method, one of {', '.join(METHODS)}")
    p.add_argument("--gamma", type=float, default=0.6, help="comparison strength (default 0.6)")
    p.add_argument("--target", metavar="NAME|ID", default=None,
                   help="the class to explain (default: the predicted one)")
    p.add_argument("--references", metavar="NAMES|IDS", default=None,
                   help="comma-separated classes to compare with (default: the nearest logits)")
    p.add_argument("--num-references", type=int, default=3, metavar="T",
                   help="how many nearest classes to compare with (default 3)")
    p.add_argument("--reference-gamma", type=float, default=1.0,
                   help="gamma of the maps against each reference alone (default 1.0)")
    p.add_argument("--out", default="finercam-explain", metavar="DIR", help="output folder")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity (default 0.5)")
    p.add_argument("--html", action="store_true",
                   help="also write STEM.html per image: the interactive view (gamma slider, reference "
                        "toggles; recombined in the browser, no model call)")


def _to_8bit(im):
    """16-bit and float greys (modes I;16*, I, F) scaled to 8 bits by their type's range; a plain
    ``convert`` would clip everything above 255 to white."""
    from PIL import Image

    a = np.asarray(im, dtype=np.float64)
    top = 65535.0 if im.mode.startswith("I") and a.max(initial=0) <= 65535 else max(a.max(initial=0), 1e-12)
    if im.mode == "F" and a.max(initial=0) <= 1.0:
        top = 1.0
    return Image.fromarray(np.round(np.clip(a / top, 0, 1) * 255).astype(np.uint8), "L")


def read_image(path: str | os.PathLike):
    """A file as a PIL RGB image, EXIF orientation applied; UsageError naming the file otherwise.

    Transparent pixels are put on white; 16-bit images are scaled to 8 bits; an animation gives
    its first frame; CMYK, grey and palette images are converted.

    >>> import tempfile; from PIL import Image
    >>> path = Path(tempfile.mkdtemp()) / "dot.png"
    >>> Image.new("RGBA", (3, 2), (255, 0, 0, 0)).save(path)
    >>> im = read_image(path)
    >>> im.mode, im.size, im.getpixel((0, 0))
    ('RGB', (3, 2), (255, 255, 255))
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    p = Path(path)
    if p.is_dir():
        raise UsageError(f"cannot read image {str(path)!r}: a folder, not an image file")
    if not p.is_file():
        raise UsageError(f"cannot read image {str(path)!r}: no such file")
    if p.stat().st_size == 0:
        raise UsageError(f"cannot read image {str(path)!r}: the file is empty (0 bytes)")
    try:
        with Image.open(p) as im:
            im.seek(0)  # an animation: its first frame
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I", "F") or im.mode.startswith("I;16"):
                im = _to_8bit(im)
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                # Transparent pixels are shown on white, not on whatever colour they happen to hold.
                rgba = im.convert("RGBA")
                flat = Image.new("RGB", rgba.size, (255, 255, 255))
                flat.paste(rgba, mask=rgba.getchannel("A"))
                return flat
            return im.convert("RGB")
    except UnidentifiedImageError:
        raise UsageError(f"cannot read image {str(path)!r}: not an image format Pillow knows") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # truncated or corrupt files
        raise UsageError(f"cannot read image {str(path)!r}: {exc}") from None


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
    for option, g in (("--gamma", args.gamma), ("--reference-gamma", args.reference_gamma)):
        if not np.isfinite(g) or not 0.0 <= g <= 10.0:
            raise UsageError(f"{option} must be a number in [0, 10], got {g}")
    if args.num_references < 1:
        raise UsageError(f"--num-references must be >= 1, got {args.num_references}")
    if not 0.0 <= args.alpha <= 1.0:
        raise UsageError(f"--alpha must be in [0, 1], got {args.alpha}")
    named_file = bool(args.model) and args.model.startswith("probe:")  # `finercam probe`'s file
    if args.model and ":" in args.model and not named_file and (args.model.count(":") != 1 or not all(args.model.split(":"))):
        raise UsageError(f"--model must look like package.module:name, got {args.model!r}")
    if args.model and ":" in args.model and not named_file and not args.layer:
        raise UsageError("--layer is required with --model package.module:factory "
                         "(the dotted name of the target layer)")
    check_preprocessing_args(args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out exists and is not a folder: {args.out}")


def name_of(names, k: int) -> str:
    """``"jay (17)"``, or ``"class 17"`` without names.

    >>> name_of(("cat", "dog"), 1), name_of(None, 1)
    ('dog (1)', 'class 1')
    """
    if names is not None and 0 <= k < len(names):
        return f"{names[k]} ({k})"
    return f"class {k}"


def _short(names, k: int) -> str:
    return names[k] if names is not None and 0 <= k < len(names) else f"class {k}"


def map_change(base: np.ndarray, other: np.ndarray) -> tuple[float, float]:
    """How much a map differs from the base map: (Pearson r, share of the energy that moved).

    ``moved = 1/2 sum |p - q|`` with ``p = base / sum(base)`` and ``q = other / sum(other)``: the
    fraction of the map's mass that sits elsewhere (0: same shape, 1: disjoint). NaN where a map
    is empty (all zero) or constant.

    >>> a = np.array([[1.0, 0.0], [0.0, 0.0]]); b = np.array([[0.5, 0.5], [0.0, 0.0]])
    >>> [round(v, 3) for v in map_change(a, b)]
    [0.577, 0.5]
    """
    from ..diagnose import map_correlation

    p = np.asarray(base, np.float64).ravel()
    q = np.asarray(other, np.float64).ravel()
    moved = 0.5 * float(np.abs(p / p.sum() - q / q.sum()).sum()) if p.sum() > 0 and q.sum() > 0 else float("nan")
    return float(map_correlation(p[None, None], q[None, None])[0]), moved


@dataclass
class _Maps:
    """One image's maps (photo-sized, NaN outside the region the model saw), with their
    raw grids and titles."""

    photo: object
    region: tuple
    exp: object
    refs: list
    cells: list          # rows of dicts for viz.map_panel
    numbers: list        # (label, r, moved) per map
    base: np.ndarray
    finer: np.ndarray


def _lay_on_photo(raw: np.ndarray, region, photo_size) -> np.ndarray:
    """A (h, w) raw map resized to ``region`` of the photo and min-maxed; NaN outside."""
    from .. import kernels

    left, top, right, bottom = region
    W, H = photo_size
    full = np.full((H, W), np.nan, np.float32)
    full[top:bottom, left:right] = kernels.postprocess(raw[None], (bottom - top, right - left))[0]
    return full


def _cell(exp, base_raw, title, region, photo_size, numbers, label):
    raw = exp.raw_maps[0]
    r, moved = map_change(base_raw, raw)
    numbers.append((label, r, moved))
    caption = "" if raw.max() <= 0 else (f"r = {r:.2f}, moved {moved:.0%}" if np.isfinite(r) else f"moved {moved:.0%}")
    return {"map": _lay_on_photo(raw, region, photo_size), "title": title, "caption": caption}


def _maps(exp, photo, region, names, args) -> _Maps:
    """The panel's cells from one Explanation: only recombinations, no model call."""
    size = photo.size
    refs = [int(r) for r in exp.references[0]]
    base = exp.baseline()
    base_raw = base.raw_maps[0]
    numbers: list = []
    method = {"gradcam": "Grad-CAM", "layercam": "Layer-CAM", "scorecam": "Score-CAM"}.get(args.method, args.method)
    row1 = [{"map": None, "title": f"photo: {_short(names, int(exp.targets[0]))}"},
            _cell(base, base_raw, f"{method} (base)", region, size, numbers, "base"),
            _cell(exp, base_raw, f"Finer \u03b3={args.gamma:g}, "
                  + (f"{len(refs)} refs averaged" if len(refs) > 1 else "1 ref"), region, size,
                  numbers, f"Finer \u03b3={args.gamma:g}, "
                  + (f"mean of {len(refs)}" if len(refs) > 1 else "1 reference"))]
    for r in refs:
        one = exp.recombine(gamma=args.reference_gamma, references=[[r]])
        row1.append(_cell(one, base_raw, f"vs {_short(names, r)} (\u03b3={args.reference_gamma:g})",
                          region, size, numbers, f"vs {name_of(names, r)}, \u03b3={args.reference_gamma:g}"))
    which = "first reference given" if args.references else "nearest reference"
    row2 = [{"text": f"\u03b3 strip against\n{_short(names, refs[0])}\n({which})"}]
    for g in GAMMA_STRIP:
        one = exp.recombine(gamma=g, references=[[refs[0]]])
        row2.append(_cell(one, base_raw, f"\u03b3 = {g:g}", region, size, numbers,
                          f"vs {name_of(names, refs[0])}, \u03b3={g:g}"))
    return _Maps(photo, region, exp, refs, [row1, row2], numbers,
                 row1[1]["map"], row1[2]["map"])


def _top(exp, names, k: int = TOP_K):
    y = exp.logits[0].astype(np.float64)
    p = np.exp(y - y.max())
    p /= p.sum()
    order = np.argsort(-p)[:k]
    return [(int(c), _short(names, int(c)), float(p[c]), float(y[c])) for c in order]


def _figure(maps: _Maps, label: str, names, args):
    from . import viz

    target = int(maps.exp.targets[0])
    top = _top(maps.exp, names, 1)[0]
    refs = ", ".join(_short(names, r) for r in maps.refs)
    title = f"{label}: {_short(names, target)} ({top[2]:.0%}) vs {refs}"
    region = None if maps.region == (0, 0, *maps.photo.size) else maps.region
    return viz.map_panel(maps.photo, maps.cells, suptitle=title, alpha=args.alpha, region=region)


def _classes(args, inputs):
    """--target and --references as ids (None where not given)."""
    from .inputs import num_classes_of

    names = inputs.class_names
    C = len(names) if names else num_classes_of(inputs.model)
    target = None if args.target is None else resolve_class(args.target, names, C, "--target")
    refs = None if args.references is None else resolve_classes(args.references, names, C, "--references")
    if target is not None and refs is not None and target in refs:
        raise UsageError(f"--references holds the target {name_of(names, target)}")
    return target, refs


def _console(say, path, maps: _Maps, names) -> None:
    """Prediction, references and the numbers of the default and per-reference maps (the gamma
    strip's are in index.html)."""
    top = _top(maps.exp, names)
    lines = [f"{path}: {name_of(names, top[0][0])} {top[0][2]:.1%}; top-5: "
             + ", ".join(f"{n} {p:.1%}" for _, n, p, _ in top),
             "  references: " + ", ".join(name_of(names, r) for r in maps.refs)]
    lines += [f"  {label}: " + (f"r = {r:.3f} with the base map, {moved:.1%} of its energy moved"
                                 if np.isfinite(moved) else "empty map (the ReLU removed every value)")
              for label, r, moved in maps.numbers[1:2 + len(maps.refs)]]
    say("\n".join(lines))


def _diagnosis(model, exp, names) -> str:
    """Why the default Finer map moved as much as it did (:meth:`Explanation.diagnose`), with the
    model's last ``nn.Linear`` of C outputs as the classifier when it has one (weight cosine)."""
    from torch import nn

    num_classes = exp.logits.shape[1]
    heads = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == num_classes]
    return exp.diagnose(heads[-1] if heads else None).summary(0, names)


def _report_image(report, path, stem, maps: _Maps, names, fig) -> None:
    report.heading(f"{Path(path).name}")
    top = _top(maps.exp, names)
    report.table([[i + 1, n, c, p, y] for i, (c, n, p, y) in enumerate(top)],
                 header=["rank", "class", "id", "probability", "logit"],
                 caption="Top-5 predictions")
    report.text("Compared with: " + ", ".join(name_of(names, r) for r in maps.refs)
                + " (the references, nearest logit first).")
    report.figure(fig, f"{stem}_panel",
                  caption="Row 1: photo, base map, Finer at the paper's default, Finer against each "
                          "reference alone. Row 2: gamma strip against the nearest reference. Under "
                          "each map: r = correlation with the base map, moved = share of its energy "
                          "that moved.")
    report.table([[label, r, moved] for label, r, moved in maps.numbers],
                 header=["map", "r with base", "energy moved"], caption="How much Finer changed the map")


def _unique(stem: str, used: set) -> str:
    unique, i = stem or "image", 1
    while unique in used:
        i += 1
        unique = f"{stem}-{i}"
    used.add(unique)
    return unique


def _setup(args):
    """Everything checked and loaded before the first image: (inputs, cam, target, refs)."""
    _check(args)
    inputs = inputs_from_args(args)
    target, refs = _classes(args, inputs)
    from ..finer import FinerCAM

    try:
        cam = FinerCAM(inputs.model, inputs.layer, method=args.method, gamma=args.gamma,
                       num_references=len(refs) if refs else args.num_references)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    return inputs, cam, target, refs


def _explain_one(cam, inputs, photo, target, refs, args):
    x = _as_batch(inputs.transform(photo), "--transform" if args.transform else "the transform")
    try:
        return cam(x, targets=None if target is None else [target],
                   references=None if refs is None else [refs])
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None


def _view_image(inputs, photo, args) -> np.ndarray:
    """What the network saw, for the interactive view (whose maps are at the input's size): the
    transformed photo with its normalisation undone, (3, H, W) in [0, 1]. A custom ``--transform``
    has no known normalisation: each channel is min-max scaled instead."""
    x = np.asarray(inputs.transform(photo), dtype=np.float32)
    if args.transform:
        lo = x.min(axis=(1, 2), keepdims=True)
        return (x - lo) / np.maximum(x.max(axis=(1, 2), keepdims=True) - lo, 1e-12)
    mean = np.asarray(inputs.mean, np.float32).reshape(-1, 1, 1)
    std = np.asarray(inputs.std, np.float32).reshape(-1, 1, 1)
    return np.clip(x * std + mean, 0.0, 1.0)


def _write_view(report, inputs, photo, exp, stem: str, names, args) -> None:
    """``--html``: the interactive view of this image beside the report, linked from it."""
    from ..explorer import write_html

    write_html(exp, [_view_image(inputs, photo, args)], Path(args.out) / f"{stem}.html",
               class_names=names, title=f"finercam: {stem}")
    report.link("Interactive view (gamma slider, reference toggles)", f"{stem}.html")


def _plan_text(args, seconds_first: float) -> str:
    """What the run does per image and how long the rest will take, from the first image's time."""
    from ..progress import format_seconds

    def duration(seconds: float) -> str:
        return f"{1e3 * seconds:.0f} ms" if seconds < 1 else format_seconds(seconds)

    work = "one model call per image: a forward, and a backward per stored class"
    if args.method == "scorecam":
        work += ", then one forward per channel of the layer (Score-CAM)"
    rest = len(args.images) - 1
    return (f"finercam explain: {len(args.images)} images, {work}; every map of the panel is recombined "
            f"from it. The first took {duration(seconds_first)}: about "
            f"{duration(rest * seconds_first)} for the other {rest}.")


def _say(bar, text: str, stream) -> None:
    """Print above a progress bar (tqdm's write keeps the bar on its own line)."""
    if hasattr(bar, "write"):
        bar.write(text, file=stream)
    else:
        print(text, file=stream)


def run(args) -> int:
    """Explain ``args.images`` (options of :func:`add_arguments`); returns 0, or 1 if an image
    could not be read (reported on stderr, one line each; the others are still explained), or 2
    if none could (nothing is written).

    A bad option raises :class:`UsageError` before any work, which :func:`main` and the
    ``finercam`` CLI report as one line (exit status 2).

    >>> p = argparse.ArgumentParser(prog="finercam explain")
    >>> add_arguments(p)
    >>> run(p.parse_args(["img.png", "--gamma", "-1"]))
    Traceback (most recent call last):
    ...
    finercam.apps.inputs.UsageError: --gamma must be a number in [0, 10], got -1.0
    """
    inputs, cam, target, refs = _setup(args)
    from . import viz
    from ..progress import progress_bar
    from .report import Report, save_png

    names, out, report, failed, used = inputs.class_names, Path(args.out), None, 0, set()
    # A bar on a terminal only: in a log or a pipe it would bury the one-line error reports.
    show = len(args.images) > 1 and sys.stderr.isatty()
    with progress_bar(show=show, total=len(args.images), desc="explain", file=sys.stderr) as bar:
        for path in args.images:
            bar.update(0)
            try:
                photo = read_image(path)
                started = time.perf_counter()
                exp = _explain_one(cam, inputs, photo, target, refs, args)
            except UsageError as exc:
                if not str(exc).startswith("cannot read image"):
                    raise
                _say(bar, f"finercam explain: {exc}", sys.stderr)
                failed += 1
                bar.update(1)
                continue
            if report is None:  # the first logits: now files may be written
                warn_if_probabilities(exp.logits, f"--model {inputs.source}")
                if len(args.images) > 1:
                    _say(bar, _plan_text(args, time.perf_counter() - started), sys.stderr)
                report = Report(out, "Finer-CAM explanations")
                if sys.argv[1:2] == ["explain"]:  # the command line, when there is one to show
                    report.code("finercam " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
            stem = _unique(Path(path).stem, used)
            maps = _maps(exp, photo, inputs.crop(*photo.size), names, args)
            fig = _figure(maps, Path(path).name, names, args)
            _report_image(report, path, stem, maps, names, fig)
            if args.html:
                _write_view(report, inputs, photo, exp, stem, names, args)
            save_png(viz.overlay(photo, maps.base, alpha=args.alpha), out / f"{stem}_baseline.png")
            save_png(viz.overlay(photo, maps.finer, alpha=args.alpha), out / f"{stem}_finer.png")
            _console(lambda text: _say(bar, text, sys.stdout), path, maps, names)
            why = _diagnosis(inputs.model, exp, names)
            _say(bar, f"  why: {why}", sys.stdout)
            report.text(f"Why the default map moved this much (Explanation.diagnose): {why}.")
            bar.update(1)
    if report is None:  # not one image could be read: nothing written, as for a bad argument
        return 2
    print(f"wrote {report.write()} and {len(used)} panel(s) in {out}")
    return 1 if failed else 0


def main(argv=None) -> int:
    """Stand-alone entry (the ``finercam`` CLI dispatches to :func:`run`); returns the exit status.

    A :class:`UsageError` is printed as one line on stderr and gives exit status 2:

    >>> main(["img.png", "--num-references", "0"])
    2
    """
    p = argparse.ArgumentParser(prog="finercam explain", description=__doc__.split("\n")[0])
    add_arguments(p)
    try:
        args = p.parse_args(argv)
    except SystemExit as stop:  # --help, or a bad value already reported in one line
        return int(stop.code or 0)
    try:
        return run(args)
    except UsageError as exc:
        print(f"finercam explain: error: {exc}", file=sys.stderr)
        return 2
