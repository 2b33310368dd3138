"""Progress bars: tqdm's notebook widget where it can work, its text bar everywhere else.

``tqdm.auto`` picks the widget bar inside a Jupyter kernel, and there, without ipywidgets, it
emits a ``TqdmWarning`` ("IProgress not found") as soon as it is imported. So tqdm is imported
only when a bar is actually shown, and ``tqdm.auto`` only when ipywidgets can be imported.
"""
from __future__ import annotations

import importlib.util
from typing import Any


class _NoBar:
    """The part of tqdm's interface the package uses, doing nothing (a hidden bar)."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> "_NoBar":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def progress_bar(*, show: bool = True, **kwargs: Any):
    """A tqdm bar built with ``kwargs`` when ``show``, else a do-nothing stand-in (tqdm not
    imported at all)."""
    if not show:
        return _NoBar()
    if importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm
    return tqdm(**kwargs)
