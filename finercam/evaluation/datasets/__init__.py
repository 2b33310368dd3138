"""Readers of the paper's five data sets in their published formats (Sec. 4.1, App. A.3).

Each is a torch ``Dataset`` whose items are ``(image, label, info)`` with the box, part points or
trait masks the data set has, carried through the preprocessing (:mod:`.common`):

| spec | reader | splits | annotations |
|---|---|---|---|
| ``cub`` | :class:`~.cub.CUB` (CUB-200-2011) | train, test | box, 15 part points |
| ``cars`` | :class:`~.cars.Cars` (Stanford Cars) | train, test | box |
| ``aircraft`` | :class:`~.aircraft.Aircraft` (FGVC-Aircraft) | train, val, test, trainval | box |
| ``birds525`` | :class:`~.birds525.Birds525` | train, val, test | none |
| ``fishvista`` | :class:`~.fishvista.FishVista` | train, val, test, seg_train, seg_val, seg_test | trait masks |

:func:`open_dataset` reads a spec ``NAME:ROOT[:SPLIT]`` (default split ``test``).

>>> parse_spec("cub:/data/CUB_200_2011:train")
('cub', '/data/CUB_200_2011', 'train')
>>> parse_spec("aircraft:/data/fgvc-aircraft-2013b")
('aircraft', '/data/fgvc-aircraft-2013b', 'test')
"""
from __future__ import annotations

from functools import partial
from types import SimpleNamespace
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Type

from . import aircraft, birds525, cars, cub, fishvista
from .aircraft import Aircraft
from .birds525 import Birds525
from .cars import Cars
from .common import DataFormatError, OfficialDataset, View, carry_box, carry_points, center_crop_view, resize_view
from .cub import CUB, class_attributes
from .fishvista import FishVista

__all__ = ["Aircraft", "Birds525", "CUB", "Cars", "DataFormatError", "FishVista", "OfficialDataset",
           "READERS", "SPLITS", "View", "carry_box", "carry_points", "center_crop_view", "class_attributes",
           "RUNNER_READERS", "for_runner", "is_spec", "open_dataset", "parse_spec", "resize_view"]

#: spec name -> reader class.
READERS: Dict[str, Type[OfficialDataset]] = {"cub": CUB, "cars": Cars, "aircraft": Aircraft,
                                            "birds525": Birds525, "fishvista": FishVista}
#: spec name -> the splits it accepts.
SPLITS: Dict[str, Tuple[str, ...]] = {"cub": cub.SPLITS, "cars": cars.SPLITS, "aircraft": aircraft.SPLITS,
                                      "birds525": birds525.SPLITS, "fishvista": fishvista.SPLITS}


def is_spec(value: Any) -> bool:
    """Whether ``value`` names one of the readers (``cub:...``).

    >>> is_spec("cub:/data/cub"), is_spec("/data/folder"), is_spec("pkg.mod:factory")
    (True, False, False)
    """
    return isinstance(value, str) and value.split(":", 1)[0] in READERS and ":" in value


def parse_spec(spec: str) -> Tuple[str, str, str]:
    """``NAME:ROOT[:SPLIT]`` -> ``(name, root, split)``; the split is taken off the end only when
    it is one of the reader's splits (so a root may hold colons)."""
    if not isinstance(spec, str):
        raise TypeError(f"spec must be a str, got {type(spec).__name__}")
    name, _, rest = spec.partition(":")
    if name not in READERS or not rest:
        raise ValueError(f"data set spec must look like NAME:ROOT[:SPLIT] with NAME one of "
                         f"{', '.join(READERS)}, got {spec!r}")
    head, _, tail = rest.rpartition(":")
    if head and tail in SPLITS[name]:
        return name, head, tail
    if head and tail and "/" not in tail and "\\" not in tail:
        raise ValueError(f"{name}: unknown split {tail!r}; one of {', '.join(SPLITS[name])}")
    return name, rest, "test"


def open_dataset(spec: str, view: Optional[View] = None,
                 unreadable: Optional[Callable[[str, str], Any]] = None) -> OfficialDataset:
    """The reader a spec names, e.g. ``open_dataset("cub:/data/CUB_200_2011:train")``.

    ``view`` is the preprocessing with its geometry (default: a 224 x 224 resize with ImageNet's
    mean and std); ``unreadable(path, reason)`` is what an undecodable image becomes (default:
    an error).
    """
    name, root, split = parse_spec(spec)
    return READERS[name](root, split, view=view, unreadable=unreadable)


def for_runner(name: str, root: Any, split: Optional[str] = None, *, transform: Optional[Callable] = None,
               crop: Optional[Callable] = None, class_names: Optional[Sequence[str]] = None) -> OfficialDataset:
    """The reader ``name`` as :func:`finercam.evaluation.data.resolve_data` calls it: the model's
    ``transform`` with the photo region ``crop`` reports (the whole photo when only a transform is
    given; :func:`resize_view` when neither), undecodable images as
    :class:`~finercam.evaluation.data.Unreadable` items, and, with ``class_names`` (the model's, in
    output order), every label mapped to the model's class of the same name."""
    from ..data import Unreadable

    if transform is None:
        view = resize_view() if crop is None else View(resize_view().transform, crop)
    else:
        view = View(transform, crop if crop is not None else (lambda w, h: (0, 0, int(w), int(h))))
    dataset = READERS[name](root, split or "test", view=view, unreadable=Unreadable)
    if class_names is not None:
        dataset.relabel(class_names)
    return dataset


#: The readers as :data:`finercam.evaluation.data.READERS` names them (``RUNNER_READERS.cub``).
RUNNER_READERS = SimpleNamespace(**{name: partial(for_runner, name) for name in READERS})
