"""``finercam sanity``: the model-parameter randomisation test (Adebayo et al. 2018) for a CAM
method and its Finer version, beside a control that ignores the model.

    finercam sanity --model cnn                         # 16 bird-world test images
    finercam sanity --model imagenet examples/photos --out sanity/

Per image the explained class is the trained model's prediction; Finer compares it with the
classes the trained model finds most similar (fixed, so that every depth explains the same
quantity). The model's blocks (:func:`finercam.metrics.model_blocks`) are re-initialised on
copies, from the logits down (cascading) and one at a time (independent); each map is compared
with the trained model's by Spearman rank correlation (absolute and signed) and SSIM
(:func:`finercam.metrics.randomisation_test`). Prints the table (means and standard errors over
the images) and writes ``sanity.md``, ``sanity.json`` and ``sanity.png`` (similarity against
randomisation depth, one line per method, one panel per measure) into ``--out``.

A method passes when its mean Spearman (absolute) with every block random is below 0.5; the
edge-detector control must fail. Exit status 0; bad arguments give one line and status 2.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..methods import METHOD_LABELS, METHODS
from ..metrics import sanity
from .common import UsageError
from .inputs import add_model_arguments, add_preprocessing_arguments, inputs_from_args

__all__ = ["add_arguments", "demo_section", "explainers", "run", "sanity_figure", "sanity_markdown", "sanity_result"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".jfif", ".bmp", ".webp", ".gif", ".tif", ".tiff")
WORLD_MODELS = ("cnn", "vit")
MEASURE_LABELS = {"spearman_abs": "Spearman |map|", "spearman": "Spearman (signed)", "ssim": "SSIM"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``finercam sanity``.

    >>> p = argparse.ArgumentParser(); add_arguments(p)
    >>> a = p.parse_args(["--model", "vit", "--n", "4"])
    >>> a.model, a.n, a.method, a.modes
    ('vit', 4, 'gradcam', ['cascading', 'independent'])
    """
    add_model_arguments(p)
    add_preprocessing_arguments(p)
    p.add_argument("images", nargs="*", help="image files or folders (default for the bird-world "
                                             "models cnn and vit: --n test images of the bird world)")
    p.add_argument("--n", type=int, default=16, help="bird-world images when no file is given")
    p.add_argument("--method", default="gradcam", choices=[m for m in METHODS if m != "scorecam"])
    p.add_argument("--gamma", type=float, default=0.6, help="Finer's comparison strength")
    p.add_argument("--num-references", type=int, default=3)
    p.add_argument("--modes", nargs="+", default=list(sanity.MODES), choices=list(sanity.MODES))
    p.add_argument("--seed", type=int, default=0, help="the re-initialisations' seed")
    p.add_argument("--out", default="sanity", help="output folder (default: ./sanity)")
    p.add_argument("--no-progress", dest="progress", action="store_false")


def _image_files(paths: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            files.append(p)
        else:
            raise UsageError(f"cannot read image {str(p)!r}: no such file or folder")
    if not files:
        raise UsageError(f"no image file in {' '.join(paths)}")
    return files


def _images(args, inputs):
    import torch

    if args.images:
        from ..images import ImageReadError, read_image

        try:
            return torch.stack([inputs.transform(read_image(f)) for f in _image_files(args.images)])
        except ImageReadError as exc:
            raise UsageError(str(exc)) from None
    if inputs.source not in WORLD_MODELS:
        raise UsageError(f"give image files: --model {inputs.source} has no built-in images")
    from ..world.datasets import generate

    if args.n < 2:
        raise UsageError(f"--n must be at least 2 (standard errors), got {args.n}")
    return torch.from_numpy(generate(args.n, seed=0, split="test").images)


def explainers(model, layer: str, images, method: str = "gradcam", gamma: float = 0.6,
               num_references: int = 3) -> dict:
    """The three rows: the base method, its Finer version (references: the classes the trained
    model finds most similar, fixed) and the edge-detector control."""
    from ..finer import FinerCAM

    refs = FinerCAM(model, layer, method=method, gamma=gamma,
                    num_references=num_references)(images).references
    name = METHOD_LABELS.get(method, method)
    return {name: sanity.cam_explainer(layer, method=method),
            f"{name} + Finer": sanity.cam_explainer(layer, method=method, gamma=gamma,
                                                    references=refs.tolist(),
                                                    num_references=num_references),
            "Edges (control)": sanity.edge_explainer}


def sanity_markdown(result: sanity.Randomisation, mode: str = "cascading") -> str:
    """The table of one mode: one row per (method, depth), mean ± standard error per measure."""
    header = ["Method", "Randomised"] + [MEASURE_LABELS[m] for m in sanity.MEASURES]
    lines = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * len(sanity.MEASURES)]
    for row in result.table():
        if row["mode"] != mode:
            continue
        cells = [f"{row[m]:.3f} ± {row[m + '_se']:.3f}" for m in sanity.MEASURES]
        lines.append("| " + " | ".join([row["method"], row["randomised"]] + cells) + " |")
    return "\n".join(lines)


def sanity_figure(result: sanity.Randomisation, path=None, title: str | None = None):
    """Similarity to the trained model's maps against the cascading randomisation depth (0: the
    trained model; k: the top k blocks random), one line per method with its standard-error
    band, one panel per measure. Returns the matplotlib ``Figure`` (no pyplot state), written to
    ``path`` (PNG) when given: ``report.figure(sanity_figure(r), name, caption)`` puts it in an
    HTML report."""
    from matplotlib.figure import Figure

    depth = np.arange(len(result.blocks) + 1)
    ticks = ["trained"] + [result.blocks[-k] or "(own)" for k in range(1, len(result.blocks) + 1)]
    fig = Figure(figsize=(5.2 * len(sanity.MEASURES), 4.2), layout="constrained")
    axes = fig.subplots(1, len(sanity.MEASURES))
    for ax, measure in zip(axes, sanity.MEASURES, strict=True):
        for method in result.methods:
            v = result.cascading[method][measure]
            mean = np.array([np.nanmean(r) if np.isfinite(r).any() else np.nan for r in v])
            n = np.isfinite(v).sum(1)
            se = np.array([np.nanstd(r, ddof=1) if k > 1 else 0.0
                           for r, k in zip(v, n, strict=True)]) / np.sqrt(np.maximum(n, 1))
            line, = ax.plot(depth, mean, marker="o", ms=3, label=method)
            ax.fill_between(depth, mean - se, mean + se, color=line.get_color(), alpha=0.2)
        ax.axhline(0.0, color="grey", lw=0.6)
        ax.set_title(MEASURE_LABELS[measure])
        ax.set_xticks(depth)
        ax.set_xticklabels(ticks, rotation=70, fontsize=7)
        ax.set_xlabel("randomised from the logits down to")
        ax.set_ylim(-0.4 if measure != "ssim" else -0.1, 1.05)
    axes[0].set_ylabel("similarity to the trained model's map")
    axes[0].legend(fontsize=8, loc="lower left")
    if title:
        fig.suptitle(title)
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def sanity_result(model, layer: str, images, method: str = "gradcam", gamma: float = 0.6,
                  num_references: int = 3, modes=("cascading",), seed: int = 0,
                  progress: bool = False) -> sanity.Randomisation:
    """The randomisation test of :func:`explainers`' three rows on ``images`` (the demo's call:
    ``sanity_figure(sanity_result(net, layer, x[:8]))``)."""
    rows = explainers(model, layer, images, method, gamma, num_references)
    return sanity.randomisation_test(model, images, rows, modes=modes, seed=seed, progress=progress)


def demo_section(report, model, layer: str, images, label: str) -> dict:
    """The demo report's sanity section: cascading randomisation of ``model`` on ``images`` for
    Grad-CAM, Grad-CAM + Finer and the edge control, its figure (``sanity.png``) and verdicts;
    returns what ``results.json`` records (the blocks, the verdicts, each row's similarities
    with every block random)."""
    result = sanity_result(model, layer, images)
    verdict = result.passes()
    final = {m: {k: float(np.nanmean(v[-1])) for k, v in result.cascading[m].items()} for m in result.methods}
    report.heading(f"Sanity check: model-parameter randomisation ({label})")
    report.text(
        f"The {label}'s {len(result.blocks)} blocks re-initialised on copies of the model, from the "
        f"logits down (Adebayo et al. 2018), on {len(images)} test images: a map that explains the "
        "model must stop resembling the trained model's map. With every block random, mean Spearman "
        "|map| " + ", ".join(f"{m} {final[m]['spearman_abs']:.2f}" for m in result.methods) +
        "; passes (below " + f"{sanity.PASS_THRESHOLD}): " +
        ", ".join(f"{m} {'yes' if ok else 'no'}" for m, ok in verdict.items()) +
        ". The edge detector ignores the model and must fail.")
    report.figure(sanity_figure(result), "sanity",
                  "Similarity of each method's maps to the trained model's, block after block randomised.")
    return {"blocks": result.blocks, "passes": verdict, "all_random": final}


def run(args: argparse.Namespace) -> int:
    """``finercam sanity`` with parsed arguments; returns the exit status."""
    if args.gamma < 0 or not np.isfinite(args.gamma):
        raise UsageError(f"--gamma must be finite and >= 0, got {args.gamma}")
    inputs = inputs_from_args(args)
    images = _images(args, inputs)
    model, layer = inputs.model, str(inputs.layer)  # --layer, the model's own or the suggested one
    result = sanity_result(model, layer, images, args.method, args.gamma, args.num_references,
                           modes=args.modes, seed=args.seed, progress=args.progress)
    out = Path(args.out)
    os.makedirs(out, exist_ok=True)
    verdict = result.passes()
    text = [f"# Randomisation test: {inputs.source}, {len(images)} images, layer {layer}", ""]
    for mode in args.modes:
        text += [f"## {mode.capitalize()} randomisation", "", sanity_markdown(result, mode), ""]
    text += ["Passes (mean Spearman |map| with every block random < "
             f"{sanity.PASS_THRESHOLD}): " + ", ".join(f"{m}: {'yes' if ok else 'NO'}" for m, ok in verdict.items())]
    report = "\n".join(text) + "\n"
    print(report)
    (out / "sanity.md").write_text(report)
    (out / "sanity.json").write_text(json.dumps({"model": inputs.source, "blocks": result.blocks,
                                                 "rows": result.table(), "passes": verdict}, indent=1))
    if "cascading" in args.modes:
        sanity_figure(result, out / "sanity.png",
                      f"Cascading randomisation: {inputs.source}, {len(images)} images")
    print(f"wrote {out / 'sanity.md'}, sanity.json" + (", sanity.png" if "cascading" in args.modes else ""))
    return 0
