"""Every binding rejects bad arguments with TypeError / ValueError naming the argument, before it
allocates anything, and accepts what the API documents (torch tensors, float16/64, bfloat16)."""
import re

import numpy as np
import pytest
import torch

from finercam import _core, kernels

F32 = np.float32
A = np.ones((2, 3, 4, 5), F32)
W = np.ones((2, 2, 3), F32)
P = np.ones((2, 2, 3, 4, 5), F32)
M = np.ones((2, 4, 5), F32)
BIG = 2**40  # BIG * BIG * 4 bytes overflows 64 bits


def _cases():
    """(id, call, exception, pattern the message must match)."""
    bad_values = [("None", None), ("list", [[[1.0]]]), ("int array", M.astype(np.int64)),
                  ("bool array", M > 0), ("object array", M.astype(object)),
                  ("complex array", M.astype(np.complex64)), ("longdouble", M.astype(np.longdouble)),
                  ("str", "maps")]
    cases = []
    for label, v in bad_values:
        cases += [
            (f"combine activations {label}", lambda v=v: kernels.combine(v, W), TypeError, "activations"),
            (f"combine weights {label}", lambda v=v: kernels.combine(A, v), TypeError, "weights"),
            (f"pixelwise activations {label}", lambda v=v: kernels.combine_pixelwise(v, P), TypeError, "activations"),
            (f"pixelwise weights {label}", lambda v=v: kernels.combine_pixelwise(A, v), TypeError, "weights"),
            (f"resize {label}", lambda v=v: kernels.resize(v, 3), TypeError, "maps"),
            (f"minmax {label}", lambda v=v: kernels.minmax(v), TypeError, "maps"),
            (f"postprocess {label}", lambda v=v: kernels.postprocess(v, 3), TypeError, "maps"),
            (f"fuse {label}", lambda v=v: kernels.fuse_layers([M, v], 3), TypeError, r"maps_list\[1\]"),
        ]
    cases += [
        # wrong ndim
        ("combine activations 3-d", lambda: kernels.combine(M, W), ValueError, "activations.*4-d"),
        ("combine weights 2-d", lambda: kernels.combine(A, W[0]), ValueError, "weights.*3-d"),
        ("pixelwise weights 4-d", lambda: kernels.combine_pixelwise(A, P[0]), ValueError, "weights.*5-d"),
        ("resize 4-d", lambda: kernels.resize(A, 3), ValueError, "maps.*3-d"),
        ("minmax 2-d", lambda: kernels.minmax(M[0]), ValueError, "maps.*3-d"),
        ("postprocess 0-d", lambda: kernels.postprocess(np.float32(1.0), 3), TypeError, "maps"),
        ("postprocess 0-d array", lambda: kernels.postprocess(np.array(1.0, F32), 3), ValueError, "maps.*3-d"),
        ("fuse 2-d", lambda: kernels.fuse_layers([M, M[0]], 3), ValueError, r"maps_list\[1\].*3-d"),
        # mismatched N / K / G / grid
        ("combine N", lambda: kernels.combine(A, W[:1]), ValueError, "weights.*activations"),
        ("combine K", lambda: kernels.combine(A, W[:, :, :2]), ValueError, "weights.*activations"),
        ("pixelwise N", lambda: kernels.combine_pixelwise(A, P[:1]), ValueError, "weights.*activations"),
        ("pixelwise K", lambda: kernels.combine_pixelwise(A, P[:, :, :1]), ValueError, "weights.*activations"),
        ("pixelwise grid", lambda: kernels.combine_pixelwise(A, P[..., :2]), ValueError, "weights.*activations"),
        ("fuse N", lambda: kernels.fuse_layers([M, M[:1]], 3), ValueError, r"maps_list\[1\].*N=1"),
        # empty maps
        ("combine h=0", lambda: kernels.combine(A[:, :, :0], W), ValueError, "activations.*h, w"),
        ("pixelwise w=0", lambda: kernels.combine_pixelwise(A[..., :0], P[..., :0]), ValueError, "activations.*h, w"),
        ("resize h=0", lambda: kernels.resize(M[:, :0], 3), ValueError, "maps.*h, w"),
        ("minmax w=0", lambda: kernels.minmax(M[:, :, :0]), ValueError, "maps.*h, w"),
        ("postprocess w=0", lambda: kernels.postprocess(M[:, :, :0], 3), ValueError, "maps.*h, w"),
        ("fuse h=0", lambda: kernels.fuse_layers([M, M[:, :0]], 3), ValueError, r"maps_list\[1\].*h, w"),
        ("fuse empty list", lambda: kernels.fuse_layers([], 3), ValueError, "maps_list"),
        ("fuse not a list", lambda: kernels.fuse_layers(M, 3), TypeError, "maps_list"),
        ("fuse None", lambda: kernels.fuse_layers(None, 3), TypeError, "maps_list"),
        # eps
        ("minmax eps<0", lambda: kernels.minmax(M, eps=-1e-8), ValueError, "eps"),
        ("minmax eps nan", lambda: kernels.minmax(M, eps=float("nan")), ValueError, "eps"),
        ("postprocess eps inf", lambda: kernels.postprocess(M, 3, eps=float("inf")), ValueError, "eps"),
        ("fuse eps<0", lambda: kernels.fuse_layers([M], 3, eps=-1.0), ValueError, "eps"),
        ("minmax eps str", lambda: kernels.minmax(M, eps="x"), TypeError, "eps"),
        ("postprocess eps None", lambda: kernels.postprocess(M, 3, eps=None), TypeError, "eps"),
    ]
    for fname, fn in [("resize", lambda s: kernels.resize(M, s)),
                      ("postprocess", lambda s: kernels.postprocess(M, s)),
                      ("fuse", lambda s: kernels.fuse_layers([M, M], s))]:
        cases += [
            (f"{fname} size 0", lambda fn=fn: fn(0), ValueError, "size"),
            (f"{fname} size -3", lambda fn=fn: fn((4, -3)), ValueError, "size"),
            (f"{fname} size (0, 5)", lambda fn=fn: fn((0, 5)), ValueError, "size"),
            (f"{fname} size float", lambda fn=fn: fn(3.0), TypeError, "size"),
            (f"{fname} size bool", lambda fn=fn: fn(True), TypeError, "size"),
            (f"{fname} size None", lambda fn=fn: fn(None), TypeError, "size"),
            (f"{fname} size triple", lambda fn=fn: fn((1, 2, 3)), TypeError, "size"),
            (f"{fname} size overflow", lambda fn=fn: fn((BIG, BIG)), ValueError, "size"),
            (f"{fname} size 2**62", lambda fn=fn: fn((2**62, 1)), ValueError, "size"),
            (f"{fname} size 2**70", lambda fn=fn: fn((2**70, 1)), ValueError, "size"),
            (f"{fname} size -2**70", lambda fn=fn: fn((3, -2**70)), ValueError, "size"),
        ]
    # The raw bindings check what the typed layer would have caught.
    cases += [
        ("_core resize H bool", lambda: _core.resize(M, True, 3, False), TypeError, "size H"),
        ("_core resize W float", lambda: _core.resize(M, 3, 3.5, False), TypeError, "size W"),
        ("_core postprocess H 0", lambda: _core.postprocess(M, 0, 3, True, 1e-8, False), ValueError, "size H"),
        ("_core fuse list of list", lambda: _core.fuse_layers([[1.0]], 3, 3, True, 1e-8, False), TypeError, r"maps_list\[0\]"),
        ("_core combine missing", lambda: _core.combine(A, W), TypeError, "combine"),
    ]
    return cases


CASES = _cases()


@pytest.mark.parametrize("call,exc,pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_argument_is_rejected_by_name(call, exc, pattern):
    with pytest.raises(exc) as info:
        call()
    assert re.search(pattern, str(info.value)), str(info.value)


def test_overflowing_sizes_raise_before_allocating():
    """(2**40)^2 float32 values would be 4 EiB: refused by arithmetic, not by a failed malloc,
    and for N = 0 too (the size itself is the mistake)."""
    for n in (0, 2):
        with pytest.raises(ValueError, match="size"):
            kernels.postprocess(np.ones((n, 2, 2), F32), (BIG, BIG))
    # 2**60 bytes passes the arithmetic but no allocator: numpy's MemoryError, raised when the
    # output is requested, before any coefficient table is built or filled
    for fn in (kernels.resize, kernels.postprocess, lambda m, s: kernels.fuse_layers([m], s)):
        with pytest.raises(MemoryError):
            fn(np.ones((1, 2, 2), F32), (2**29, 2**29))
        # and with nothing to compute, nothing is allocated at all
        assert fn(np.ones((0, 2, 2), F32), (2**29, 2**29)).shape == (0, 2**29, 2**29)


def test_documented_inputs_are_accepted():
    rng = np.random.default_rng(0)
    m = rng.standard_normal((2, 4, 5)).astype(F32)
    want = kernels.postprocess(m, 8)
    for x in (m.astype(np.float64), torch.from_numpy(m), torch.from_numpy(m).to(torch.bfloat16),
              torch.from_numpy(m).requires_grad_(True), m.astype(">f4"), np.asfortranarray(m)):
        got = kernels.postprocess(x, 8)
        tol = 1e-2 if getattr(x, "dtype", None) == torch.bfloat16 else 1e-6
        np.testing.assert_allclose(got, want, atol=tol)
    assert kernels.postprocess(m.astype(np.float16), 8).dtype == np.float32
    # N = 0 gives empty arrays of the right shape
    assert kernels.combine(np.ones((0, 3, 2, 2), F32), np.ones((0, 4, 3), F32)).shape == (0, 4, 2, 2)
    assert kernels.combine_pixelwise(np.ones((0, 3, 2, 2), F32),
                                     np.ones((0, 4, 3, 2, 2), F32)).shape == (0, 4, 2, 2)
    assert kernels.resize(np.ones((0, 3, 2), F32), (5, 7)).shape == (0, 5, 7)
    assert kernels.minmax(np.ones((0, 3, 2), F32)).shape == (0, 3, 2)
    assert kernels.postprocess(np.ones((0, 3, 2), F32), 6).shape == (0, 6, 6)
    assert kernels.fuse_layers([np.ones((0, 3, 2), F32), np.ones((0, 1, 1), F32)], 6).shape == (0, 6, 6)
    # K = 0 and G = 0 are empty sums and empty weight sets
    np.testing.assert_array_equal(kernels.combine(np.ones((1, 0, 2, 2), F32), np.ones((1, 3, 0), F32)),
                                  np.zeros((1, 3, 2, 2), F32))
    assert kernels.combine(A, np.ones((2, 0, 3), F32)).shape == (2, 0, 4, 5)
