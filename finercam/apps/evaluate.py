"""``finercam evaluate``: the command line of :func:`finercam.evaluate` (the paper's Table 1).

The options name the model (``--model``: a built-in name, ``package.module:factory`` or
``hf:DIR``, read by :mod:`finercam.apps.inputs` with its preprocessing and class names; its
layer: ``--layer NAME``, else the model's own, else the first layer
:func:`finercam.suggest_layers` proposes at the input size), the data (``--data``) and
the run's settings; :func:`run` resolves and checks them and calls
:func:`finercam.evaluation.evaluate`, whose module docstring describes the run, its outputs and
its resume. A bad option gives one line and exit status 2 before anything is written.
"""
from __future__ import annotations

import argparse

from .._checks import check_int
from ..evaluation import EvaluationInputError, evaluate
from ..evaluation.config import RunConfig
from ..evaluation.data import READERS, Unreadable, reads_images, resolve_data, split_item
from ..evaluation.model import MIN_LABEL_AGREEMENT
from ..evaluation.plan import SCORECAM_COST_FACTOR
from ..layers import resolve_layers
from . import inputs
from .common import UsageError, usage_errors
from .inputs import add_model_arguments, add_preprocessing_arguments

__all__ = ["add_arguments", "run"]


def _float_or_word(value: str):
    try:
        return float(value)
    except ValueError:
        return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``finercam evaluate`` options to ``p``.

    >>> p = argparse.ArgumentParser(prog="finercam evaluate"); add_arguments(p)
    >>> a = p.parse_args(["--model", "cnn", "--data", "birds", "--gammas", "0.2"])
    >>> a.model, a.data, a.gammas, a.methods
    ('cnn', 'birds', [0.2], None)
    """
    add_model_arguments(p, required=True)
    registered = f" (registered: {', '.join(sorted(READERS))})" if READERS else ""
    p.add_argument("--data", required=True,
                   help="an ImageFolder-style directory (root/<class>/<image>, optional "
                        f"boxes.csv), a registered data set NAME:ROOT[:SPLIT]{registered} or an "
                        "import string 'package.module:dataset_factory'")
    _set_help(p, "--labels",
              "the model's class names, one per line in output order: each class folder of "
              "--data is mapped to the class of its name. Without it a folder's label is its "
              "index among the sorted folder names (0 = the first alphabetically); if the "
              "labels agree with the model's top-5 for less than "
              f"{100 * MIN_LABEL_AGREEMENT:g} %% of the first batch the run stops (give "
              "--labels or --target predicted)")
    add_preprocessing_arguments(p)
    _add_row_arguments(p)
    _add_run_arguments(p)


def _add_row_arguments(p: argparse.ArgumentParser) -> None:
    """The methods, the Finer settings and the ablation rows."""
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


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    """The metrics' settings, the targets, the batches and the outputs."""
    p.add_argument("--fractions", type=float, nargs="+", default=[0.05, 0.1])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--road", type=float, nargs="*", default=None, metavar="FRACTION",
                   help="add the ROAD columns (MoRF, LeRF, their combination) removing these "
                        "fractions (no value: 0.1 0.2 ... 0.9); two imputations and forwards per "
                        "fraction, image and row")
    p.add_argument("--insertion-steps", type=int, default=0,
                   help="add the insertion AUC column (from the blurred image) with these steps")
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


def _row_options(args: argparse.Namespace) -> dict:
    """The options that say what the run computes, by the names :func:`finercam.evaluate` and
    :class:`~finercam.evaluation.config.RunConfig` give them."""
    return dict(methods=args.methods, finer=args.finer, gamma=args.gamma,
                num_references=args.num_references, reference_rule=args.reference_rule,
                aggregate=args.aggregate, gammas=args.gammas, reference_ranks=args.reference_ranks,
                aggregations=args.aggregations, fractions=args.fractions, steps=args.steps,
                baseline=args.baseline, target=args.target, batch_size=args.batch_size,
                road_fractions=_road_fractions(args.road), insertion_steps=args.insertion_steps)


def _check_device(device: str | None) -> None:
    """``--device``: a device torch knows, and CUDA only where there is one."""
    if device is None:
        return
    import torch

    try:
        kind = torch.device(device).type
    except RuntimeError as exc:
        raise UsageError(f"--device: {exc}") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: no CUDA device is available")


def _image_shape(data) -> tuple[int, ...] | None:
    """(C, H, W) of a data set's first image (None when it cannot be read)."""
    item = split_item(data[0], 0) if len(data) else None
    return None if item is None or isinstance(item, Unreadable) else tuple(item.image.shape[-3:])


def _checked_inputs(args: argparse.Namespace):
    """``(model inputs, data)``: the model with its preprocessing and layer, ``--data`` read with
    that preprocessing, and every option checked (a :class:`~finercam.apps.common.UsageError`
    naming the first bad one) before the model is called on an image.

    The model's own preprocessing reads a folder or a registered data set; ``--size``, ``--mean``,
    ``--std`` or ``--transform`` with a ``Dataset`` import string is an error naming ``--data``.
    Without ``--layer`` a model without a layer of its own gets the first suggested layer at the
    size of the images it will be given (:func:`finercam.apps.inputs.with_layer`): the
    preprocessing's, or a ``Dataset``'s first image's.
    """
    found = inputs.preprocessed_inputs(args)
    labels = found.class_names if args.labels else None
    explicit = any(getattr(args, k) is not None for k in ("size", "mean", "std", "transform"))
    decoded = reads_images(args.data) or explicit
    with usage_errors():  # the library's own checks of what the options name
        data = resolve_data(args.data, transform=found.transform if decoded else None,
                            crop=found.crop if decoded else None, class_names=labels,
                            argument="--data")
    found = inputs.with_layer(found, args.layer, None if decoded else _image_shape(data))
    with usage_errors():
        resolve_layers(found.model, found.layer)
        RunConfig(**_row_options(args), n_images=len(data))
        for value, option in ((args.chunk_size, "--chunk-size"), (args.limit, "--limit")):
            if value is not None:
                check_int(value, option)
    _check_device(args.device)
    return found, data


def run(args: argparse.Namespace) -> int:
    """Evaluate with the parsed options of :func:`add_arguments`; returns 0.

    A bad option, or a model and data that do not fit together (found at the first batch,
    :class:`~finercam.evaluation.EvaluationInputError`), is a
    :class:`~finercam.apps.common.UsageError` (one line, exit status 2, nothing written); any
    other error keeps its traceback.
    """
    found, data = _checked_inputs(args)
    labels = found.class_names if args.labels else None
    try:
        evaluate(found.model, found.layer, data, **_row_options(args), out_dir=args.out,
                 labels=labels, chunk_size=args.chunk_size, limit=args.limit, device=args.device,
                 progress=args.progress)
    except EvaluationInputError as exc:
        raise UsageError(str(exc)) from exc
    return 0


def _road_fractions(values):
    """``--road``: absent -> no ROAD columns; given without values -> the default fractions."""
    from ..metrics import ROAD_FRACTIONS

    return () if values is None else (tuple(values) or ROAD_FRACTIONS)
