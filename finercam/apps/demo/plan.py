"""What the demo covers: its models, methods and settings, and how many images each part uses."""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
import torch

from ...evaluation.scoring import Setting
from ...layers import find_classifier
from ...methods import METHOD_LABELS
from ...world import datasets, models
from ..common import UsageError, check_output_folder, one_line_errors

METHODS = tuple((key, METHOD_LABELS[key]) for key in ("gradcam", "layercam", "scorecam"))
MODELS = (("cnn", "CNN"), ("vit", "ViT"), ("probe", "Probe"))
#: The side at which each model's test images are rendered (the probe was trained on 224 x 224
#: renders; the same birds rendered at 96 and upsampled put it at chance).
RENDER_SIZES = {"cnn": 96, "vit": 96, "probe": 224}
#: Why the probe has no Score-CAM rows (said in the page and in its tables).
NO_SCORECAM = "no Score-CAM: its 1,280 channels would cost 1,280 forwards at 224 x 224 per image"
GAMMA = 0.6
NUM_REFERENCES = 3
GAMMAS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
#: The Finer settings: (key in results.json, short label, title). "nearest": compared with the
#: nearest-logit class only (T = 1); "aggregated": with the NUM_REFERENCES nearest, aggregated.
SETTINGS = (("nearest", "T = 1", "single reference (T = 1, nearest logit)"),
            ("aggregated", f"T = {NUM_REFERENCES}",
             f"{NUM_REFERENCES} references (T = {NUM_REFERENCES}, aggregated, the paper's default)"))
#: The map sets of a run: the baseline and each Finer setting, as rows of finercam.evaluation
#: ("rank" 1: the nearest-logit class alone; {}: the configured references, aggregated).
MAP_KINDS = ("base",) + tuple(key for key, _, _ in SETTINGS)
MAP_SETTINGS = {"base": None, "nearest": {"rank": 1}, "aggregated": {}}
#: The keys of finercam.evaluation.tables' columns the demo's tables show.
COLUMN_KEYS = ("deletion", "rd@0.05", "rd@0.1", "energy", "disc_energy", "disc_pointing")


def map_setting(kind: str, method: str) -> Setting:
    """The :class:`~finercam.evaluation.scoring.Setting` of one map kind of a method."""
    return Setting(kind, method, MAP_SETTINGS[kind])


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``finercam demo`` options to ``p`` (a bad one is reported as one line, exit 2).

    >>> p = argparse.ArgumentParser(prog="finercam demo")
    >>> add_arguments(p)
    >>> args = p.parse_args(["--quick", "--out", "report"])
    >>> args.quick, args.out, args.images, args.seed
    (True, 'report', None, 0)
    """
    one_line_errors(p)
    p.add_argument("--out", default="out/demo", metavar="DIR",
                   help="report folder (default: out/demo)")
    p.add_argument("--quick", action="store_true",
                   help="a few images, every model, every figure (the CI mode)")
    p.add_argument("--images", type=int, default=None, metavar="N",
                   help="test images for the table (default 200; 16 with --quick)")
    p.add_argument("--score-images", type=int, default=None, metavar="M",
                   help="the first M of them for Score-CAM, which costs one forward per channel "
                        "(default 64; 8 with --quick)")
    p.add_argument("--seed", type=int, default=0, help="seed of the test images (default 0)")
    p.add_argument("--steps", type=int, default=None,
                   help="deletion-curve steps (default 10; 5 with --quick)")
    p.add_argument("--deletion-images", type=int, default=None, metavar="D",
                   help="the first D images get deletion curves, which cost one forward per "
                        "step (default 64; 8 with --quick)")
    p.add_argument("--probe-images", type=int, default=None, metavar="P",
                   help="the first P images, rendered at 224 x 224, for the linear probe "
                        "(default 64; 16 with --quick)")
    p.add_argument("--probe-deletion-images", type=int, default=None, metavar="Q",
                   help="the first Q of those with the probe's deletion curves (default 16; 8 "
                        "with --quick)")


@dataclass
class Model:
    """One embedded model and the share of the run it covers (prefixes of the test images)."""

    key: str
    label: str
    net: torch.nn.Module
    layer: str
    size: int               # the side its test images are rendered at
    images: int             # the first ``images`` test images are explained
    score_images: int       # the first of them with Score-CAM (0: no Score-CAM)
    deletion_images: int    # the first of them with deletion curves

    @property
    def methods(self) -> tuple:
        """The (key, label) of the base methods this model is explained with."""
        return tuple(m for m in METHODS if m[0] != "scorecam" or self.score_images)

    @property
    def counts(self) -> dict:
        """The prefixes, as recorded in results.json and written in the captions."""
        return {"images": self.images, "score_images": self.score_images,
                "deletion_images": self.deletion_images, "size": self.size}

    def count(self, method: str) -> int:
        """The images a method explains (Score-CAM: a prefix, one forward per channel each)."""
        return self.score_images if method == "scorecam" else self.images


@dataclass
class Plan:
    """How many images each part of the demo covers, checked against each other."""

    images: int            # the table's test images
    score_images: int      # the first of them explained with Score-CAM
    deletion_images: int   # the first of them with deletion curves
    steps: int             # deletion-curve steps
    probe_images: int      # the first of them explained with the probe (rendered at 224)
    probe_deletion_images: int  # the first of those with the probe's deletion curves

    @classmethod
    def from_args(cls, args) -> "Plan":
        quick = bool(args.quick)

        def chosen(value, quick_default, full_default):
            return value if value is not None else (quick_default if quick else full_default)

        plan = cls(chosen(args.images, 16, 200), chosen(args.score_images, 8, 64),
                   chosen(args.deletion_images, 8, 64), chosen(args.steps, 5, 10),
                   chosen(getattr(args, "probe_images", None), 16, 64),
                   chosen(getattr(args, "probe_deletion_images", None), 8, 16))
        plan.check()
        return plan

    def check(self) -> None:
        """Each count within the one it is a prefix of (a
        :class:`~finercam.apps.common.UsageError` naming the option).

        >>> Plan(16, 8, 8, 1, 16, 8).check()
        Traceback (most recent call last):
        ...
        finercam.apps.common.UsageError: --steps must be >= 2, got 1
        """
        if self.images < 16:
            raise UsageError(f"--images must be >= 16 (one image per class), got {self.images}")
        _within("--score-images", self.score_images, "--images", self.images)
        _within("--deletion-images", self.deletion_images, "--images", self.images)
        if self.steps < 2:
            raise UsageError(f"--steps must be >= 2, got {self.steps}")
        _within("--probe-images", self.probe_images, "--images", self.images)
        _within("--probe-deletion-images", self.probe_deletion_images, "--probe-images",
                self.probe_images)

    def meta(self) -> dict:
        """The counts as results.json records them."""
        return {"images": self.images, "score_images": self.score_images,
                "deletion_images": self.deletion_images, "steps": self.steps,
                "probe_images": self.probe_images,
                "probe_deletion_images": self.probe_deletion_images}


def _within(option: str, value: int, outer: str, limit: int) -> None:
    if not 1 <= value <= limit:
        raise UsageError(f"{option} must be in [1, {outer}], got {value}")


def check_arguments(args: argparse.Namespace) -> Plan:
    """Every option checked before anything is computed or written (a
    :class:`~finercam.apps.common.UsageError` naming the first bad one); returns the plan."""
    plan = Plan.from_args(args)
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    check_output_folder(args.out)
    return plan


def load_models(plan: Plan) -> list[Model]:
    """The embedded models in eval mode, each with its render size and image prefixes."""
    out = []
    for key, label in MODELS:
        net = models.load(key)
        net.eval()
        if key == "probe":
            counts = (plan.probe_images, 0, plan.probe_deletion_images)
        else:
            counts = (plan.images, plan.score_images, plan.deletion_images)
        layer = str(net.default_target_layer)
        out.append(Model(key, label, net, layer, RENDER_SIZES[key], *counts))
    return out


def render(models: list[Model], seed: int) -> dict:
    """Render size -> (x, Batch) of the first test images, as many as the models at that size
    need. The labels depend on the index only, so every size shows the same species in order."""
    data = {}
    for size in sorted({m.size for m in models}):
        n = max(m.images for m in models if m.size == size)
        batch = datasets.generate(n, seed=seed, split="test", size=size)
        data[size] = (torch.from_numpy(batch.images), batch)
    return data


def head(batch, k: int):
    """The first k images of a Batch."""
    return datasets.Batch(batch.images[:k], batch.labels[:k], batch.boxes[:k], batch.parts[:k])


def model_inputs(model: Model, data: dict):
    """(x, Batch) of the test images a model covers, at its render size."""
    x, batch = data[model.size]
    return x[:model.images], head(batch, model.images)


def rendered(model: Model) -> str:
    """How a model's images differ from the others' in a caption ('' at the default 96)."""
    return "" if model.size == 96 else f"rendered at {model.size} x {model.size} "


def classifier_weights(net) -> np.ndarray:
    """The weights of the model's classifier head (:func:`finercam.layers.find_classifier`),
    float64 (Fig. 1 left)."""
    head = find_classifier(net)
    if head is None:
        raise ValueError("model has no nn.Linear classifier")
    return head.weight.detach().cpu().numpy().astype(np.float64)
