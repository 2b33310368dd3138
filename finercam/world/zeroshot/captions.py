"""Captions and prompts for the bird world, built from the class attributes.

A caption mentions a random subset of a class's parts, each by colour, shape or both
("a slender bird with a black wing and a long tail", "a red head", "a bird"). Each caption
carries the set of facts it states, so the trainer knows exactly which images it is true of
(:func:`consistent`), and the part prompts of the zero-shot study ("a black wing") come from the
same grammar.
"""
from __future__ import annotations

from typing import FrozenSet, List, Sequence, Tuple

import numpy as np

from ..datasets import birds

__all__ = ["vocabulary", "part_phrase", "random_caption", "consistent", "class_prompts",
           "attribute_prompt", "discriminative_attributes", "BIRD"]

Fact = Tuple[str, str, str]  # (part, "colour" | "shape", value)

#: The generic reference prompt of the paper's Fig. 2 ("red epaulets" against "bird").
BIRD = "a bird"

_TEMPLATE_WORDS = ("a", "an", "bird", "with", "and", "photo", "of", "the")


def vocabulary() -> List[str]:
    """Every word the tiny text encoder knows: template words, colours, parts, shapes, and every
    word of the data set's own class captions.

    >>> words = vocabulary()
    >>> words[:6], "wing" in words, len(words) == len(set(words))
    (['a', 'an', 'bird', 'with', 'and', 'photo'], True, True)
    """
    words = list(_TEMPLATE_WORDS) + list(birds.COLOUR_NAMES) + list(birds.PARTS)
    for part in birds.PARTS:
        words += list(birds.SHAPES[part])
    for c in range(birds.NUM_CLASSES):
        words += [w.strip(",.") for w in birds.caption(c).split()]
    return list(dict.fromkeys(w.lower() for w in words if w))


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def part_phrase(part: str, colour: str = "", shape: str = "") -> str:
    """``"a black wing"``, ``"a long tail"`` or ``"a black long tail"``.

    >>> part_phrase("tail", "black", "long"), part_phrase("eye", colour="orange")
    ('a black long tail', 'an orange eye')
    """
    return _article(" ".join(w for w in (colour, shape, part) if w))


def attribute_prompt(part: str, kind: str, value: str) -> str:
    """The prompt for one attribute: ``attribute_prompt("wing", "colour", "black") == "a black wing"``.

    >>> attribute_prompt("wing", "colour", "black")
    'a black wing'
    """
    if kind not in ("colour", "shape"):
        raise ValueError(f"kind must be 'colour' or 'shape', got {kind!r}")
    return part_phrase(part, **{kind: value})


def _join(phrases: Sequence[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def random_caption(c: int, rng: np.random.Generator) -> Tuple[str, FrozenSet[Fact]]:
    """A random caption of class ``c`` and the facts it states.

    >>> text, facts = random_caption(0, np.random.default_rng(0))
    >>> text
    'a tan breast, a red crest, a brown rounded wing and a small head'
    >>> len(facts), consistent(facts, 0)
    (5, True)
    """
    attrs = birds.CLASS_PARTS[c]
    k = int(rng.choice([0, 1, 1, 2, 2, 3, 4, len(birds.PARTS)]))
    parts = list(rng.permutation(list(birds.PARTS))[:k])
    facts = set()
    phrases = []
    for p in parts:
        colour, shape = attrs[p]
        has_shape = len(birds.SHAPES[p]) > 1
        style = int(rng.integers(0, 3)) if has_shape else 0
        words = {"colour": colour if style in (0, 2) else "", "shape": shape if style in (1, 2) else ""}
        if words["colour"]:
            facts.add((p, "colour", colour))
        if words["shape"]:
            facts.add((p, "shape", shape))
        phrases.append(part_phrase(p, **words))
    body_shape = attrs["body"][1]
    named_shape = rng.random() < 0.3
    subject = f"a {body_shape} bird" if named_shape else "a bird"
    if named_shape:
        facts.add(("body", "shape", body_shape))
    if not phrases:
        text = [subject, "a photo of " + subject, "bird" if not named_shape else subject][int(rng.integers(0, 3))]
    else:
        form = int(rng.integers(0, 3))
        if form == 0:
            text = f"{subject} with {_join(phrases)}"
        elif form == 1:
            text = f"a photo of {subject} with {_join(phrases)}"
        else:
            text = _join(phrases)
            facts.discard(("body", "shape", body_shape))
    return text, frozenset(facts)


def consistent(facts: FrozenSet[Fact], c: int) -> bool:
    """Whether every fact of a caption holds for class ``c``.

    >>> consistent(frozenset({("wing", "colour", "brown")}), 0), consistent(frozenset({("wing", "colour", "brown")}), 1)
    (True, False)
    """
    attrs = birds.CLASS_PARTS[c]
    return all(attrs[p][0 if kind == "colour" else 1] == value for p, kind, value in facts)


def class_prompts() -> List[str]:
    """One prompt per class: the data set's full caption of its attributes.

    >>> prompts = class_prompts()
    >>> len(prompts), prompts[0][:40]
    (16, 'a plump bird with a brown body, a tan br')
    """
    return [birds.caption(c) for c in range(birds.NUM_CLASSES)]


def discriminative_attributes(c: int, d: int, k: int = 3) -> List[Fact]:
    """Up to ``k`` attributes that class ``c`` has and class ``d`` lacks (Appendix A.2).

    The paper subtracts the attribute vectors of the two classes and keeps the k largest
    differences; with the world's binary attributes these are the attributes set for ``c`` and
    not for ``d`` (difference +1), in the order of :data:`birds.ATTRIBUTE_NAMES`.

    >>> discriminative_attributes(0, 1)          # rosy finch vs black-winged finch
    [('wing', 'colour', 'brown')]
    """
    diff = birds.ATTRIBUTES[c].astype(np.int64) - birds.ATTRIBUTES[d].astype(np.int64)
    order = np.argsort(-diff, kind="stable")
    out: List[Fact] = []
    for j in order[:k]:
        if diff[j] <= 0:
            break
        part, kind, value = birds.ATTRIBUTE_NAMES[j].split(":")
        out.append((part, kind, value))
    return out
