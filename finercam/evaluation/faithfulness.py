"""The faithfulness examination's choices on a data set with class attributes (App. A.2).

CUB gives, per class, the percentage of its images showing each of 312 attributes
(``class_attribute_labels_continuous.txt``). For an image of class ``c`` whose most similar class
(for the classifier) is ``d``, the paper subtracts the two attribute vectors and keeps the
``k = 3`` attributes with the largest difference :math:`A_c - A_d` (only positive ones: traits
``c`` shows more than ``d``); each becomes a prompt built from the attribute's name, which a
zero-shot model explains against "a bird" to compare with the classifier's Finer map.

>>> import numpy as np
>>> names = ("has_wing_color::blue", "has_bill_shape::curved_(up_or_down)", "has_size::small_(5_-_9_in)")
>>> A = np.array([[90.0, 10.0, 50.0], [5.0, 30.0, 50.0]])
>>> [names[j] for j in discriminative_attributes(A, 0, 1)]
['has_wing_color::blue']
>>> [attribute_prompt(n) for n in names]
['a blue wing', 'a curved bill', 'a small bird']
"""
from __future__ import annotations

import re
from typing import List

import numpy as np

__all__ = ["BIRD_PROMPT", "attribute_prompt", "discriminative_attributes"]

#: The general category the attribute prompts are compared with.
BIRD_PROMPT = "a bird"
#: CUB's attribute kinds whose value describes the part itself ("a blue wing").
_ADJECTIVE_KINDS = ("color", "colour", "shape", "pattern")


def _article(phrase: str) -> str:
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase


def attribute_prompt(name: str) -> str:
    """A prompt from a CUB attribute name ``has_<part>_<kind>::<value>``: ``"a <value> <part>"``
    for colours, shapes and patterns, ``"a <value> bird"`` for the bird's size, shape and primary
    colour, else ``"a <part> <value>"``; parenthesised notes and underscores dropped.

    >>> attribute_prompt("has_upper_tail_color::iridescent"), attribute_prompt("has_bill_length::shorter_than_head")
    ('an iridescent upper tail', 'a bill shorter than head')
    """
    if not isinstance(name, str) or "::" not in name:
        raise ValueError(f"an attribute name must look like has_<part>_<kind>::<value>, got {name!r}")
    subject, value = name.split("::", 1)
    value = " ".join(re.sub(r"\(.*?\)", " ", value).replace("_", " ").split())
    words = subject.removeprefix("has_").split("_")
    kind = words[-1] if len(words) > 1 else ""
    part = " ".join(words[:-1]) if kind else " ".join(words)
    if part in ("size", "shape", "primary") or subject in ("has_size", "has_shape"):
        return _article(f"{value} bird")
    if kind in _ADJECTIVE_KINDS:
        return _article(f"{value} {part}")
    return _article(f"{part} {kind} {value}".replace(" length ", " ").strip()) if kind else _article(f"{part} {value}")


def discriminative_attributes(class_attributes: np.ndarray, c: int, d: int, k: int = 3) -> List[int]:
    """The indices of the up-to-``k`` attributes with the largest positive difference
    :math:`A_{c,j} - A_{d,j}`, largest first (ties: the lower index first).

    >>> discriminative_attributes(np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]), 0, 1, k=5)
    [0, 2]
    """
    a = np.asarray(class_attributes, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"class_attributes must be (classes, attributes), got shape {a.shape}")
    diff = a[int(c)] - a[int(d)]
    order = np.argsort(-diff, kind="stable")[: int(k)]
    return [int(j) for j in order if diff[j] > 0]
