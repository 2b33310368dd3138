"""The `O&` converters of the C bindings (csrc/module.c) release what they acquired when a later
argument fails: PyArg_ParseTuple calls them back (Py_CLEANUP_SUPPORTED), and the wrappers'
single exit releases the rest. Conforming float32 inputs are used as they are (a new reference,
not a copy), so a reference the cleanup missed shows in sys.getrefcount."""
import gc
import sys

import numpy as np
import pytest

from finercam import _core

F32 = np.float32
A = np.ones((2, 3, 4, 5), F32)
W = np.ones((2, 2, 3), F32)
M = np.ones((2, 4, 5), F32)
IMG = np.ones((2, 3, 4, 5), F32)
COUNTS = np.array([1, 2], np.int64)
MASKS = np.ones((2, 4, 5), bool)
Y = np.ones((2, 4))

# Each call converts its first array arguments, then fails on a later one.
FAILING = {
    "combine weights": (lambda: _core.combine(A, "w", True), TypeError, "weights"),
    "combine relu": (lambda: _core.combine(A, W, _BadBool()), ZeroDivisionError, ""),
    "resize size W": (lambda: _core.resize(M, 3, 0, False), ValueError, "size W"),
    "postprocess eps": (lambda: _core.postprocess(M, 3, 3, True, "x", False), TypeError, ""),
    "fuse size H": (lambda: _core.fuse_layers([M, M], True, 3, True, 1e-8, False), TypeError,
                    "size H"),
    "fuse second layer": (lambda: _core.fuse_layers((M, M[:1]), 3, 3, True, 1e-8, False), ValueError,
                          r"maps_list\[1\]"),
    "mask_top out type": (lambda: _core.mask_top(IMG, M, IMG, COUNTS, "out"), TypeError, "out"),
    "mask_top out shape": (lambda: _core.mask_top(IMG, M, IMG, COUNTS, IMG), ValueError,
                           "out must have shape"),
    "mask_top counts": (lambda: _core.mask_top(IMG, M, IMG, COUNTS.astype(F32), None), TypeError,
                        "counts"),
    "energy masks": (lambda: _core.energy_in_mask(M, M), TypeError, "masks"),
    "trapezoid x": (lambda: _core.trapezoid(Y, None), TypeError, "x"),
    "cosine b": (lambda: _core.cosine_matrix(M[0], M), ValueError, "b must be a 2-d"),
}


class _BadBool:
    def __bool__(self):
        raise ZeroDivisionError


def _refcounts():
    gc.collect()
    return [sys.getrefcount(x) for x in (A, W, M, IMG, COUNTS, MASKS, Y)]


@pytest.mark.parametrize("name", list(FAILING))
def test_failing_later_argument_releases_the_converted_ones(name):
    call, exc, pattern = FAILING[name]
    pattern = pattern or None
    with pytest.raises(exc, match=pattern):
        call()
    before = _refcounts()
    for _ in range(2000):
        try:
            call()
        except exc:
            pass
    assert _refcounts() == before


def test_out_array_is_returned_with_one_new_reference():
    out = np.empty((4, 3, 4, 5), F32)
    before = sys.getrefcount(out)
    for _ in range(100):
        assert _core.mask_top(IMG, M, IMG, COUNTS, out) is out
    assert sys.getrefcount(out) == before


def test_shapes_in_messages():
    with pytest.raises(ValueError, match=r"^weights \(N, G, K\) = \(1, 2, 3\) does not match "
                                         r"activations \(N, K, h, w\) = \(2, 3, 4, 5\)$"):
        _core.combine(A, W[:1], False)
    with pytest.raises(ValueError, match=r"^masks \(2, 4, 4\) must have the shape of maps "
                                         r"\(2, 4, 5\)$"):
        _core.pointing_hit(M, MASKS[..., :4])
    with pytest.raises(ValueError, match=r"^out must have shape \(4, 3, 4, 5\)$"):
        _core.mask_top(IMG, M, IMG, COUNTS, np.empty((4, 3, 4, 4), F32))
