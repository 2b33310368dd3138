"""``finercam explain``: the base map and Finer-CAM's comparisons for image files, with names.

    finercam explain --model imagenet photo.jpg other.png --out maps/
    finercam explain --model mypkg.models:build --layer layer4 --labels classes.txt photo.jpg

``--model`` is a built-in name (``cnn``, ``vit``: the bird world; ``imagenet``: EfficientNet-Lite0,
extra ``finercam[imagenet]``), ``package.module:factory`` or ``hf:DIR``; see
:mod:`finercam.apps.inputs` for ``--labels``, ``--size/--mean/--std/--transform`` and classes
given by name. Without ``--layer`` (or with ``--layer auto``) a model without a layer of its own
is explained at the first layer :func:`finercam.suggest_layers` proposes at the input size, named
on stderr.

Per image, ONE model call (:class:`finercam.FinerCAM`) and then only recombinations
(:meth:`finercam.Explanation.recombine`) give, in ``<stem>_panel.png``:

* row 1: the photo, the base map (gamma = 0), the paper's default Finer map (``--gamma``, the
  ``--num-references`` nearest classes averaged, Eq. 8) and the Finer map against each reference
  alone at ``--reference-gamma`` (default 1.0), which shows what tells the class from that one;
* row 2: a gamma strip (0, 0.3, 0.6, 1.0, 1.5) against the nearest reference (paper Fig. 8).

Under each map: its Pearson correlation ``r`` with the base map, measured as
:func:`finercam.diagnose.map_correlation` measures it for the "why" line and the interactive view
(the two normalised maps on the input's H x W grid, ``Explanation.maps``), and the share of the
base map's energy that moved, ``moved = 1/2 sum_ij |p_ij - q_ij|`` with ``p, q`` the two maps
divided by their sums (0: same distribution, 1: disjoint support), on the first layer's grid
before resizing. Titles say what a map compares in words ("tiger cat, not Egyptian cat").
``--cmap viridis`` or ``cividis`` (colour-blind safe) replaces jet, the paper's colour map, in the
panel, the overlays and the view; ``--layer`` given twice explains two layers in the one model
call (the panel shows their fusion, the ``--html`` view each layer and the fusion).
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
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..images import ImageReadError, read_image
from ..methods import METHODS
from . import explain_panel as panel
from .classes import name_of, num_classes_of, resolve_class, resolve_classes
from .common import UsageError, check_output_folder, one_line_errors, print_usage_error, usage_errors
from .inputs import (
    ModelInputs,
    add_model_arguments,
    add_preprocessing_arguments,
    check_preprocessing_args,
    inputs_from_args,
    warn_if_probabilities,
)

if TYPE_CHECKING:
    from ..report import Report

__all__ = ["add_arguments", "check_arguments", "main", "run"]


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
    add_model_arguments(p, many_layers=True)
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
    p.add_argument("--cmap", default="jet", choices=("jet", "viridis", "cividis"),
                   help="colour map (default jet, the paper's; viridis and cividis are perceptually "
                        "uniform, cividis colour-blind safe)")
    p.add_argument("--html", action="store_true",
                   help="also write STEM.html per image: the interactive view (gamma slider, reference "
                        "toggles; recombined in the browser, no model call)")


def check_arguments(args: argparse.Namespace) -> None:
    """The checks that need no model: a :class:`~finercam.apps.common.UsageError` naming the
    first bad option.

    >>> p = argparse.ArgumentParser(prog="finercam explain")
    >>> add_arguments(p)
    >>> check_arguments(p.parse_args(["img.png", "--alpha", "2"]))
    Traceback (most recent call last):
    ...
    finercam.apps.common.UsageError: --alpha must be in [0, 1], got 2.0
    """
    if args.method not in METHODS:
        raise UsageError(f"--method must be one of {', '.join(METHODS)}, got {args.method!r}")
    for option, g in (("--gamma", args.gamma), ("--reference-gamma", args.reference_gamma)):
        if not np.isfinite(g) or not 0.0 <= g <= 10.0:
            raise UsageError(f"{option} must be a number in [0, 10], got {g}")
    if args.num_references < 1:
        raise UsageError(f"--num-references must be >= 1, got {args.num_references}")
    if not 0.0 <= args.alpha <= 1.0:
        raise UsageError(f"--alpha must be in [0, 1], got {args.alpha}")
    # hf:DIR and probe:FILE (`finercam probe`'s file) name a folder or a file
    named_file = bool(args.model) and args.model.startswith(("hf:", "probe:"))
    if args.model and ":" in args.model and not named_file and (args.model.count(":") != 1 or not all(args.model.split(":"))):
        raise UsageError(f"--model must look like package.module:name, got {args.model!r}")
    check_preprocessing_args(args)
    check_output_folder(args.out)


def _classes(args, inputs: ModelInputs) -> tuple[int | None, list[int] | None]:
    """--target and --references as ids (None where not given), checked against the model's
    number of classes when it is known without a call."""
    names = inputs.class_names
    num_classes = len(names) if names else num_classes_of(inputs.model)
    target = None if args.target is None else resolve_class(args.target, names, num_classes, "--target")
    refs = None if args.references is None else resolve_classes(args.references, names, num_classes, "--references")
    if target is not None and refs is not None and target in refs:
        raise UsageError(f"--references holds the target {name_of(names, target)}")
    if refs is None and num_classes is not None and args.num_references >= num_classes:
        raise UsageError(f"--num-references must be below the model's {num_classes} classes, "
                         f"got {args.num_references}")
    return target, refs


def _setup(args):
    """Everything checked and loaded before the first image: (inputs, cam, target, refs)."""
    from ..finer import FinerCAM

    check_arguments(args)
    inputs = inputs_from_args(args)
    target, refs = _classes(args, inputs)
    with usage_errors():  # FinerCAM checks the layer name against the model
        cam = FinerCAM(inputs.model, inputs.layer, method=args.method, gamma=args.gamma,
                       num_references=len(refs) if refs else args.num_references,
                       candidates=10 if args.html else 1)  # per class: the page's 10 classes, or the panel's references
    return inputs, cam, target, refs


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


def _plan_text(count: int, method: str, seconds_first: float) -> str:
    """What the run does per image and how long the rest will take, from the first image's time."""
    from ..progress import format_seconds

    def duration(seconds: float) -> str:
        return f"{1e3 * seconds:.0f} ms" if seconds < 1 else format_seconds(seconds)

    work = "one model call per image: a forward, and a backward per stored class"
    if method == "scorecam":
        work += ", then one forward per channel of the layer (Score-CAM)"
    rest = count - 1
    return (f"finercam explain: {count} images, {work}; every map of the panel is recombined "
            f"from it. The first took {duration(seconds_first)}: about "
            f"{duration(rest * seconds_first)} for the other {rest}.")


def _say(bar, text: str, stream) -> None:
    """Print above a progress bar (tqdm's write keeps the bar on its own line)."""
    if hasattr(bar, "write"):
        bar.write(text, file=stream)
    else:
        print(text, file=stream)


class _Outputs:
    """The output folder: nothing is written before the model has produced its first logits."""

    def __init__(self, args, inputs: ModelInputs):
        self.args, self.inputs, self.out = args, inputs, Path(args.out)
        self.report: Report | None = None
        self.stems: set[str] = set()

    def _stem(self, path) -> str:
        stem = Path(path).stem or "image"
        unique, i = stem, 1
        while unique in self.stems:
            i += 1
            unique = f"{stem}-{i}"
        self.stems.add(unique)
        return unique

    def start(self, exp, seconds_first: float, bar) -> None:
        """At the first logits: the probability check, the plan, and the report."""
        from ..report import Report

        warn_if_probabilities(exp.logits, f"--model {self.inputs.source}")
        if len(self.args.images) > 1:
            _say(bar, _plan_text(len(self.args.images), self.args.method, seconds_first), sys.stderr)
        report = self.report = Report(self.out, "Finer-CAM explanations")
        command_line = getattr(self.args, "command_line", None)
        if command_line:  # given by the command line (finercam.apps.cli), when there is one
            report.code(command_line)

    def image(self, path, photo, exp, bar) -> None:
        """The image's panel, overlays, report section, console lines and (--html) view."""
        from .. import viz
        from ..report import save_png

        args, inputs, names, report = self.args, self.inputs, self.inputs.class_names, self.report
        assert report is not None, "start() comes first"
        stem = self._stem(path)
        maps = panel.panel_maps(exp, photo, inputs.crop(*photo.size), names, args.method, args.gamma,
                                args.reference_gamma, references_given=bool(args.references))
        fig = panel.panel_figure(maps, Path(path).name, names, args.alpha, args.cmap)
        panel.report_image(report, path, stem, maps, names, fig)
        if args.html:
            image = panel.view_image(inputs.transform, photo, inputs.mean, inputs.std, bool(args.transform))
            panel.write_view(report, self.out, image, exp, stem, names, args.cmap)
        save_png(viz.overlay(photo, maps.base, alpha=args.alpha, cmap=args.cmap), self.out / f"{stem}_baseline.png")
        save_png(viz.overlay(photo, maps.finer, alpha=args.alpha, cmap=args.cmap), self.out / f"{stem}_finer.png")
        _say(bar, panel.console_lines(path, maps, names), sys.stdout)
        why = panel.diagnosis(inputs.model, exp, names)
        _say(bar, f"  why: {why}", sys.stdout)
        report.text(f"Why the default map moved this much (Explanation.diagnose): {why}.")


def run(args: argparse.Namespace) -> int:
    """Explain ``args.images`` (options of :func:`add_arguments`); returns 0, or 1 if an image
    could not be read (reported on stderr, one line each; the others are still explained), or 2
    if none could (nothing is written).

    A bad option raises :class:`~finercam.apps.common.UsageError` before any work, which
    :func:`main` and the ``finercam`` CLI report as one line (exit status 2).

    >>> p = argparse.ArgumentParser(prog="finercam explain")
    >>> add_arguments(p)
    >>> run(p.parse_args(["img.png", "--gamma", "-1"]))
    Traceback (most recent call last):
    ...
    finercam.apps.common.UsageError: --gamma must be a number in [0, 10], got -1.0
    """
    from ..progress import progress_bar

    inputs, cam, target, refs = _setup(args)
    outputs, failed = _Outputs(args, inputs), 0
    # A bar on a terminal only: in a log or a pipe it would bury the one-line error reports.
    show = len(args.images) > 1 and sys.stderr.isatty()
    with progress_bar(show=show, total=len(args.images), desc="explain", file=sys.stderr) as bar:
        for path in args.images:
            bar.update(0)
            try:
                photo = read_image(path)
            except ImageReadError as exc:
                _say(bar, f"finercam explain: {exc}", sys.stderr)
                failed += 1
                bar.update(1)
                continue
            started = time.perf_counter()
            x = _as_batch(inputs.transform(photo), "--transform" if args.transform else "the transform")
            exp = cam(x, targets=None if target is None else [target],
                      references=None if refs is None else [refs])
            if outputs.report is None:
                outputs.start(exp, time.perf_counter() - started, bar)
            outputs.image(path, photo, exp, bar)
            bar.update(1)
    if outputs.report is None:  # not one image could be read: nothing written, as for a bad argument
        return 2
    print(f"wrote {outputs.report.write()} and {len(outputs.stems)} panel(s) in {outputs.out}")
    return 1 if failed else 0


def main(argv=None) -> int:
    """Stand-alone entry (the ``finercam`` CLI dispatches to :func:`run`); returns the exit status.

    A :class:`~finercam.apps.common.UsageError` is printed as one line on stderr and gives exit
    status 2:

    >>> main(["img.png", "--num-references", "0"])
    2
    """
    p = argparse.ArgumentParser(prog="finercam explain", description=(__doc__ or "").split("\n")[0])
    add_arguments(p)
    try:
        args = p.parse_args(argv)
    except SystemExit as stop:  # --help, or a bad value already reported in one line
        return int(stop.code or 0)
    try:
        return run(args)
    except UsageError as exc:
        return print_usage_error("finercam explain", exc)
