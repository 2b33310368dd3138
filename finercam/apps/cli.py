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


def _add_evaluate(p: argparse.ArgumentParser) -> None:
    from .evaluate import add_arguments

    add_arguments(p)


def _run_evaluate(args: argparse.Namespace) -> int:
    from ..evaluation.plan import keep_freed_memory
    from .evaluate import run

    keep_freed_memory()  # our own process: forwards reuse freed memory instead of page-faulting
    return run(args)


def _add_demo(p: argparse.ArgumentParser) -> None:
    from .demo import add_arguments

    add_arguments(p)


def _run_demo(args: argparse.Namespace) -> int:
    from ..evaluation.plan import keep_freed_memory
    from .demo import run

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
