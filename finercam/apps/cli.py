"""The ``finercam`` command: ``finercam <command> [options]``.

Each command is one module named in :data:`COMMANDS`, holding ``add_arguments(parser)`` (its
options) and ``run(args) -> exit status``. A new command adds one entry; nothing else changes.

Errors: a :class:`~finercam.apps.common.UsageError` (what the person running the command can fix)
is printed as one line, ``finercam <command>: error: <message>``, with its exit status (2, as
argparse's own usage errors); anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import importlib
import shlex
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Sequence

from .common import UsageError, print_usage_error

__all__ = ["COMMANDS", "Command", "build_parser", "main"]


@dataclass(frozen=True)
class Command:
    """One ``finercam`` command: the module with ``add_arguments(parser)`` and ``run(args)``.

    ``reuse_freed_memory``: the command runs many same-sized forwards in our own process, which
    then keeps freed memory for reuse instead of returning it to the system and page-faulting it
    back on the next forward (:func:`finercam.evaluation.plan.keep_freed_memory`).
    """

    module: str
    help: str
    reuse_freed_memory: bool = False

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)


#: name -> Command, in the order ``finercam --help`` lists them.
COMMANDS: dict[str, Command] = {
    "evaluate": Command("finercam.apps.evaluate",
                        "the paper's Table 1 (Del., RD@p, Loc.) on a model and data set; resumable, runs "
                        "under torchrun", reuse_freed_memory=True),
    "demo": Command("finercam.apps.demo",
                    "the spot-the-difference benchmark with the embedded CNN, ViT and linear probe: every "
                    "figure of the paper and the Table-1-style table, as an HTML report",
                    reuse_freed_memory=True),
    "explain": Command("finercam.apps.explain",
                       "baseline and Finer-CAM overlays for image files, with your model or the embedded CNN"),
    "train": Command("finercam.apps.train_command",
                     "train one of the embedded classifiers (cnn, vit) on the bird world and write its weights"),
    "zeroshot": Command("finercam.apps.zeroshot_command",
                        "the tiny dual encoder on the bird world: a part's prompt alone vs compared with 'a "
                        "bird' (energy in the part's mask); --faithfulness: the classifier-faithfulness "
                        "examination (Sec. 4.3, App. A.2)"),
    "layers": Command("finercam.apps.layers_command",
                      "the target layers suggested for a model (NAME, PKG.MOD:FACTORY or hf:DIR), best first, "
                      "with grid, channels and why"),
    "sanity": Command("finercam.apps.sanity",
                      "the randomisation sanity test (Adebayo et al.): a CAM method and its Finer version "
                      "against re-initialised weights; table and figure"),
    "probe": Command("finercam.apps.probe_command",
                     "train the paper's linear probe on a frozen backbone for a data set (cub:ROOT, cars:ROOT, "
                     "...); the file loads as --model probe:FILE"),
    "app": Command("finercam.apps.app",
                   "a local web app: upload an image, choose model and method, explore gamma, references "
                   "and aggregation in the browser"),
}


def build_parser() -> argparse.ArgumentParser:
    """The ``finercam`` argument parser: one subcommand per entry of :data:`COMMANDS`.

    >>> args = build_parser().parse_args(["zeroshot", "--n", "4"])
    >>> args.command, args.n
    ('zeroshot', 4)
    >>> sorted(COMMANDS)
    ['app', 'demo', 'evaluate', 'explain', 'layers', 'probe', 'sanity', 'train', 'zeroshot']
    """
    parser = argparse.ArgumentParser(prog="finercam", description="Finer-CAM (CVPR 2025).")
    sub = parser.add_subparsers(dest="command", metavar="command")
    sub.required = True
    for name, command in COMMANDS.items():
        command.load().add_arguments(sub.add_parser(name, help=command.help, description=command.help))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``finercam <command> [options]`` (``argv``: the words after ``finercam``, default
    ``sys.argv[1:]``); returns the exit status.

    A :class:`~finercam.apps.common.UsageError` is reported as one line on stderr with its exit
    status (2); every other exception propagates with its traceback. The command sees the words
    it was started with as ``args.command_line`` (the reports show it).

    >>> main(["zeroshot", "--n", "0"])
    2
    """
    words = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(words)
    args.command_line = "finercam " + shlex.join(words)
    command = COMMANDS[args.command]
    if command.reuse_freed_memory:
        from ..evaluation.plan import keep_freed_memory

        keep_freed_memory()
    try:
        return command.load().run(args)
    except UsageError as exc:
        return print_usage_error(f"finercam {args.command}", exc)
