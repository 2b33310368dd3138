"""Reference classes: which similar classes the target is compared with (Sec. 3.2, App. A.1).

Rules, each a stable ranking of the non-target classes (ties go to the lower class id):

* ``"nearest_logit"``: ascending ``|y_j - y_c|``; when c is the top prediction these are the 2nd,
  3rd, ... predictions, the paper's choice (Table 2).
* ``"top_predicted"``: descending ``y_j``.
* ``"weight_similarity"``: descending cosine similarity ``S_cj = w_c . w_j / (|w_c| |w_j|)`` of the
  classifier's weight rows (Eq. 11).

>>> import numpy as np
>>> rank_classes(np.array([[0.0, 5.0, 4.0, 4.5]]), np.array([1]), "nearest_logit")
array([[3, 2, 0]])
"""
from __future__ import annotations

import numpy as np

__all__ = ["RULES", "logit_gaps", "rank_classes", "check_references", "pgc_ranks"]

RULES = ("nearest_logit", "top_predicted", "weight_similarity")


def logit_gaps(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(N, C) float64 distances :math:`|y^j - y^c|` of every logit to the target's, the key of
    the nearest-logit rankings (0 at the target itself).

    >>> logit_gaps(np.array([[0.0, 5.0, 4.0]]), np.array([1])).tolist()
    [[5.0, 0.0, 1.0]]
    """
    y = np.asarray(logits, dtype=np.float64)
    return np.abs(y - y[np.arange(y.shape[0]), targets][:, None])


def rank_classes(logits: np.ndarray, targets: np.ndarray, rule: str,
                 classifier_weight: np.ndarray | None = None) -> np.ndarray:
    """(N, C - 1) non-target class ids, most similar first, by ``rule`` (see the module doc).

    The keys, sorted stably (ties to the lower class id): ``"nearest_logit"``
    :math:`|y^j - y^c|` ascending; ``"top_predicted"`` :math:`y^j` descending;
    ``"weight_similarity"`` :math:`S_{cj} = w^c \\cdot w^j / (\\|w^c\\|_2 \\|w^j\\|_2)` descending
    (Eq. 11, rows of ``classifier_weight``).

    >>> y = np.array([[0.0, 5.0, 4.0, 4.5]])
    >>> rank_classes(y, np.array([1]), "top_predicted").tolist()
    [[3, 2, 0]]
    >>> w = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.1]])
    >>> rank_classes(y, np.array([0]), "weight_similarity", w).tolist()
    [[3, 2, 1]]
    """
    y = np.asarray(logits, dtype=np.float64)
    N, C = y.shape
    rows = np.arange(N)
    if rule == "nearest_logit":
        key = logit_gaps(y, targets)
    elif rule == "top_predicted":
        key = -y
    elif rule == "weight_similarity":
        if classifier_weight is None:
            raise ValueError("reference_rule='weight_similarity' needs the classifier's weight "
                             "(no nn.Linear with out_features == C found; pass classifier=)")
        w = np.asarray(classifier_weight, dtype=np.float64)
        unit = w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)
        key = -(unit[targets] @ unit.T)
    else:
        raise ValueError(f"reference_rule must be one of {RULES}, got {rule!r}")
    key = key.copy()
    key[rows, targets] = np.inf
    order = np.argsort(key, axis=1, kind="stable")
    return order[:, : C - 1]


def check_references(references, targets: np.ndarray, num_classes: int) -> np.ndarray:
    """Validate explicit references (one list per sample) and return them as (N, T) int64:
    ints, in ``[0, num_classes)``, no duplicates, not the sample's target, same count per sample.

    >>> check_references([[2, 3], [0, 3]], np.array([0, 1]), 4).tolist()
    [[2, 3], [0, 3]]
    """
    N = len(targets)
    if isinstance(references, np.ndarray) or hasattr(references, "tolist"):
        references = references.tolist()
    if not isinstance(references, (list, tuple)):
        raise TypeError(f"references must be one list of class ids per sample, got {type(references).__name__}")
    if len(references) != N:
        raise ValueError(f"references must hold one list of class ids per sample ({N}), got {len(references)}")
    rows = []
    for n, row in enumerate(references):
        if not isinstance(row, (list, tuple)):
            raise TypeError(f"references[{n}] must be a list of class ids, got {type(row).__name__}")
        if any(isinstance(r, (bool, np.bool_)) or not isinstance(r, (int, np.integer)) for r in row):
            raise TypeError(f"references[{n}] must hold ints, got {row!r}")
        rows.append([int(r) for r in row])
    lengths = {len(r) for r in rows}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError("references must give the same non-zero number of classes per sample, "
                         f"got lengths {sorted(lengths)}")
    for n, row in enumerate(rows):
        if any(r < 0 or r >= num_classes for r in row):
            raise ValueError(f"references[{n}] = {row} has a class id outside [0, {num_classes})")
        if len(set(row)) != len(row):
            raise ValueError(f"references[{n}] = {row} holds duplicates")
        if int(targets[n]) in row:
            raise ValueError(f"references[{n}] = {row} holds the target class {int(targets[n])}")
    return np.asarray(rows, dtype=np.int64)


def pgc_ranks(logits: np.ndarray, targets: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """pytorch-grad-cam's choice: ``order = argsort(|y - y_target|)``, main class = ``order[0]``,
    references = ``order[1 : count + 1]`` (stable sort here; the target is not excluded, so a tied
    class with a lower id becomes the main class, as there).

    >>> pgc_ranks(np.array([[1.0, 3.0, 3.0, 0.0]]), np.array([2]), 2)
    (array([1]), array([[2, 0]]))
    """
    order = np.argsort(logit_gaps(logits, targets), axis=1, kind="stable")
    return order[:, 0].astype(np.int64), order[:, 1: count + 1].astype(np.int64)
