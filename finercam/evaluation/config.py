"""What a run computes: its arguments, checked once, and recorded in the resume journal."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from .. import metrics
from .._checks import check_fraction, check_int
from ..explanation import check_aggregate, check_gamma
from ..methods import METHODS
from ..references import RULES
from .scoring import Setting, settings

__all__ = ["RunConfig"]


@dataclass
class RunConfig:
    """What a run computes. Checked when built, before the model is called (a bad value raises
    naming its argument: the method names and the reference rule included) and recorded as the header of every per-image file: a resumed run must match it.

    >>> cfg = RunConfig(["gradcam"], True, 0.6, 3, "nearest_logit", "mean", [], [2], [],
    ...                 [0.05], 4, 0.0, "label", 4, 10)
    >>> [s.name for s in cfg.settings()], list(cfg.batch_indices(2))
    (['Grad-CAM', 'Grad-CAM + Finer', 'Grad-CAM + Finer ref=2'], [8, 9])
    """

    methods: Any               # None: the default methods, chosen at the first batch
    finer: bool
    gamma: float
    num_references: int
    reference_rule: str
    aggregate: str
    gammas: list
    reference_ranks: list
    aggregations: list
    fractions: list
    steps: int
    baseline: Any
    target: str
    batch_size: int
    n_images: int
    road_fractions: list = field(default_factory=list)  # ROAD columns at these fractions (none: off)
    insertion_steps: int = 0    # the insertion AUC column with these steps (0: off)

    def __post_init__(self) -> None:
        if self.methods is not None:
            self.methods = list(self.methods)
            if not self.methods:
                raise ValueError("methods must name at least one CAM method")
            unknown = [m for m in self.methods if m not in METHODS]
            if unknown:
                raise ValueError(f"methods must be among {', '.join(METHODS)}, got {unknown[0]!r}")
        if self.reference_rule not in RULES:
            raise ValueError(f"reference_rule must be one of {', '.join(RULES)}, got {self.reference_rule!r}")
        if self.target not in ("label", "predicted"):
            raise ValueError(f'target must be "label" or "predicted", got {self.target!r}')
        self.finer = bool(self.finer)
        self.fractions = [check_fraction(f, "fractions") for f in self.fractions]
        self.aggregations = [check_aggregate(a) for a in self.aggregations]
        if isinstance(self.baseline, (str, bool, np.bool_, int, float)):  # arrays: per batch
            metrics.baseline_values(self.baseline, np.zeros((1, 1, 1, 1), np.float32))
        self.steps = check_int(self.steps, "steps")
        self.batch_size = check_int(self.batch_size, "batch_size")
        self.reference_ranks = [check_int(r, "reference_ranks") for r in self.reference_ranks]
        self.gamma = check_gamma(self.gamma)
        self.gammas = [check_gamma(g) for g in self.gammas]
        self.num_references = check_int(self.num_references, "num_references")
        self.road_fractions = [check_fraction(f, "road_fractions") for f in self.road_fractions]
        if self.insertion_steps:
            self.insertion_steps = check_int(self.insertion_steps, "insertion_steps")

    def record(self) -> dict:
        """The configuration as JSON stores it (an array baseline is recorded as "custom")."""
        rec = asdict(replace(self, baseline=0.0))
        rec["baseline"] = self.baseline if isinstance(self.baseline, (str, int, float)) else "custom"
        return json.loads(json.dumps(rec))

    def settings(self) -> list[Setting]:
        """The rows of the run's table."""
        return settings(self.methods, finer=self.finer, gammas=self.gammas,
                        reference_ranks=self.reference_ranks, aggregations=self.aggregations)

    def rows_per_method(self) -> int:
        return 1 + self.finer + len(self.gammas) + len(self.reference_ranks) + len(self.aggregations)

    def batch_indices(self, b: int) -> range:
        """The data set indices of batch ``b`` of the fixed grid."""
        return range(b * self.batch_size, min(self.n_images, (b + 1) * self.batch_size))

    def n_batches(self) -> int:
        return (self.n_images + self.batch_size - 1) // self.batch_size
