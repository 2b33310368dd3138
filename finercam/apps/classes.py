"""Classes by name: the names a model carries or ``--labels FILE`` gives, and classes given on
the command line as names or ids.

* :func:`class_names_of` / :func:`num_classes_of`: what a model says about its outputs, without
  calling it.
* :func:`read_labels` reads ``--labels FILE`` (one name per line) and :func:`check_labels` refuses
  a count that differs from the model's classes, before any model call.
* :func:`resolve_class` / :func:`resolve_classes` read ``--target`` / ``--references`` given as
  names or ids; :func:`name_of` writes one back (``"blue jay (8)"``).

Bad input raises :class:`~finercam.apps.common.UsageError` with one line naming the option.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Tuple

from ..layers import find_classifier
from .common import UsageError

__all__ = ["check_labels", "class_names_of", "name_of", "num_classes_of", "read_labels", "resolve_class",
           "resolve_classes", "short_name"]


def class_names_of(model) -> Optional[Tuple[str, ...]]:
    """The class names a model carries: ``model.class_names``, or a Hugging Face-style
    ``model.config.id2label`` (keys ids, as ints or strings); None if it carries none.

    >>> from types import SimpleNamespace
    >>> class_names_of(SimpleNamespace(config=SimpleNamespace(id2label={"1": "dog", "0": "cat"})))
    ('cat', 'dog')
    """
    names = getattr(model, "class_names", None)
    if names is not None:
        return tuple(str(n) for n in names)
    id2label = getattr(getattr(model, "config", None), "id2label", None)
    if isinstance(id2label, dict) and id2label:
        try:
            by_id = {int(k): str(v) for k, v in id2label.items()}
        except (TypeError, ValueError):
            return None
        if sorted(by_id) == list(range(len(by_id))):
            return tuple(by_id[i] for i in range(len(by_id)))
    return None


def num_classes_of(model) -> Optional[int]:
    """The number of outputs, known without calling the model: its class names, a Hugging Face
    ``config.num_labels``, else the ``out_features`` of its last ``nn.Linear``; None if unknown.

    >>> from torch import nn
    >>> num_classes_of(nn.Sequential(nn.Flatten(), nn.Linear(12, 7)))
    7
    """
    names = class_names_of(model)
    if names is not None:
        return len(names)
    num_labels = getattr(getattr(model, "config", None), "num_labels", None)
    if isinstance(num_labels, int) and num_labels > 0:
        return num_labels
    from torch import nn

    head = find_classifier(model) if isinstance(model, nn.Module) else None
    return None if head is None else int(head.out_features)


def read_labels(path) -> Tuple[str, ...]:
    """``--labels FILE``: one class name per line, in output order (UTF-8; surrounding blanks
    stripped; a final empty line ignored; an empty line inside is an error).

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "labels.txt"
    >>> _ = p.write_text("cat\\n dog \\n", encoding="utf-8")
    >>> read_labels(p)
    ('cat', 'dog')
    """
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--labels: no such file {str(path)!r}")
    try:
        lines = p.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--labels: cannot read {str(path)!r}: {exc}") from None
    while lines and not lines[-1].strip():
        lines.pop()
    names = tuple(line.strip() for line in lines)
    if not names:
        raise UsageError(f"--labels: {str(path)!r} holds no class names")
    blank = [i + 1 for i, n in enumerate(names) if not n]
    if blank:
        raise UsageError(f"--labels: {str(path)!r} has an empty line (line {blank[0]})")
    return names


def check_labels(names: Sequence[str], num_classes: Optional[int], source: str = "--labels") -> None:
    """A UsageError when ``len(names)`` differs from the model's number of classes.

    >>> check_labels(("cat", "dog"), 3)
    Traceback (most recent call last):
    ...
    finercam.apps.common.UsageError: --labels holds 2 names but the model has 3 classes
    """
    if num_classes is not None and len(names) != num_classes:
        raise UsageError(f"{source} holds {len(names)} names but the model has {num_classes} classes")


def resolve_class(value, class_names: Optional[Sequence[str]], num_classes: Optional[int],
                  option: str) -> int:
    """A class given as an id (``"17"``) or a name (``"jay"``; case-insensitive; a unique prefix
    or substring also does) -> its id.

    >>> names = ("tench", "goldfish", "great white shark", "tiger shark")
    >>> resolve_class("GOLDFISH", names, 4, "--target"), resolve_class("3", names, 4, "--target")
    (1, 3)
    >>> resolve_class("shark", names, 4, "--target")
    Traceback (most recent call last):
    ...
    finercam.apps.common.UsageError: --target: 'shark' matches several classes: great white shark (2), tiger shark (3)
    """
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        k = int(text)
        if k < 0 or (num_classes is not None and k >= num_classes):
            raise UsageError(f"{option}: class id {k} is out of range [0, {num_classes})")
        return k
    if not class_names:
        raise UsageError(f"{option}: {text!r} is not a class id, and the model has no class names "
                         "(give --labels FILE)")
    low = [n.lower() for n in class_names]
    for match in (lambda n: n == text.lower(), lambda n: n.startswith(text.lower()),
                  lambda n: text.lower() in n):
        hits = [i for i, n in enumerate(low) if match(n)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            shown = ", ".join(f"{class_names[i]} ({i})" for i in hits[:6])
            more = f" and {len(hits) - 6} more" if len(hits) > 6 else ""
            raise UsageError(f"{option}: {text!r} matches several classes: {shown}{more}")
    raise UsageError(f"{option}: no class is named {text!r}")


def resolve_classes(value: str, class_names, num_classes, option: str) -> list:
    """A comma-separated list of names or ids (:func:`resolve_class` each) -> distinct ids.

    >>> resolve_classes("goldfish, 0", ("tench", "goldfish"), 2, "--references")
    [1, 0]
    """
    parts = [s for s in str(value).split(",") if s.strip()]
    if not parts:
        raise UsageError(f"{option}: give at least one class name or id")
    ids = [resolve_class(s, class_names, num_classes, option) for s in parts]
    if len(set(ids)) != len(ids):
        raise UsageError(f"{option}: a class is named twice in {value!r}")
    return ids


def name_of(names, k: int) -> str:
    """``"jay (17)"``, or ``"class 17"`` without names.

    >>> name_of(("cat", "dog"), 1), name_of(None, 1)
    ('dog (1)', 'class 1')
    """
    if names is not None and 0 <= k < len(names):
        return f"{names[k]} ({k})"
    return f"class {k}"


def short_name(names, k: int) -> str:
    """``"jay"``, or ``"class 17"`` without names.

    >>> short_name(("cat", "dog"), 1), short_name(None, 1)
    ('dog', 'class 1')
    """
    return names[k] if names is not None and 0 <= k < len(names) else f"class {k}"
