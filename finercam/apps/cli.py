"""The ``finercam`` command: ``finercam <command> [options]``.

Each command is a pair in ``COMMANDS``: a function that adds its options to a subparser and a
function that runs it with the parsed arguments and returns the exit status. A new command adds
one entry; nothing else changes.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

__all__ = ["main", "build_parser", "COMMANDS"]


def _float_or_word(value: str):
    try:
        return float(value)
    except ValueError:
        return value


def _add_evaluate(p: argparse.ArgumentParser) -> None:
    from .evaluate import MIN_LABEL_AGREEMENT, SCORECAM_COST_FACTOR
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


def _run_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate
    from .progress import keep_freed_memory

    keep_freed_memory()  # our own process: forwards reuse freed memory instead of page-faulting
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


def _add_demo(p: argparse.ArgumentParser) -> None:
    from .demo import add_arguments

    add_arguments(p)


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import run
    from .progress import keep_freed_memory

    keep_freed_memory()  # as for evaluate: the probe's 224-px forwards would page-fault otherwise
    return run(args)


def _add_explain(p: argparse.ArgumentParser) -> None:
    from .explain import add_arguments

    add_arguments(p)


def _run_explain(args: argparse.Namespace) -> int:
    from .explain import run

    return run(args)


def _add_train(p: argparse.ArgumentParser) -> None:
    from ..world.models.train import add_arguments

    add_arguments(p)


def _run_train(args: argparse.Namespace) -> int:
    from ..world.models.train import run

    return run(args)


def _add_zeroshot(p: argparse.ArgumentParser) -> None:
    from .zeroshot_command import add_options

    add_options(p)


def _run_zeroshot(args: argparse.Namespace) -> int:
    from .zeroshot_command import run

    return run(args)


def _add_probe(p: argparse.ArgumentParser) -> None:
    from .probe_command import add_options

    add_options(p)


def _run_probe(args: argparse.Namespace) -> int:
    from .probe_command import run

    return run(args)


#: name -> (help, add options, run)
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None],
                          Callable[[argparse.Namespace], int]]] = {
    "evaluate": ("the paper's Table 1 (Del., RD@p, Loc.) on a model and data set; resumable, "
                 "runs under torchrun", _add_evaluate, _run_evaluate),
    "demo": ("the spot-the-difference benchmark with the embedded CNN, ViT and linear probe: every "
             "figure of the paper and the Table-1-style table, as an HTML report", _add_demo, _run_demo),
    "explain": ("baseline and Finer-CAM overlays for image files, with your model or the "
                "embedded CNN", _add_explain, _run_explain),
    "train": ("train one of the embedded classifiers (cnn, vit) on the bird world and write its "
              "weights", _add_train, _run_train),
    "zeroshot": ("the tiny dual encoder on the bird world: a part's prompt alone vs compared with "
                 "'a bird' (energy in the part's mask); --faithfulness: the classifier-faithfulness "
                 "examination (Sec. 4.3, App. A.2)", _add_zeroshot, _run_zeroshot),
    "probe": ("train the paper's linear probe on a frozen backbone for a data set (cub:ROOT, "
              "cars:ROOT, ...); loads as --model probe:FILE", _add_probe, _run_probe),
    "app": ("a local web app: upload an image, choose model and method, explore gamma, references "
            "and aggregation in the browser", lambda p: _app().add_arguments(p), lambda a: _app().run(a)),
}


def _app():
    from . import app

    return app


def build_parser() -> argparse.ArgumentParser:
    """The ``finercam`` argument parser: one subcommand per entry of :data:`COMMANDS`.

    >>> args = build_parser().parse_args(["zeroshot", "--n", "4"])
    >>> args.command, args.n
    ('zeroshot', 4)
    >>> sorted(COMMANDS)
    ['app', 'demo', 'evaluate', 'explain', 'probe', 'train', 'zeroshot']
    """
    parser = argparse.ArgumentParser(prog="finercam", description="Finer-CAM (CVPR 2025).")
    sub = parser.add_subparsers(dest="command", metavar="command")
    sub.required = True
    for name, (help_text, add, _) in COMMANDS.items():
        add(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``finercam <command> [options]``; returns the exit status.

    A bad value that the command finds (``TypeError``, ``ValueError``, ``FileNotFoundError``)
    is reported as one line on stderr with exit status 2, argparse's own status for usage errors.

    >>> main(["zeroshot", "--n", "0"])
    2
    """
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command][2](args)
    except (TypeError, ValueError, FileNotFoundError) as e:
        print(f"finercam {args.command}: error: {e}", file=sys.stderr)
        return 2
