"""Seeded batches and a torch ``Dataset`` of the spot-the-difference bird world.

Images are drawn in chunks of :data:`CHUNK` consecutive indices; chunk ``k`` of split ``s`` under
seed ``seed`` comes from ``numpy.random.SeedSequence([seed, s, k])``.  So image ``i`` depends only
on ``(seed, split, i)``: not on ``n``, nor on the order of access, nor on other images read before.
Labels cycle through the classes (``i % NUM_CLASSES``), so any window of 16 images is balanced.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, Optional, Tuple, Union

import numpy as np

from . import birds, render

CHUNK = 64
SPLITS: Tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class Batch:
    """A generated batch, all NumPy.

    ``images`` float32 (N, 3, S, S) in [0, 1] (or uint8 with ``dtype=np.uint8``), ``labels`` int64
    (N,), ``boxes`` int64 (N, 4) ``(x0, y0, x1, y1)`` with exclusive ends, ``parts`` bool
    (N, P, S, S): the visible pixels of each of :data:`birds.PARTS`.

    >>> b = generate(2, seed=0, split="test", size=32)
    >>> type(b).__name__, b.images.shape, b.images.dtype, b.boxes.shape, b.parts.shape
    ('Batch', (2, 3, 32, 32), dtype('float32'), (2, 4), (2, 8, 32, 32))
    """

    images: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray
    parts: np.ndarray


def _check_args(split: object, seed: object, size: object) -> Tuple[int, int, int]:
    if not isinstance(split, str):
        raise TypeError(f"split must be a str, got {type(split).__name__}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    for name, value in (("seed", seed), ("size", size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    seed_int, size_int = int(seed), int(size)  # type: ignore[call-overload]  # ints, checked above
    if seed_int < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if size_int < 32:
        raise ValueError(f"size must be >= 32 pixels, got {size}")
    return SPLITS.index(split), seed_int, size_int


def _chunk(split_code: int, seed: int, k: int, size: int) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(np.random.SeedSequence([seed, split_code, k]))
    labels = np.arange(k * CHUNK, (k + 1) * CHUNK) % birds.NUM_CLASSES
    return render.render(render.sample_params(labels, rng, size))


def generate(n: int, seed: int = 0, split: str = "train", size: int = 96, start: int = 0,
             dtype: type = np.float32) -> Batch:
    """Images ``start .. start + n - 1`` of a split, as one :class:`Batch`.

    >>> b = generate(4, seed=0, split="test")
    >>> b.images.shape, b.labels.tolist(), b.parts.shape
    ((4, 3, 96, 96), [0, 1, 2, 3], (4, 8, 96, 96))
    """
    code, seed, size = _check_args(split, seed, size)
    for name, value in (("n", n), ("start", start)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    if dtype not in (np.float32, np.uint8):
        raise ValueError(f"dtype must be numpy.float32 or numpy.uint8, got {dtype!r}")
    images = np.empty((n, 3, size, size), dtype=dtype)
    labels = np.arange(start, start + n, dtype=np.int64) % birds.NUM_CLASSES
    boxes = np.empty((n, 4), dtype=np.int64)
    parts = np.empty((n, len(birds.PARTS), size, size), dtype=bool)
    for k in range(start // CHUNK, -(-(start + n) // CHUNK)):
        lo, hi = max(start, k * CHUNK), min(start + n, (k + 1) * CHUNK)
        out = _chunk(code, seed, k, size)
        src = slice(lo - k * CHUNK, hi - k * CHUNK)
        dst = slice(lo - start, hi - start)
        img = out["images"][src]
        images[dst] = np.rint(img * 255) if dtype == np.uint8 else img
        boxes[dst] = out["boxes"][src]
        parts[dst] = out["masks"][src]
    return Batch(images, labels, boxes, parts)


def _as_bool_parts(sample_parts: object) -> Tuple[object, bool]:
    try:
        import torch
        if isinstance(sample_parts, torch.Tensor):
            return sample_parts, True
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    if not isinstance(sample_parts, np.ndarray):
        raise TypeError(f"sample_parts must be a numpy array or torch tensor, got {type(sample_parts).__name__}")
    return sample_parts, False


def discriminative_mask(sample_parts, c: int, d: Union[int, Iterable[int]]):
    """Ground-truth region that tells class ``c`` from reference(s) ``d`` in one image.

    The union of the image's part masks over the parts whose attributes differ between ``c`` and
    ``d`` (with several references, the union over all of them)::

        R(c, d) = OR_{p in differing_parts(c, d)} sample_parts[p]

    ``sample_parts`` is the ``(P, H, W)`` or batched ``(N, P, H, W)`` part-mask array (NumPy or
    torch, bool) of an image of class ``c``; the result has the same type without the part axis.
    A part that one class lacks in this image (e.g. a differing part hidden by pose) adds no pixels.

    >>> b = generate(2, split="test")
    >>> m = discriminative_mask(b.parts[1], 1, 0)   # black-winged vs rosy finch: the wing
    >>> bool((m == b.parts[1][birds.PARTS.index("wing")]).all())
    True
    """
    arr, is_torch = _as_bool_parts(sample_parts)
    shape = tuple(arr.shape)  # type: ignore[attr-defined]
    if len(shape) not in (3, 4) or shape[-3] != len(birds.PARTS):
        raise ValueError(f"sample_parts must have shape (P, H, W) or (N, P, H, W) with P = "
                         f"{len(birds.PARTS)}, got {shape}")
    parts = birds.differing_parts(c, d)
    idx = [birds.PARTS.index(p) for p in parts]
    if is_torch:
        sel = arr[..., idx, :, :].bool()  # type: ignore[index]
        return sel.any(dim=-3)
    return np.asarray(arr)[..., idx, :, :].astype(bool).any(axis=-3)


class SpotTheDifference:
    """The bird world as a map-style torch ``Dataset``.

    ``ds[i]`` is ``(image, label, info)``: a float32 tensor (3, S, S) in [0, 1], an int, and a dict
    with ``"box"`` (int64 tensor ``(x0, y0, x1, y1)``, exclusive ends) and ``"parts"`` (bool tensor
    (P, S, S), the visible pixels of each of :data:`PARTS`).  The default collate function of a
    ``DataLoader`` batches all three.  Images are rendered on first access, a chunk of
    :data:`CHUNK` at a time, and the most recent chunks are kept.

    >>> ds = SpotTheDifference(split="test", n=32, seed=0)
    >>> image, label, info = ds[5]
    >>> tuple(image.shape), label, ds.class_names[label], tuple(info["parts"].shape)
    ((3, 96, 96), 5, 'orange-breasted warbler', (8, 96, 96))
    """

    parts = birds.PARTS
    class_names = birds.CLASS_NAMES
    families = birds.FAMILIES
    class_family = birds.CLASS_FAMILY
    attributes = birds.ATTRIBUTES
    attribute_names = birds.ATTRIBUTE_NAMES
    num_classes = birds.NUM_CLASSES

    def __init__(self, split: str = "test", n: int = 1024, seed: int = 0, size: int = 96,
                 cache_chunks: int = 4) -> None:
        self._code, self.seed, self.size = _check_args(split, seed, size)
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            raise TypeError(f"n must be an int, got {type(n).__name__}")
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        self.split, self.n = split, int(n)
        self._cache: Dict[int, Dict[str, np.ndarray]] = {}
        self._cache_chunks = max(1, int(cache_chunks))

    def __len__(self) -> int:
        return self.n

    def _get_chunk(self, k: int) -> Dict[str, np.ndarray]:
        out = self._cache.get(k)
        if out is None:
            out = _chunk(self._code, self.seed, k, self.size)
            if len(self._cache) >= self._cache_chunks:
                self._cache.pop(next(iter(self._cache)))
            self._cache[k] = out
        return out

    def __getitem__(self, i: int):
        import torch
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"index must be an int, got {type(i).__name__}")
        if not -self.n <= i < self.n:
            raise IndexError(f"index {i} out of range for a dataset of {self.n} images")
        i = int(i) % self.n
        out = self._get_chunk(i // CHUNK)
        j = i % CHUNK
        info = {"box": torch.from_numpy(out["boxes"][j].copy()),
                "parts": torch.from_numpy(out["masks"][j].copy())}
        return torch.from_numpy(out["images"][j].copy()), int(i % birds.NUM_CLASSES), info

    def batch(self, start: int = 0, stop: Optional[int] = None, dtype: type = np.float32) -> Batch:
        """Images ``start .. stop - 1`` as one NumPy :class:`Batch` (faster than indexing)."""
        stop = self.n if stop is None else stop
        if not 0 <= start <= stop <= self.n:
            raise ValueError(f"need 0 <= start <= stop <= {self.n}, got start={start}, stop={stop}")
        return generate(stop - start, self.seed, self.split, self.size, start, dtype)

    def __repr__(self) -> str:
        return f"SpotTheDifference(split={self.split!r}, n={self.n}, seed={self.seed}, size={self.size})"
