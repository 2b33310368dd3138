"""``finercam zeroshot``: the prompt-localisation study and (``--faithfulness``) the faithfulness
examination on the bird world, printed as tables and optionally written as JSON."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict

from .common import UsageError, usage_errors
from .inputs import import_object

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``finercam zeroshot`` options to ``p``.

    >>> p = argparse.ArgumentParser(prog="finercam zeroshot")
    >>> add_arguments(p)
    >>> args = p.parse_args(["--n", "16", "--faithfulness"])
    >>> args.n, args.faithfulness, args.classifier, args.gamma
    (16, True, 'cnn', 0.6)
    """
    p.add_argument("--n", type=int, default=128, help="test images (default 128)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--method", default="gradcam")
    p.add_argument("--gamma", type=float, default=0.6)
    p.add_argument("--faithfulness", action="store_true",
                   help="also run the faithfulness examination (Sec. 4.3, App. A.2) of a classifier")
    p.add_argument("--classifier", default="cnn",
                   help="for --faithfulness: one of our models (cnn, vit) or 'package.module:factory'")
    p.add_argument("--layer", default=None, help="the classifier's target layer (default: its own)")
    p.add_argument("--weights", default=None, help="dual-encoder weights (default: the shipped ones)")
    p.add_argument("--data", default=None, metavar="cub:ROOT[:SPLIT]",
                   help="with --faithfulness: examine on CUB (its class attributes; --classifier probe:FILE) "
                        "instead of the bird world")
    p.add_argument("--clip", default=None, metavar="PKG:FACTORY",
                   help="with --data: a factory f(prompts) -> ZeroShotFinerCAM (default: the embedded dual encoder)")
    p.add_argument("--out", default=None, help="write the numbers as JSON to this file")


def _classifier(spec: str):
    """``--classifier``: (model, its default target layer or None)."""
    from ..world import models

    if ":" not in spec:
        if spec not in models.MODELS:
            raise UsageError(f"--classifier must be one of {', '.join(models.MODELS)} or "
                             f"package.module:factory, got {spec!r}")
        model = models.load(spec)
        return model, model.default_target_layer
    return import_object(spec, "--classifier")(), None


def _without_examples(d: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in d.items() if k not in ("examples", "example")}


def run(args: argparse.Namespace) -> int:
    """Print the prompt-localisation table (and, with ``--faithfulness``, the faithfulness
    examination); write the numbers as JSON to ``args.out`` if given; returns 0.

    The localisation score of a prompt is the share of the map's energy inside the part's
    mask :math:`M`, :math:`\\sum_{x \\in M} L(x) / \\sum_x L(x)`, averaged over ``args.n``
    test images. A bad count fails before any work:

    >>> p = argparse.ArgumentParser(prog="finercam zeroshot")
    >>> add_arguments(p)
    >>> run(p.parse_args(["--n", "0"]))
    Traceback (most recent call last):
    ...
    finercam.apps.common.UsageError: --n must be >= 1, got 0
    """
    from ..explanation import check_gamma
    from ..methods import METHODS
    from ..world.zeroshot.dual_encoder import load_dual_encoder
    from ..world.zeroshot.study import faithfulness_study, prompt_localisation

    if args.n < 1:
        raise UsageError(f"--n must be >= 1, got {args.n}")
    if args.method not in METHODS:
        raise UsageError(f"--method must be one of {', '.join(METHODS)}, got {args.method!r}")
    with usage_errors():
        check_gamma(args.gamma)
    if args.weights is not None and not Path(args.weights).is_file():
        raise UsageError(f"--weights: no such file {args.weights!r}")
    if getattr(args, "data", None):
        return _run_on_data(args)
    if args.faithfulness:  # a bad --classifier fails before any work
        clf, layer = _classifier(args.classifier)
        layer = args.layer or layer
    model = load_dual_encoder(args.weights)
    loc = prompt_localisation(model, n=args.n, seed=args.seed, gamma=args.gamma, method=args.method)
    print(f"energy share inside the part's mask, {args.n} test images, {args.method}, gamma {args.gamma}")
    versus = 'vs "a bird"'
    print(f"{'part':8} {'prompt alone':>13} {versus:>12} {'mask area':>10} {'count':>6}")
    for part, s in list(loc["parts"].items()) + [("all", loc["all"])]:
        print(f"{part:8} {s['alone']:13.3f} {s['vs_bird']:12.3f} {s['area']:10.3f} {s['count']:6d}")
    out: Dict[str, Any] = {"prompt_localisation": _without_examples(loc)}
    if args.faithfulness:
        f = faithfulness_study(clf, layer, model, n=args.n, seed=args.seed, method=args.method, gamma=args.gamma)
        print(f"\nfaithfulness ({f['images']} images; most similar class a sibling for "
              f"{100 * f['sibling_share']:.0f}%): classifier Finer map vs zero-shot attribute maps")
        for name, val in f["attributes"].items():
            print(f"  {name:22} {val:.3f}")
        print(f"  control (body colour)  correlation {f['control_body']['correlation']:.3f}, "
              f"top-10% overlap {f['control_body']['overlap']:.3f}")
        print(f"  energy in the discriminative region: classifier {f['region_share']['classifier']:.3f}, "
              f"zero-shot {f['region_share']['zero_shot']:.3f}")
        out["faithfulness"] = _without_examples(f)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=2))
        print(f"wrote {args.out}")
    return 0


def _run_on_data(args: argparse.Namespace) -> int:
    """``--faithfulness --data cub:ROOT``: the examination on CUB (:mod:`.faithfulness_data`)."""
    from .faithfulness_data import cub_faithfulness

    if not args.faithfulness:
        raise UsageError("--data goes with --faithfulness (the prompt study needs the bird world's part masks)")
    f = cub_faithfulness(args.data, args.classifier, args.layer, n=args.n, method=args.method, gamma=args.gamma,
                         clip=args.clip, weights=args.weights)
    print(f"faithfulness on {args.data} ({f['images']} images, {f['zero_shot']}): the classifier's Finer map "
          "vs the zero-shot maps of the top-3 attributes against its most similar class")
    for name, val in f["attributes"].items():
        print(f"  {name:22} {val:.3f}")
    print(f"  e.g. {f['example']['pair'][0]} vs {f['example']['pair'][1]}: {'; '.join(f['example']['prompts'])}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"faithfulness": f}, indent=2))
        print(f"wrote {args.out}")
    return 0
