"""The spot-the-difference bird world: parts, colours, shapes, families and species.

Every class is a bird built from the same eight parts.  A class is fully described by one colour
and one shape per part (CUB-200 style part -> colour/shape attributes); the renderer draws nothing
that is not in these attributes, so two classes look different exactly where their attributes
differ.

Four families of four species.  Species of a family share the body shape and most colours; each
family has a base species ``S0`` and three variants, each changing a different part (or pair of
parts) of the base::

    S0 vs S1 -> part X          S1 vs S2 -> X + Y
    S0 vs S2 -> part Y          S1 vs S3 -> X + Z
    S0 vs S3 -> parts Z         S2 vs S3 -> Y + Z

so comparing one image with each of its three siblings points at a different region (the paper's
Fig. 7).  Families differ in body shape, head size and most colours, which keeps the three nearest
classes of any species inside its family.

Example
-------
>>> from finercam.world.datasets import birds
>>> birds.CLASS_NAMES[1]
'black-winged finch'
>>> birds.differing_parts(0, 1)
('wing',)
>>> birds.caption(1)
'a plump bird with a brown body, a tan breast, a small red head, a short red crest, a black eye, a conical yellow beak, a rounded black wing and a forked brown tail'
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Sequence, Tuple, Union

import numpy as np

#: Parts in back-to-front drawing order (a later part hides an earlier one where they overlap).
PARTS: Tuple[str, ...] = ("tail", "body", "breast", "wing", "crest", "beak", "head", "eye")

#: Colour names and their RGB albedo in [0, 1].
COLOURS: Dict[str, Tuple[float, float, float]] = {
    "brown": (0.45, 0.28, 0.14),
    "tan": (0.84, 0.70, 0.50),
    "red": (0.80, 0.12, 0.10),
    "black": (0.09, 0.09, 0.10),
    "yellow": (0.95, 0.85, 0.15),
    "grey": (0.55, 0.55, 0.57),
    "olive": (0.45, 0.48, 0.16),
    "orange": (0.96, 0.50, 0.08),
    "blue": (0.15, 0.32, 0.82),
    "white": (0.94, 0.94, 0.92),
    "green": (0.12, 0.58, 0.22),
}
COLOUR_NAMES: Tuple[str, ...] = tuple(COLOURS)

#: Shape words per part; the renderer's geometry for each lives in ``render.py``.
SHAPES: Dict[str, Tuple[str, ...]] = {
    "tail": ("forked", "fan", "long", "short"),
    "body": ("plump", "slender", "long", "stocky"),
    "breast": ("patch",),
    "wing": ("rounded", "pointed"),
    "crest": ("short", "tall", "swept"),
    "beak": ("conical", "thin", "long", "hooked"),
    "head": ("small", "large"),
    "eye": ("round",),
}

Attrs = Dict[str, Tuple[str, str]]  # part -> (colour, shape)


def _species(base: Attrs, **changes: Tuple[str, str]) -> Attrs:
    out = dict(base)
    for part, value in changes.items():
        out[part] = value
    return out


_FINCH: Attrs = {
    "tail": ("brown", "forked"), "body": ("brown", "plump"), "breast": ("tan", "patch"),
    "wing": ("brown", "rounded"), "crest": ("red", "short"), "beak": ("yellow", "conical"),
    "head": ("red", "small"), "eye": ("black", "round"),
}
_WARBLER: Attrs = {
    "tail": ("olive", "fan"), "body": ("olive", "slender"), "breast": ("yellow", "patch"),
    "wing": ("olive", "pointed"), "crest": ("olive", "short"), "beak": ("black", "thin"),
    "head": ("olive", "small"), "eye": ("black", "round"),
}
_JAY: Attrs = {
    "tail": ("blue", "long"), "body": ("blue", "long"), "breast": ("white", "patch"),
    "wing": ("blue", "rounded"), "crest": ("blue", "tall"), "beak": ("black", "conical"),
    "head": ("blue", "large"), "eye": ("black", "round"),
}
_KINGFISHER: Attrs = {
    "tail": ("green", "short"), "body": ("green", "stocky"), "breast": ("orange", "patch"),
    "wing": ("green", "pointed"), "crest": ("green", "short"), "beak": ("black", "long"),
    "head": ("green", "large"), "eye": ("black", "round"),
}

#: Family names, in class order (four species each).
FAMILIES: Tuple[str, ...] = ("finch", "warbler", "jay", "kingfisher")

_CLASSES: List[Tuple[str, str, Attrs]] = [
    # finches: wing colour / beak colour / head + crest colour
    ("rosy finch", "finch", _FINCH),
    ("black-winged finch", "finch", _species(_FINCH, wing=("black", "rounded"))),
    ("grey-billed finch", "finch", _species(_FINCH, beak=("grey", "conical"))),
    ("golden-headed finch", "finch",
     _species(_FINCH, head=("yellow", "small"), crest=("yellow", "short"))),
    # warblers: breast colour / tail shape / head + crest colour
    ("olive warbler", "warbler", _WARBLER),
    ("orange-breasted warbler", "warbler", _species(_WARBLER, breast=("orange", "patch"))),
    ("long-tailed warbler", "warbler", _species(_WARBLER, tail=("olive", "long"))),
    ("black-capped warbler", "warbler",
     _species(_WARBLER, head=("black", "small"), crest=("black", "short"))),
    # jays: crest shape / wing colour / breast + tail colour
    ("blue jay", "jay", _JAY),
    ("swept-crested jay", "jay", _species(_JAY, crest=("blue", "swept"))),
    ("white-winged jay", "jay", _species(_JAY, wing=("white", "rounded"))),
    ("grey-breasted jay", "jay", _species(_JAY, breast=("grey", "patch"), tail=("black", "long"))),
    # kingfishers: beak shape / breast colour / wing + head colour
    ("green kingfisher", "kingfisher", _KINGFISHER),
    ("hook-billed kingfisher", "kingfisher", _species(_KINGFISHER, beak=("black", "hooked"))),
    ("white-breasted kingfisher", "kingfisher", _species(_KINGFISHER, breast=("white", "patch"))),
    ("blue-hooded kingfisher", "kingfisher",
     _species(_KINGFISHER, wing=("blue", "pointed"), head=("blue", "large"))),
]

NUM_CLASSES: int = len(_CLASSES)
CLASS_NAMES: Tuple[str, ...] = tuple(name for name, _, _ in _CLASSES)
#: Family index of each class.
CLASS_FAMILY: Tuple[int, ...] = tuple(FAMILIES.index(fam) for _, fam, _ in _CLASSES)
#: ``CLASS_PARTS[c][part] == (colour, shape)``.
CLASS_PARTS: Tuple[Attrs, ...] = tuple(attrs for _, _, attrs in _CLASSES)


def _attribute_names() -> Tuple[str, ...]:
    names = []
    for part in PARTS:
        names += [f"{part}:colour:{c}" for c in COLOUR_NAMES]
        names += [f"{part}:shape:{s}" for s in SHAPES[part]]
    return tuple(names)


#: Column names of :data:`ATTRIBUTES`, ``"part:colour:<name>"`` or ``"part:shape:<name>"``.
ATTRIBUTE_NAMES: Tuple[str, ...] = _attribute_names()


def _attribute_matrix() -> np.ndarray:
    index = {name: i for i, name in enumerate(ATTRIBUTE_NAMES)}
    out = np.zeros((NUM_CLASSES, len(ATTRIBUTE_NAMES)), dtype=np.uint8)
    for c, attrs in enumerate(CLASS_PARTS):
        for part, (colour, shape) in attrs.items():
            out[c, index[f"{part}:colour:{colour}"]] = 1
            out[c, index[f"{part}:shape:{shape}"]] = 1
    out.setflags(write=False)
    return out


#: Binary class-attribute matrix, shape ``(NUM_CLASSES, len(ATTRIBUTE_NAMES))``.
ATTRIBUTES: np.ndarray = _attribute_matrix()


def _check_class(value: object, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a class index (int), got {type(value).__name__}")
    if not 0 <= int(value) < NUM_CLASSES:
        raise ValueError(f"{name} must be in [0, {NUM_CLASSES}), got {value}")
    return int(value)


def siblings(c: int) -> Tuple[int, ...]:
    """The other species of class ``c``'s family.

    >>> siblings(4)
    (5, 6, 7)
    >>> 4 in siblings(5)
    True
    """
    c = _check_class(c, "c")
    return tuple(d for d in range(NUM_CLASSES) if d != c and CLASS_FAMILY[d] == CLASS_FAMILY[c])


def differing_parts(c: int, d: Union[int, Iterable[int]]) -> Tuple[str, ...]:
    """Parts whose colour or shape differs between class ``c`` and reference(s) ``d``.

    For several references the result is the union over them, in :data:`PARTS` order.

    >>> differing_parts(4, [5, 6])
    ('tail', 'breast')
    """
    c = _check_class(c, "c")
    refs = [d] if isinstance(d, (int, np.integer)) and not isinstance(d, (bool, np.bool_)) else list(d)  # type: ignore[arg-type]
    if not refs:
        raise ValueError("d must name at least one reference class")
    refs = [_check_class(r, "d") for r in refs]
    return tuple(p for p in PARTS if any(CLASS_PARTS[c][p] != CLASS_PARTS[r][p] for r in refs))


def describe(part: str, colour: str, shape: str) -> str:
    """Human-readable phrase for one part, e.g. ``"a rounded black wing"``.

    A shape is said only where the part has several (the body's shape is left out here).

    >>> describe("wing", "black", "rounded")
    'a rounded black wing'
    >>> describe("body", "orange", "plump")
    'an orange body'
    """
    if len(SHAPES[part]) == 1 or part == "body":  # one option says nothing; the body's is said first
        words = f"{colour} {part}"
    else:
        words = f"{shape} {colour} {part}"
    return ("an " if words[0] in "aeiou" else "a ") + words


#: Default order of parts in a caption: front to back of a reader's attention.
CAPTION_ORDER: Tuple[str, ...] = ("body", "breast", "head", "crest", "eye", "beak", "wing", "tail")


def caption(c: int, parts: Sequence[str] = CAPTION_ORDER) -> str:
    """A caption of class ``c`` built from its attributes (for image-text models).

    ``parts`` chooses which parts to mention and in which order (default :data:`CAPTION_ORDER`).
    """
    c = _check_class(c, "c")
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise ValueError(f"parts has unknown part names {unknown}; known: {list(PARTS)}")
    attrs = CLASS_PARTS[c]
    phrases = [describe(p, *attrs[p]) for p in parts]
    body_shape = attrs["body"][1]
    head = f"a {body_shape} bird with "
    if len(phrases) == 1:
        return head + phrases[0]
    return head + ", ".join(phrases[:-1]) + " and " + phrases[-1]
